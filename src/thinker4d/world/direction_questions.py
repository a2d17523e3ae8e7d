"""Object direction questions: where an object moves (first camera view, moving camera, prediction) and how two
objects' motions compare. See `object_questions.py` for what differs from the paper."""

from __future__ import annotations

import numpy as np

from .mcq import _question, _requires
from .object_geometry import (
    DIRECTIONS,
    DOMINANCE,
    MIN_MOVE_M,
    MIN_STATE_INTERVALS,
    PREDICT_S,
    PREDICTIONS,
    RELATIVE_DIRECTIONS,
    STILL_SPEED,
    _candidates,
    _ground_axes,
    _pairs,
    _speeds,
    _visible,
)


def _direction_class(lat: float, dep: float, d0: float, d1: float) -> str | None:
    """Left / Right / Toward / Away from a displacement (`lat` to the right, `dep` forward, metres) whose dominant axis
    is `DOMINANCE` times the other; "toward"/"away" compares distances to the camera (`d0` -> `d1`), so the sign of
    `dep` must agree with the distance change. `None` in the dead bands."""
    if abs(lat) >= DOMINANCE * abs(dep):
        return DIRECTIONS[1] if lat > 0 else DIRECTIONS[0]
    if abs(dep) >= DOMINANCE * abs(lat) and (d1 < d0) == (dep < 0):
        return DIRECTIONS[3] if dep > 0 else DIRECTIONS[2]
    return None


def _in_camera(clip, t: int, point) -> np.ndarray:
    """World `point` in the coordinates of the camera at frame `t` (x right, y down, z forward)."""
    return clip.w2c[t, :3, :3] @ np.asarray(point) + clip.w2c[t, :3, 3]


@_requires(min_frames=2, classes=DIRECTIONS)
def object_direction(clip, rng, answer_index=None, **_):
    """Direction of an object's motion relative to the first camera view: left / right / toward / away."""
    T = clip.num_frames
    right, fwd = _ground_axes(clip)
    cam0 = clip.c2w[0, :3, 3]
    for name in _candidates(clip, rng):
        tr = np.asarray(clip.tracks[name])
        delta = tr[-1] - tr[0]
        if np.linalg.norm(delta) < MIN_MOVE_M or not _visible(clip, name, [0, T - 1]):
            continue
        lat, dep = float(delta @ right), float(delta @ fwd)
        answer = _direction_class(lat, dep, np.linalg.norm(tr[0] - cam0), np.linalg.norm(tr[-1] - cam0))
        if answer is None:
            continue
        yield _question(
            "object_direction",
            f"Seen from the camera's starting viewpoint, in which direction does the {name} move?",
            answer,
            list(DIRECTIONS),
            {"object": name, "direction": answer, "lateral_m": round(lat, 3), "forward_m": round(dep, 3)},
            rng,
            answer_index,
        )


@_requires(min_frames=2, classes=DIRECTIONS)
def object_direction_camera(clip, rng, answer_index=None, **_):
    """Direction of an object's motion in the moving camera's own frame: where the object is relative to the camera at
    the last frame minus where it was at the first. The camera's motion counts (a still object drifts left for a
    camera that trucks or pans right); a mostly vertical drift (pedestal, tilt) is not asked."""
    T = clip.num_frames
    for name in _candidates(clip, rng):
        tr = np.asarray(clip.tracks[name])
        p0, p1 = _in_camera(clip, 0, tr[0]), _in_camera(clip, T - 1, tr[-1])
        lat, down, dep = (float(x) for x in p1 - p0)
        flat = float(np.hypot(lat, dep))
        if flat < MIN_MOVE_M or DOMINANCE * abs(down) > flat or not _visible(clip, name, [0, T - 1]):
            continue
        answer = _direction_class(lat, dep, np.linalg.norm(p0), np.linalg.norm(p1))
        if answer is None:
            continue
        yield _question(
            "object_direction_camera",
            f"Relative to the camera itself (which may be moving too), in which direction does the {name} move "
            "between the first and the last frame?",
            answer,
            list(DIRECTIONS),
            {"object": name, "direction": answer, "lateral_m": round(lat, 3), "forward_m": round(dep, 3)},
            rng,
            answer_index,
        )


@_requires(min_frames=MIN_STATE_INTERVALS + 1, classes=PREDICTIONS)
def object_direction_prediction(clip, rng, answer_index=None, **_):
    """Where will an object be `PREDICT_S` seconds after the last frame if it keeps the velocity it has at the end,
    seen from the camera's last position: further left / right, closer / farther, or where it is now (it is still at
    the end)? The object must be in the same state (moving or still) over the last `MIN_STATE_INTERVALS` frame
    intervals, so the end velocity can be seen."""
    T = clip.num_frames
    cam = clip.c2w[-1, :3, 3]
    for name in _candidates(clip, rng):
        tr = np.asarray(clip.tracks[name])
        end = _speeds(clip, name)[-MIN_STATE_INTERVALS:] > STILL_SPEED
        if end.any() != end.all() or not _visible(clip, name, [T - 1]):
            continue
        velocity = (tr[-1] - tr[-2]) * clip.fps
        lat = dep = 0.0
        if not end.any():
            answer = PREDICTIONS[4]
        else:
            future = tr[-1] + velocity * PREDICT_S
            lat, down, dep = (float(x) for x in clip.w2c[-1, :3, :3] @ (future - tr[-1]))
            if DOMINANCE * abs(down) > np.hypot(lat, dep):
                continue
            side = _direction_class(lat, dep, np.linalg.norm(tr[-1] - cam), np.linalg.norm(future - cam))
            if side is None:
                continue
            answer = PREDICTIONS[DIRECTIONS.index(side)]  # the same order: left, right, toward (closer), away
        yield _question(
            "object_direction_prediction",
            f"If the {name} keeps moving the way it moves at the end of the video, where will it be {PREDICT_S:g} s "
            "after the last frame, as seen from the camera's last position?",
            answer,
            list(PREDICTIONS),
            {
                "object": name,
                "prediction": answer,
                "velocity_m_s": [round(float(x), 3) for x in velocity],
                "lateral_m": round(lat, 3),
                "forward_m": round(dep, 3),
            },
            rng,
            answer_index,
        )


@_requires(min_frames=2, classes=RELATIVE_DIRECTIONS)
def object_relative_direction(clip, rng, answer_index=None, **_):
    """Do two moving objects move in the same, opposite or perpendicular directions?"""
    T = clip.num_frames
    for a, b in _pairs(clip, rng):
        da = np.asarray(clip.tracks[a])[-1] - np.asarray(clip.tracks[a])[0]
        db = np.asarray(clip.tracks[b])[-1] - np.asarray(clip.tracks[b])[0]
        da[2] = db[2] = 0
        if min(np.linalg.norm(da), np.linalg.norm(db)) < MIN_MOVE_M or not _visible(clip, a, [0, T - 1]):
            continue
        if not _visible(clip, b, [0, T - 1]):
            continue
        angle = float(np.degrees(np.arccos(np.clip(da @ db / np.linalg.norm(da) / np.linalg.norm(db), -1, 1))))
        if angle < 25:
            answer = "The same direction"
        elif angle > 155:
            answer = "Opposite directions"
        elif 65 < angle < 115:
            answer = "Perpendicular directions"
        else:
            continue
        yield _question(
            "object_relative_direction",
            f"Compare how the {a} and the {b} move. Do they move in the same direction?",
            answer,
            list(RELATIVE_DIRECTIONS),
            {"objects": [a, b], "relation": answer, "angle_deg": round(angle, 1)},
            rng,
            answer_index,
        )
