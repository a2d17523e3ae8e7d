"""Stage 5, questions: multiple-choice questions with labels computed from geometry
(https://huggingface.co/papers/2605.05997, §3.1 and Appendix C).

What differs from the paper (reference notes §4.1, defects 12 and 14):

1. Labels come from geometry, never from a teacher's judgment: synthetic clips use `thinker4d.world`'s question
   generators (exact poses, tracks and masks); SpatialVID clips get camera-motion questions from their
   `instructions.json` labels, or from the poses when that file is missing. Every row says `label_source="geometry"`.
2. Object questions are steered to the dynamic landmark when the clip has its track, so the imagery shows the object
   the question is about; a generator that cannot give an unambiguous label skips the task (recorded, not guessed).
3. Answer letters are balanced and deterministic: the correct option of task k on the clip with global index i goes to
   position `(i + k) % num_options`, so consecutive clips cycle through the letters and shards/resumes agree.
4. Options come from the world generators (3 or 4 options; the paper always has 4). Three-option tasks are kept as
   they are rather than padded with a distractor that could be true.
5. Box coordinates are normalised 0-1000 on the frames the model sees (the paper's boxes live in another pixel frame).
"""

from __future__ import annotations

import dataclasses

import numpy as np


DEFAULT_TASKS = ("camera_motion", "object_direction", "object_distance", "object_speed", "object_bbox")


def question_subjects(question: dict) -> list[str]:
    """Object names a question is about (empty for camera motion, whose imagery shows the static landmark)."""
    label = question.get("label") or {}
    if "object" in label:
        return [label["object"]]
    return list(label.get("objects") or [])


def _pose_view(clip):
    """A clip whose `motion_labels` cover the whole clip (from `instructions.json` or, if absent, from the poses)."""
    from thinker4d.world import camera_motion_labels

    if clip.motion_labels:
        return clip
    if clip.num_frames < 2:
        return None
    labels = camera_motion_labels(clip.w2c)
    return dataclasses.replace(clip, motion_labels={f"0->{clip.num_frames - 1}": labels})


def make_question(
    clip, task: str, index: int, k: int, seed: int = 0, dynamic: str | None = None, camera_motions=None
) -> dict | None:
    """One question of `task` for the clip with global index `index` (task position `k`), or `None`.

    Args:
        clip (`Clip`): the sampled clip.
        task (`str`): a `thinker4d.world.QUESTION_TASKS` entry.
        index (`int`): the clip's global source index (answer-letter balance).
        k (`int`): the task's position in the task list.
        seed (`int`): run seed.
        dynamic (`str`, *optional*): the dynamic landmark; object questions are asked about it when possible.
        camera_motions (`list[str]`, *optional*): camera-motion vocabulary of a restricted world.
    """
    from thinker4d.world import ask

    rng = np.random.default_rng([seed, index, k])
    source = clip.meta.get("source")
    if source == "video":
        return None
    if task == "camera_motion":
        view = _pose_view(clip)
        return (
            None if view is None else ask(view, task, rng=rng, answer_index=index + k, camera_motions=camera_motions)
        )
    view = clip
    if (
        dynamic is not None
        and dynamic in clip.tracks
        and task != "object_bbox"
        and not task.endswith(("_compare", "relative_direction", "relative_distance"))
    ):
        view = dataclasses.replace(clip, tracks={dynamic: clip.tracks[dynamic]})
    q = ask(view, task, rng=rng, answer_index=index + k)
    if q is None and view is not clip:
        q = ask(clip, task, rng=np.random.default_rng([seed, index, k]), answer_index=index + k)
    return q


def make_questions(
    clip, tasks, index: int, seed: int = 0, dynamic: str | None = None, camera_motions=None
) -> tuple[list, dict]:
    """Questions for every task; returns `(questions, skipped {task: reason})`."""
    out, skipped = [], {}
    for k, task in enumerate(tasks):
        if clip.meta.get("source") == "video":
            skipped[task] = "no_geometry"
            continue
        q = make_question(clip, task, index, k, seed, dynamic, camera_motions)
        if q is None:
            skipped[task] = "no_unambiguous_label"
        else:
            out.append(q)
    return out, skipped


__all__ = ["DEFAULT_TASKS", "make_question", "make_questions", "question_subjects"]
