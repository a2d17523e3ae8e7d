"""The camera-motion question, labelled from the clip's poses (https://huggingface.co/papers/2605.05997).

What differs from the paper: the paper's camera-motion labels come from SpatialVID's annotations; here they are
computed from exact poses (`thinker4d.world.camera`), and a clip whose motion changes class mid-clip gets no question.
"""

from __future__ import annotations

from .camera import _AXIS, CAMERA_MOTIONS, STAY, canonical_motion, motion_label_text
from .mcq import _question, _requires


COMBINATION = "combination"  # the answer class of every two-class camera motion (one quota for all of them)


@_requires(min_frames=2, classes=(*CAMERA_MOTIONS, STAY, COMBINATION))
def camera_motion(clip, rng, answer_index=None, camera_motions=None, **_):
    """How does the camera move? Labels come from `clip.motion_labels` (computed from poses). Yields at most one
    question (a clip has one camera motion).

    A single class's distractors are its opposite and two of the other classes or Stay; a combination's are its three
    sign flips; Stay's are three classes. Its answer class (`answer_class`) is the motion text, or `COMBINATION` for
    any two-class combination.

    With `camera_motions` (a vocabulary of at least 4 classes), the distractors are drawn from that vocabulary only
    (the opposite motion first when it is in it), so a world restricted to those classes asks fair questions.
    """
    text = clip.camera_motion
    if " then " in text:
        return
    labels = canonical_motion(text)
    if camera_motions:
        vocab = [motion_label_text(canonical_motion(m)) or STAY for m in camera_motions]
        if len(set(vocab)) < 4:
            raise ValueError(f"camera_motions needs at least 4 distinct classes for 4 options, got {camera_motions}.")
        if text not in vocab:
            return
        first = [o for o in ([_opposite(labels[0])] if len(labels) == 1 else []) if o in vocab and o != text]
        rest = [m for m in dict.fromkeys(vocab) if m != text and m not in first]
        picks = [rest[i] for i in rng.choice(len(rest), 3 - len(first), replace=False)]
        yield _question(
            "camera_motion",
            "How does the camera move during the video?",
            text,
            first + picks,
            {"camera_motion": text, "labels": list(labels) or [STAY]},
            rng,
            answer_index,
        )
        return
    if not labels:
        distractors = [CAMERA_MOTIONS[i] for i in rng.choice(len(CAMERA_MOTIONS), 3, replace=False)]
    elif len(labels) == 1:
        # Stay is a distractor too, so that answering "Stay" whenever it is offered is no better than chance
        opposite = _opposite(labels[0])
        others = [m for m in (*CAMERA_MOTIONS, STAY) if m not in (labels[0], opposite)]
        distractors = [opposite] + [others[i] for i in rng.choice(len(others), 2, replace=False)]
    else:
        a, b = labels
        distractors = [
            motion_label_text([_opposite(a), b]),
            motion_label_text([a, _opposite(b)]),
            motion_label_text([_opposite(a), _opposite(b)]),
        ]
    yield _question(
        "camera_motion",
        "How does the camera move during the video?",
        text,
        distractors,
        {"camera_motion": text, "labels": list(labels) or [STAY]},
        rng,
        answer_index,
    )


def _opposite(name: str) -> str:
    axis, sign = _AXIS[name]
    return next(n for n, (a, s) in _AXIS.items() if a == axis and s == -sign)
