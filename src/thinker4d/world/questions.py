"""Ground-truth multiple-choice questions computed from a clip's geometry (https://huggingface.co/papers/2605.05997).

This module names the question tasks and asks them; the generators live in `camera_questions.py` (camera motion, from
poses) and `object_questions.py` (object motion, from tracks, headings and masks, split by task family into
`direction_questions.py`, `distance_questions.py`, `speed_questions.py` and `orientation_questions.py`), whose
docstrings say what differs from the paper. Every generator returns `None` rather than guess when the geometry does not support an unambiguous label.
"""

from __future__ import annotations

import numpy as np

from .camera import canonical_motion, motion_label_text
from .camera_questions import COMBINATION, camera_motion
from .mcq import LETTERS, place_answer
from .object_questions import (
    AMOUNT_BANDS_M,
    CLOSER,
    DOMINANCE,
    FARTHER,
    FAST_MIN,
    MIN_MOVE_M,
    MIN_STATE_INTERVALS,
    PREDICT_S,
    SAME_BAND,
    SLOW_MAX,
    STILL_SPEED,
    object_bbox,
    object_direction,
    object_direction_camera,
    object_direction_prediction,
    object_distance,
    object_distance_change,
    object_motion_state,
    object_orientation,
    object_relative_direction,
    object_relative_distance,
    object_speed,
    object_speed_compare,
)


QUESTION_TASKS = (
    "camera_motion",
    "object_direction",
    "object_relative_direction",
    "object_distance",
    "object_relative_distance",
    "object_speed",
    "object_speed_compare",
    "object_motion_state",
    "object_bbox",
    "object_direction_camera",
    "object_distance_change",
    "object_direction_prediction",
    "object_orientation",
)

TASK_FUNCTIONS = {
    "camera_motion": camera_motion,
    "object_direction": object_direction,
    "object_relative_direction": object_relative_direction,
    "object_distance": object_distance,
    "object_relative_distance": object_relative_distance,
    "object_speed": object_speed,
    "object_speed_compare": object_speed_compare,
    "object_motion_state": object_motion_state,
    "object_bbox": object_bbox,
    "object_direction_camera": object_direction_camera,
    "object_distance_change": object_distance_change,
    "object_direction_prediction": object_direction_prediction,
    "object_orientation": object_orientation,
}


def task_min_frames(task: str) -> int:
    """The fewest frames a clip needs for `task` to have a question at all (the generator's own requirement, which
    `ask` enforces): 1 for `object_bbox`, 2 for tasks that compare frames, `MIN_STATE_INTERVALS + 1` for
    `object_direction_prediction`, `2 * MIN_STATE_INTERVALS + 1` for `object_motion_state`.

    Raises:
        ValueError: for an unknown task.
    """
    if task not in TASK_FUNCTIONS:
        raise ValueError(f"Unknown question task {task!r}; choose one of: {', '.join(QUESTION_TASKS)}.")
    return TASK_FUNCTIONS[task].min_frames


def unsupported_tasks(tasks, num_frames: int) -> dict:
    """`{task: fewest frames it needs}` for the `tasks` that never have a question on `num_frames`-frame clips."""
    return {t: task_min_frames(t) for t in tasks if num_frames < task_min_frames(t)}


def task_answer_classes(task: str, camera_motions=None) -> tuple | None:
    """The answer classes of `task` (the values `answer_class` takes), or `None` for `object_bbox`, whose answers are
    all different boxes. Camera motion: the vocabulary's classes when `camera_motions` is given, else the twelve
    classes, Stay and `COMBINATION` (all two-class motions share one class)."""
    if task not in TASK_FUNCTIONS:
        raise ValueError(f"Unknown question task {task!r}; choose one of: {', '.join(QUESTION_TASKS)}.")
    if task == "camera_motion" and camera_motions:
        return tuple(dict.fromkeys(motion_label_text(canonical_motion(m)) or "Stay" for m in camera_motions))
    return TASK_FUNCTIONS[task].classes


