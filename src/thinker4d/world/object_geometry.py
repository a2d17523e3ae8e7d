"""Thresholds, option texts and geometry helpers shared by the object-motion question generators
(`direction_questions.py`, `distance_questions.py`, `speed_questions.py`, `object_questions.py`; the latter's docstring
says what differs from the paper)."""

from __future__ import annotations

import numpy as np


MIN_MOVE_M = 0.3  # displacement below which "direction" is not asked
STILL_SPEED = 0.05  # m/s below which an object counts as not moving
SLOW_MAX, FAST_MIN = 0.75, 1.0  # m/s; speeds in between are not labelled
DOMINANCE = 2.0  # the dominant axis must be this many times the other one
CLOSER, FARTHER, SAME_BAND = 0.85, 1.15, 0.05
MIN_STATE_INTERVALS = 2  # frame intervals an object must spend moving, and still, to count as "stops" / "starts"
AMOUNT_BANDS_M = ((0.0, 0.3), (0.6, 1.2), (1.8, np.inf))  # distance-change amounts; changes in between are not asked
PREDICT_S = 1.0  # direction prediction: seconds after the last frame

# Option texts (each generator offers all of its classes, so a class's share of the answers is its answer rate)
DIRECTIONS = ("Left", "Right", "Toward the camera", "Away from the camera")
RELATIVE_DIRECTIONS = ("The same direction", "Opposite directions", "Perpendicular directions")
DISTANCES = ("Closer", "Farther", "About the same distance")
RELATIVE_DISTANCES = ("Closer together", "Farther apart", "About the same distance")
SPEEDS = ("It does not move", "Slowly (under 1 m/s)", "Quickly (over 1 m/s)")
MOTION_STATES = (
    "It moves throughout the video",
    "It moves, then stops",
    "It is still, then starts moving",
    "It does not move",
)
AMOUNTS = ("Less than 0.3 m", "Between 0.6 m and 1.2 m", "More than 1.8 m")
PREDICTIONS = (
    "Further to the left",
    "Further to the right",
    "Closer to the camera",
    "Farther from the camera",
    "Where it is now (it is not moving at the end)",
)


# --------------------------------------------------------------------------------------------------- geometry helpers


def _min_pixels(clip) -> int:
    return max(12, clip.height * clip.width // 800)


def _visible(clip, name: str, frames) -> bool:
    if clip.instance_ids is None or name not in clip.object_names:
        return False
    i = clip.object_names.index(name) + 1
    return all(int((clip.instance_ids[f] == i).sum()) >= _min_pixels(clip) for f in frames)


def _ground_axes(clip):
    """Right and forward unit vectors of the first camera, projected on the ground plane (world)."""
    R0 = clip.c2w[0, :3, :3]
    right, fwd = R0[:, 0].copy(), R0[:, 2].copy()
    right[2] = fwd[2] = 0
    return right / np.linalg.norm(right), fwd / np.linalg.norm(fwd)


def _speeds(clip, name: str) -> np.ndarray:
    tr = np.asarray(clip.tracks[name])
    return np.linalg.norm(np.diff(tr, axis=0), axis=1) * clip.fps


def _moving_speed(clip, name: str) -> float:
    """Speed while moving (m/s): the largest per-frame speed (objects move at constant velocity)."""
    s = _speeds(clip, name)
    return float(s.max()) if len(s) else 0.0


def _candidates(clip, rng, need_tracks=True) -> list:
    """Object names in random order, moving objects first (static ones make every motion answer trivial)."""
    names = [n for n in clip.object_names if (not need_tracks or n in clip.tracks)]
    names = [names[i] for i in rng.permutation(len(names))]
    moving = {o["name"] for o in clip.objects if o.get("moving")}
    return [n for n in names if n in moving] + [n for n in names if n not in moving]


def _pairs(clip, rng) -> list:
    names = _candidates(clip, rng)
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
