"""Object speed questions: how fast an object moves, which of two moves faster, and whether it stops or starts. See
`object_questions.py` for what differs from the paper."""

from __future__ import annotations

import numpy as np

from .mcq import _question, _requires
from .object_geometry import (
    FAST_MIN,
    MIN_STATE_INTERVALS,
    MOTION_STATES,
    SLOW_MAX,
    SPEEDS,
    STILL_SPEED,
    _candidates,
    _moving_speed,
    _pairs,
    _speeds,
    _visible,
)


def _speed_class(speed: float) -> str | None:
    if speed < STILL_SPEED:
        return "It does not move"
    if speed <= SLOW_MAX:
        return "Slowly (under 1 m/s)"
    if speed >= FAST_MIN:
        return "Quickly (over 1 m/s)"
    return None


@_requires(min_frames=2, classes=SPEEDS)
def object_speed(clip, rng, answer_index=None, **_):
    """Speed class of an object while it moves: not moving / slow / fast."""
    T = clip.num_frames
    for name in _candidates(clip, rng):
        if not _visible(clip, name, [0, T - 1]):
            continue
        speed = _moving_speed(clip, name)
        answer = _speed_class(speed)
        if answer is None:
            continue
        yield _question(
            "object_speed",
            f"How fast does the {name} move while it is moving? (The ground tiles are 1 m wide; the video lasts "
            f"{T / clip.fps:.1f} s.)",
            answer,
            list(SPEEDS),
            {"object": name, "speed_class": answer, "speed_m_s": round(speed, 3)},
            rng,
            answer_index,
        )


@_requires(min_frames=2, classes=("first", "second", "same"))
def object_speed_compare(clip, rng, answer_index=None, **_):
    """Which of two objects moves faster (speed while moving)? Answer classes: the object named first in the question,
    the one named second, or the same speed."""
    T = clip.num_frames
    same = "They move at about the same speed"
    for a, b in _pairs(clip, rng):
        if not (_visible(clip, a, [0, T - 1]) and _visible(clip, b, [0, T - 1])):
            continue
        sa, sb = _moving_speed(clip, a), _moving_speed(clip, b)
        if max(sa, sb) < STILL_SPEED:
            continue
        ratio = max(sa, sb) / max(min(sa, sb), 1e-9)
        if ratio >= 1.5:
            answer = f"The {a}" if sa > sb else f"The {b}"
        elif ratio < 1.1 and min(sa, sb) > STILL_SPEED:
            answer = same
        else:
            continue
        yield _question(
            "object_speed_compare",
            f"Which moves faster while moving, the {a} or the {b}?",
            answer,
            [f"The {a}", f"The {b}", same],
            {"objects": [a, b], "faster": answer, "speeds_m_s": [round(sa, 3), round(sb, 3)]},
            rng,
            answer_index,
        )


# "stops" / "starts" need MIN_STATE_INTERVALS moving and MIN_STATE_INTERVALS still frame intervals, and T frames have
# T - 1 intervals; with fewer frames two of the four options could never be the answer
@_requires(min_frames=2 * MIN_STATE_INTERVALS + 1, classes=MOTION_STATES)
def object_motion_state(clip, rng, answer_index=None, **_):
    """Does an object move throughout, stop, start, or not move at all?"""
    T = clip.num_frames
    options = list(MOTION_STATES)
    for name in _candidates(clip, rng):
        if not _visible(clip, name, [0, T // 2, T - 1]):
            continue
        moving = _speeds(clip, name) > STILL_SPEED
        n = len(moving)
        changes = int(np.count_nonzero(moving[1:] != moving[:-1]))
        if moving.all():
            answer = options[0]
        elif not moving.any():
            answer = options[3]
        elif changes == 1 and MIN_STATE_INTERVALS <= moving.sum() <= n - MIN_STATE_INTERVALS:
            answer = options[1] if moving[0] else options[2]
        else:
            continue
        k = int(np.argmax(moving != moving[0])) if changes else None
        yield _question(
            "object_motion_state",
            f"Which best describes the motion of the {name} during the video?",
            answer,
            options,
            {"object": name, "state": answer, "change_frame": k},
            rng,
            answer_index,
        )
