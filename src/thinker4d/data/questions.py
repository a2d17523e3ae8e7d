"""Stage 5, questions: multiple-choice questions with labels computed from geometry, or from a teacher for plain
videos (https://huggingface.co/papers/2605.05997, §3.1 and Appendix C).

What differs from the paper (docs/paper_differences.md, section 10):

1. The paper's object labels are Gemini judgments. Here labels come from geometry wherever geometry exists: synthetic
   clips use `thinker4d.world`'s question generators (exact poses, tracks and masks); SpatialVID clips get
   camera-motion questions from their `instructions.json` labels, or from the poses when that file is missing. Those
   rows say `label_source="geometry"`. Only plain videos (frames, no poses/depth/masks) are labelled by a teacher:
   the teacher picks one class from a fixed list (`TEACHER_LABEL_CLASSES`: the 12 SpatialVID camera motions or Stay;
   direction / distance change / speed class of the dynamic landmark it chose) or declines (`UNSURE`), and those rows
   say `label_source="teacher"`. The rule teacher cannot label plain videos, so with it they are skipped with a
   recorded reason.
2. Object questions are steered to the dynamic landmark when the clip has its track, so the imagery shows the object
   the question is about; a generator that cannot give an unambiguous label skips the task (recorded, not guessed).
3. Answer letters are balanced and deterministic: the correct option of task k on the clip with global index i goes to
   position `(i + k) % num_options`, so consecutive clips cycle through the letters and shards/resumes agree. Teacher
   labels go through the same option/distractor construction and the same letter placement.
4. Options come from the world generators (3 or 4 options; the paper always has 4). Three-option tasks are kept as
   they are rather than padded with a distractor that could be true.
5. Box coordinates are normalised 0-1000 on the frames the model sees (the paper's boxes live in another pixel frame).
"""

from __future__ import annotations

import dataclasses

import numpy as np


DEFAULT_TASKS = ("camera_motion", "object_direction", "object_distance", "object_speed", "object_bbox")
UNSURE = "Unclear"  # the teacher's way to decline (e.g. two camera motions at once); the task is skipped


def _camera_classes() -> tuple:
    from thinker4d.world.camera import CAMERA_MOTIONS, STAY

    return (*CAMERA_MOTIONS, STAY)


# The classes a teacher may answer per task (the same option texts as the world's geometry generators; a test keeps
# them in sync). Camera motion: the 12 SpatialVID classes or Stay (combinations are declined with `UNSURE`).
TEACHER_LABEL_CLASSES = {
    "camera_motion": _camera_classes(),
    "object_direction": ("Left", "Right", "Toward the camera", "Away from the camera"),
    "object_distance": ("Closer", "Farther", "About the same distance"),
    "object_speed": ("It does not move", "Slowly (under 1 m/s)", "Quickly (over 1 m/s)"),
}


def teacher_classes(task: str) -> tuple:
    """The classes a teacher may answer for `task` (`TEACHER_LABEL_CLASSES[task]`).

    Raises:
        ValueError: for a task without teacher classes.
    """
    classes = TEACHER_LABEL_CLASSES.get(task)
    if classes is None:
        raise ValueError(
            f"No teacher classes for task {task!r}; teacher labels exist for {list(TEACHER_LABEL_CLASSES)}."
        )
    return classes


def needs_teacher_labels(clip) -> bool:
    """Whether the clip is a plain video (frames only), whose labels can only come from a teacher."""
    return clip.meta.get("source") == "video"


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
    if needs_teacher_labels(clip):  # no geometry: see make_teacher_question
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


def _stem_name(name: str) -> str:
    """`"the red car"` -> `"red car"` (the stems say "the {name}")."""
    name = name.strip()
    return name[4:].strip() if name.lower().startswith("the ") else name


