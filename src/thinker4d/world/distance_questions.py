"""Object distance questions: how an object's distance to the camera, or two objects' distance, changes. See
`object_questions.py` for what differs from the paper."""

from __future__ import annotations

import numpy as np

from .mcq import _question, _requires
from .object_geometry import (
    AMOUNT_BANDS_M,
    AMOUNTS,
    CLOSER,
    DISTANCES,
    FARTHER,
    RELATIVE_DISTANCES,
    SAME_BAND,
    _candidates,
    _pairs,
    _visible,
)


def _distance_class(d0: float, d1: float) -> str | None:
    r = d1 / max(d0, 1e-9)
    if r < CLOSER:
        return "Closer"
    if r > FARTHER:
        return "Farther"
    if abs(r - 1) < SAME_BAND:
        return "About the same distance"
    return None


def _camera_distances(clip, rng):
    """`(name, d0, d1)` for each candidate object visible in the first and last frames: its distance (metres) to the
    camera at the first frame and to the (possibly moved) camera at the last frame."""
    T = clip.num_frames
    cams = clip.c2w[:, :3, 3]
    for name in _candidates(clip, rng):
        tr = np.asarray(clip.tracks[name])
        if _visible(clip, name, [0, T - 1]):
            yield name, float(np.linalg.norm(tr[0] - cams[0])), float(np.linalg.norm(tr[-1] - cams[-1]))


@_requires(min_frames=2, classes=DISTANCES)
def object_distance(clip, rng, answer_index=None, **_):
    """Does an object get closer to or farther from the camera (camera motion included)?"""
    for name, d0, d1 in _camera_distances(clip, rng):
        answer = _distance_class(d0, d1)
        if answer is None:
            continue
        yield _question(
            "object_distance",
            f"Between the first and the last frame, does the {name} get closer to or farther from the camera?",
            answer,
            list(DISTANCES),
            {
                "object": name,
                "distance_change": answer.split()[0].lower() if answer != "About the same distance" else "same",
                "start_m": round(d0, 3),
                "end_m": round(d1, 3),
            },
            rng,
            answer_index,
        )


@_requires(min_frames=2, classes=AMOUNTS)
def object_distance_change(clip, rng, answer_index=None, **_):
    """By how many metres does the distance between an object and the camera change (camera motion included)? Changes
    between the bands of `AMOUNT_BANDS_M` are not asked."""
    for name, d0, d1 in _camera_distances(clip, rng):
        change = abs(d1 - d0)
        answer = next((a for a, (lo, hi) in zip(AMOUNTS, AMOUNT_BANDS_M) if lo <= change < hi), None)
        if answer is None:
            continue
        yield _question(
            "object_distance_change",
            f"By how much does the distance between the {name} and the camera change from the first to the last "
            "frame? (The ground tiles are 1 m wide.)",
            answer,
            list(AMOUNTS),
            {
                "object": name,
                "amount": answer,
                "change_m": round(change, 3),
                "start_m": round(d0, 3),
                "end_m": round(d1, 3),
            },
            rng,
            answer_index,
        )


@_requires(min_frames=2, classes=RELATIVE_DISTANCES)
def object_relative_distance(clip, rng, answer_index=None, **_):
    """Do two objects get closer to or farther from each other?"""
    T = clip.num_frames
    for a, b in _pairs(clip, rng):
        ta, tb = np.asarray(clip.tracks[a]), np.asarray(clip.tracks[b])
        if not (_visible(clip, a, [0, T - 1]) and _visible(clip, b, [0, T - 1])):
            continue
        d0, d1 = float(np.linalg.norm(ta[0] - tb[0])), float(np.linalg.norm(ta[-1] - tb[-1]))
        answer = _distance_class(d0, d1)
        if answer is None:
            continue
        answer = {"Closer": "Closer together", "Farther": "Farther apart"}.get(answer, answer)
        yield _question(
            "object_relative_distance",
            f"Between the first and the last frame, do the {a} and the {b} get closer together or farther apart?",
            answer,
            list(RELATIVE_DISTANCES),
            {"objects": [a, b], "distance_change": answer, "start_m": round(d0, 3), "end_m": round(d1, 3)},
            rng,
            answer_index,
        )
