"""Object-motion questions computed from a clip's tracks and instance masks (https://huggingface.co/papers/2605.05997).

What differs from the paper:

1. The paper's object questions come from DSR-Train (teacher-labelled); here every label is computed from exact tracks
   and masks. A generator returns `None` rather than guess when the geometry is in a dead band between classes (e.g.
   an oblique motion for a left/right question) or the object is barely visible.
2. The paper's orientation labels come from estimated object poses; the world's balls and cylinders may carry a
   painted front and turn about the vertical axis, and their exact heading per frame gives the label.
3. Thresholds are fixed and stated in the question where a person needs them (speeds are in m/s, and the ground
   tiles are 1 m wide).

The generators live in one module per task family: `direction_questions.py`, `distance_questions.py`,
`speed_questions.py` and `orientation_questions.py` (with their shared thresholds, option texts and helpers in `object_geometry.py`); this module
holds `object_bbox` and exports every object task and threshold.
"""

from __future__ import annotations

import numpy as np

from .direction_questions import (
    object_direction,
    object_direction_camera,
    object_direction_prediction,
    object_relative_direction,
)
from .distance_questions import object_distance, object_distance_change, object_relative_distance
from .mcq import _question, _requires
from .object_geometry import (
    AMOUNT_BANDS_M,
    AMOUNTS,
    CLOSER,
    DIRECTIONS,
    DISTANCES,
    DOMINANCE,
    FARTHER,
    FAST_MIN,
    MIN_MOVE_M,
    MIN_STATE_INTERVALS,
    MOTION_STATES,
    PREDICT_S,
    PREDICTIONS,
    RELATIVE_DIRECTIONS,
    RELATIVE_DISTANCES,
    SAME_BAND,
    SLOW_MAX,
    SPEEDS,
    STILL_SPEED,
    _candidates,
    _visible,
)
from .orientation_questions import ORIENTATIONS, object_orientation
from .speed_questions import object_motion_state, object_speed, object_speed_compare


__all__ = [
    "AMOUNT_BANDS_M",
    "AMOUNTS",
    "CLOSER",
    "DIRECTIONS",
    "DISTANCES",
    "DOMINANCE",
    "FARTHER",
    "FAST_MIN",
    "MIN_MOVE_M",
    "MIN_STATE_INTERVALS",
    "MOTION_STATES",
    "ORIENTATIONS",
    "PREDICT_S",
    "PREDICTIONS",
    "RELATIVE_DIRECTIONS",
    "RELATIVE_DISTANCES",
    "SAME_BAND",
    "SLOW_MAX",
    "SPEEDS",
    "STILL_SPEED",
    "object_direction",
    "object_direction_camera",
    "object_direction_prediction",
    "object_relative_direction",
    "object_distance",
    "object_distance_change",
    "object_relative_distance",
    "object_motion_state",
    "object_orientation",
    "object_speed",
    "object_speed_compare",
    "object_bbox",
]


def _bbox(mask: np.ndarray) -> tuple | None:
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if not len(rows):
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _norm_box(box, W, H) -> tuple:
    x1, y1, x2, y2 = box
    return (round(x1 / W * 1000), round(y1 / H * 1000), round(x2 / W * 1000), round(y2 / H * 1000))


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / max(area, 1e-9)


@_requires(min_frames=1, classes=None)
def object_bbox(clip, rng, answer_index=None, **_):
    """Which box encloses an object in a given frame (from its instance mask)?"""
    if clip.instance_ids is None:
        return None
    T, H, W = clip.num_frames, clip.height, clip.width
    for name in _candidates(clip, rng, need_tracks=False):
        f = int(rng.choice([0, T // 2, T - 1]))
        if not _visible(clip, name, [f]):
            continue
        box = _norm_box(_bbox(clip.instance_ids[f] == clip.object_names.index(name) + 1), W, H)
        bw, bh = box[2] - box[0], box[3] - box[1]
        distractors = []
        for other in clip.object_names:
            ob = _bbox(clip.instance_ids[f] == clip.object_names.index(other) + 1)
            if other != name and ob is not None:
                distractors.append(_norm_box(ob, W, H))
        for _ in range(40):
            dx, dy = rng.uniform(-1, 1, 2) * 1000 * 0.45
            s = rng.uniform(0.7, 1.4)
            cx, cy = (box[0] + box[2]) / 2 + dx, (box[1] + box[3]) / 2 + dy
            nb = (cx - bw * s / 2, cy - bh * s / 2, cx + bw * s / 2, cy + bh * s / 2)
            if nb[0] < 0 or nb[1] < 0 or nb[2] > 1000 or nb[3] > 1000:
                continue
            distractors.append(tuple(int(round(x)) for x in nb))
        distractors = [d for d in dict.fromkeys(distractors) if _iou(d, box) < 0.25]
        picked = []
        for d in distractors:
            if all(_iou(d, p) < 0.5 for p in picked):
                picked.append(d)
            if len(picked) == 3:
                break
        if len(picked) < 3:
            continue
        fmt = lambda b: "[" + ", ".join(str(int(x)) for x in b) + "]"  # noqa: E731
        yield _question(
            "object_bbox",
            f"Which box [x1, y1, x2, y2] encloses the {name} in frame {f + 1} of {T}? Coordinates run from 0 to 1000, "
            "with (0, 0) at the top-left corner.",
            fmt(box),
            [fmt(p) for p in picked],
            {
                "object": name,
                "frame": f,
                "bbox_1000": list(box),
                "bbox_px": list(_bbox(clip.instance_ids[f] == clip.object_names.index(name) + 1)),
            },
            rng,
            answer_index,
        )