def make_teacher_question(
    clip, task: str, label: str, index: int, k: int, seed: int = 0, subject: str | None = None
) -> dict | None:
    """One question of `task` whose correct answer is the teacher's `label` (a `TEACHER_LABEL_CLASSES[task]` entry).

    Options, distractors and the answer letter are built exactly as for geometry labels: camera motion goes through
    the world's `camera_motion` generator (the opposite motion plus two others as distractors; three random motions
    for Stay), object tasks offer the world generator's full class list, and the correct option of task `k` on the
    clip with global index `index` sits at position `(index + k) % num_options`. The row says
    `label_source="teacher"`.

    Args:
        clip (`Clip`): the sampled clip (a plain video).
        task (`str`): a `TEACHER_LABEL_CLASSES` key.
        label (`str`): the teacher's class.
        index (`int`), k (`int`), seed (`int`): as for `make_question`.
        subject (`str`, *optional*): the object an object question is about (the teacher's dynamic landmark; kept
            as is in `label["object"]`, so the pipeline finds its landmark and mask prompt).

    Raises:
        ValueError: for a task without teacher classes, a label outside them, or an object task without a subject.

    Example:

    ```python
    >>> q = make_teacher_question(clip, "camera_motion", "Pan Left", index=3, k=0)  # doctest: +SKIP
    >>> q["answer_text"], q["label_source"]                                          # doctest: +SKIP
    ('Pan Left', 'teacher')
    ```
    """
    from thinker4d.world import ask
    from thinker4d.world.questions import place_answer

    classes = teacher_classes(task)
    if label not in classes:
        raise ValueError(f"Teacher label {label!r} for {task} is not one of {list(classes)}.")
    rng = np.random.default_rng([seed, index, k])
    if task == "camera_motion":
        last = max(clip.num_frames - 1, 1)
        view = dataclasses.replace(clip, motion_labels={f"0->{last}": [label]})
        q = ask(view, task, rng=rng, answer_index=index + k)
        if q is None:
            return None
        return {**q, "label": {**q["label"], "teacher_class": label}, "label_source": "teacher"}
    if not subject or not _stem_name(subject):
        raise ValueError(f"An object question ({task}) needs the subject the teacher labelled; got {subject!r}.")
    name = _stem_name(subject)
    if task == "object_direction":
        stem = f"Seen from the camera's starting viewpoint, in which direction does the {name} move?"
        label_dict = {"object": subject, "direction": label}
    elif task == "object_distance":
        stem = f"Between the first and the last frame, does the {name} get closer to or farther from the camera?"
        change = "same" if label == "About the same distance" else label.lower()
        label_dict = {"object": subject, "distance_change": change}
    else:  # object_speed; no ground tiles in a real video, so only the duration is stated
        stem = (
            f"How fast does the {name} move while it is moving? (The video lasts {clip.num_frames / clip.fps:.1f} s.)"
        )
        label_dict = {"object": subject, "speed_class": label}
    options, letter = place_answer(label, list(classes), rng, index + k)
    return {
        "task": task,
        "question": stem,
        "options": options,
        "answer": letter,
        "answer_text": label,
        "label": {**label_dict, "teacher_class": label},
        "label_source": "teacher",
    }


def teacher_skip_reason(error: BaseException) -> str:
    """The recorded reason for a task the teacher did not label: `"no_geometry: <why>"` when the teacher cannot label
    it at all (the rule teacher; tasks without teacher classes), else `"teacher_<reason>"` (e.g. `teacher_malformed`
    after the retries)."""
    reason = getattr(error, "reason", None) or "error"
    return f"no_geometry: {error}" if reason == "no_geometry" else f"teacher_{reason}"


def make_questions(
    clip,
    tasks,
    index: int,
    seed: int = 0,
    dynamic: str | None = None,
    camera_motions=None,
    teacher_labels: dict | None = None,
) -> tuple[list, dict]:
    """Questions for every task; returns `(questions, skipped {task: reason})`.

    Clips with geometry get geometry labels. A plain video (`needs_teacher_labels`) takes its labels from
    `teacher_labels` (`{task: class or exception}`, from a teacher's `labels_many`): a class becomes a question through
    `make_teacher_question` (about `dynamic`, the teacher's dynamic landmark, for object tasks); an exception, the
    `UNSURE` class, a class outside the task's list or a missing entry becomes a skip with its reason. `teacher_labels`
    is ignored for clips with geometry.
    """
    out, skipped = [], {}
    plain = needs_teacher_labels(clip)
    for k, task in enumerate(tasks):
        if plain:
            label = (teacher_labels or {}).get(task)
            if label is None:
                skipped[task] = "no_geometry: no teacher labelled this plain video"
            elif isinstance(label, BaseException):
                skipped[task] = teacher_skip_reason(label)
            elif label == UNSURE:
                skipped[task] = "teacher_unsure"
            elif label not in TEACHER_LABEL_CLASSES.get(task, ()):
                skipped[task] = "teacher_invalid_class"
            elif task != "camera_motion" and not dynamic:
                skipped[task] = "no_dynamic_landmark"
            else:
                q = make_teacher_question(clip, task, label, index, k, seed, subject=dynamic)
                if q is None:
                    skipped[task] = "no_unambiguous_label"
                else:
                    out.append(q)
            continue
        q = make_question(clip, task, index, k, seed, dynamic, camera_motions)
        if q is None:
            skipped[task] = "no_unambiguous_label"
        else:
            out.append(q)
    return out, skipped


__all__ = [
    "DEFAULT_TASKS",
    "TEACHER_LABEL_CLASSES",
    "UNSURE",
    "make_question",
    "make_questions",
    "make_teacher_question",
    "needs_teacher_labels",
    "question_subjects",
    "teacher_classes",
    "teacher_skip_reason",
]