def answer_class(q: dict, camera_motions=None) -> str | None:
    """The class of `q`'s correct answer that a balanced set gives equal shares: the answer text, except
    `object_speed_compare` (`"first"`, `"second"` or `"same"`: which named object is faster), an unrestricted camera
    combination (`COMBINATION`) and `object_bbox` (`None`)."""
    task = q["task"]
    if task == "object_bbox":
        return None
    if task == "object_speed_compare":
        a, b = q["label"]["objects"]
        return {f"The {a}": "first", f"The {b}": "second"}.get(q["answer_text"], "same")
    if task == "camera_motion" and not camera_motions and " + " in q["answer_text"]:
        return COMBINATION
    return q["answer_text"]


def iter_questions(clip, task: str, rng=None, answer_index: int | None = None, camera_motions=None):
    """Every question of `task` that `clip` supports, lazily, in the generator's order (one per subject or pair of
    objects; at most one for `camera_motion`). `ask` takes the first; a balanced build takes the first whose answer
    class still has room. Arguments as for `ask`."""
    if task not in TASK_FUNCTIONS:
        raise ValueError(f"Unknown question task {task!r}; choose one of: {', '.join(QUESTION_TASKS)}.")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if clip.num_frames < TASK_FUNCTIONS[task].min_frames:
        return iter(())
    if task == "camera_motion":
        return TASK_FUNCTIONS[task](clip, rng, answer_index=answer_index, camera_motions=camera_motions)
    return TASK_FUNCTIONS[task](clip, rng, answer_index=answer_index)


def ask(clip, task: str, rng=None, answer_index: int | None = None, camera_motions=None) -> dict | None:
    """One question of `task` about `clip`, or `None` when the clip cannot support an unambiguous label.

    Args:
        clip (`Clip`): a clip with geometry (object tasks need `tracks` and `instance_ids`).
        task (`str`): one of `QUESTION_TASKS`.
        rng (`np.random.Generator` or `int`, *optional*): randomness for the subject and the option order.
        answer_index (`int`, *optional*): put the correct option at this position (for balanced letters).
        camera_motions (`list[str]`, *optional*): camera-motion vocabulary of a restricted world (distractors are
            drawn from it; a clip whose motion is outside it gets no camera question).

    Example:

    ```python
    >>> from thinker4d.world import render_clip, ask
    >>> q = ask(render_clip(5, num_frames=8, size=64, camera_motion="Tilt Up"), "camera_motion", rng=0)
    >>> q["answer_text"], q["options"][ord(q["answer"]) - 65]
    ('Tilt Up', 'Tilt Up')
    ```
    """
    return next(iter_questions(clip, task, rng, answer_index, camera_motions), None)


def generate_questions(clip, tasks=None, seed: int = 0) -> list[dict]:
    """At most one question per task (in `tasks` order, default all of `QUESTION_TASKS`) for `clip`.

    Each dict has `task, question, options (no letters), answer (letter), answer_text, label (geometry),
    label_source ("geometry")`.
    """
    tasks = QUESTION_TASKS if tasks is None else tuple(tasks)
    out = []
    for k, task in enumerate(tasks):
        q = ask(clip, task, rng=np.random.default_rng([seed, k]))
        if q is not None:
            out.append(q)
    return out


__all__ = [
    "AMOUNT_BANDS_M",
    "CLOSER",
    "DOMINANCE",
    "FARTHER",
    "FAST_MIN",
    "LETTERS",
    "MIN_MOVE_M",
    "MIN_STATE_INTERVALS",
    "PREDICT_S",
    "QUESTION_TASKS",
    "SAME_BAND",
    "SLOW_MAX",
    "STILL_SPEED",
    "TASK_FUNCTIONS",
    "answer_class",
    "ask",
    "camera_motion",
    "generate_questions",
    "object_bbox",
    "object_direction",
    "object_direction_camera",
    "object_direction_prediction",
    "object_distance",
    "object_distance_change",
    "iter_questions",
    "object_motion_state",
    "object_orientation",
    "object_relative_direction",
    "object_relative_distance",
    "object_speed",
    "object_speed_compare",
    "place_answer",
    "task_answer_classes",
    "task_min_frames",
    "unsupported_tasks",
]
