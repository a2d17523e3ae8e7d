"""Object orientation questions: which way an object turns about the vertical axis over the clip, from its exact
heading (`Clip.headings`). DSR-Bench asks how an object's orientation evolves (`abs_ori`, `rel_ori`); see
`object_questions.py` for what differs from the paper."""

from __future__ import annotations

import numpy as np

from .mcq import _question, _requires
from .object_geometry import _candidates, _visible


MIN_TURN_DEG = 25.0  # a turn is asked as "left" / "right" from this many degrees
STILL_TURN_DEG = 5.0  # and as "does not turn" up to this many; turns in between are not asked
MAX_TURN_DEG = 150.0  # beyond this a half-turn the other way would look alike, so the turn is not asked
CAMERA_TURN_MARGIN_DEG = (20.0, 10.0)  # the turn relative to the line of sight: at least / at most (see below)
FRONT_VIEW_DEG = 70.0  # the front must face within this angle of the camera at the first and the last frame

ORIENTATIONS = (
    "It turns left (counter-clockwise seen from above)",
    "It turns right (clockwise seen from above)",
    "It does not turn",
)


def _bearing_to_camera(clip, t: int, center) -> float:
    """Direction from an object's centre to the camera at frame `t`, degrees counter-clockwise from +X."""
    d = clip.c2w[t, :3, 3] - np.asarray(center)
    return float(np.degrees(np.arctan2(d[1], d[0])))


def _wrap(deg: float) -> float:
    return float((deg + 180.0) % 360.0 - 180.0)


def orientation_class(turn: float, relative: float) -> str | None:
    """Left / right / no turn from the heading change `turn` (degrees, positive = counter-clockwise seen from above)
    and the change of the heading relative to the line of sight to the camera (`relative`); both must give the same
    class with a margin, so that a camera that circles the object does not make a still object look turned, nor hide
    a turn. `None` in the dead bands."""
    if abs(turn) <= STILL_TURN_DEG and abs(relative) <= CAMERA_TURN_MARGIN_DEG[1]:
        return ORIENTATIONS[2]
    if MIN_TURN_DEG <= abs(turn) <= MAX_TURN_DEG and abs(relative) >= CAMERA_TURN_MARGIN_DEG[0]:
        if np.sign(turn) == np.sign(relative):
            return ORIENTATIONS[0] if turn > 0 else ORIENTATIONS[1]
    return None


@_requires(min_frames=2, classes=ORIENTATIONS)
def object_orientation(clip, rng, answer_index=None, **_):
    """Which way does an object with a visible front turn, seen from above: left, right, or not at all? Asked only
    when its front faces within `FRONT_VIEW_DEG` of the camera at the first and the last frame (so the painted front
    is in view) and the object is visible in both."""
    T = clip.num_frames
    for name in _candidates(clip, rng):
        if name not in clip.headings or not _visible(clip, name, [0, T - 1]):
            continue
        heading = np.asarray(clip.headings[name], dtype=np.float64)
        tr = np.asarray(clip.tracks[name])
        bearings = (_bearing_to_camera(clip, 0, tr[0]), _bearing_to_camera(clip, T - 1, tr[-1]))
        if max(abs(_wrap(heading[0] - bearings[0])), abs(_wrap(heading[-1] - bearings[1]))) > FRONT_VIEW_DEG:
            continue
        turn = float(heading[-1] - heading[0])
        relative = turn - _wrap(bearings[1] - bearings[0])
        answer = orientation_class(turn, relative)
        if answer is None:
            continue
        yield _question(
            "object_orientation",
            f"The {name} has its front painted in a contrasting stripe. Seen from above, which way does the {name} "
            "turn during the video?",
            answer,
            list(ORIENTATIONS),
            {
                "object": name,
                "orientation": answer,
                "turn_deg": round(turn, 2),
                "relative_turn_deg": round(relative, 2),
                "start_heading_deg": round(float(heading[0]), 2),
                "end_heading_deg": round(float(heading[-1]), 2),
            },
            rng,
            answer_index,
        )
