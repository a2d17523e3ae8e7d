"""Object-motion questions computed from a clip's tracks and instance masks (https://huggingface.co/papers/2605.05997).

What differs from the paper:

1. The paper's object questions come from DSR-Train (teacher-labelled); here every label is computed from exact tracks
   and masks. A generator returns `None` rather than guess when the geometry is in a dead band between classes (e.g.
   an oblique motion for a left/right question) or the object is barely visible.
2. Thresholds are fixed and stated in the question where a person needs them (speeds are in m/s, and the ground
   tiles are 1 m wide).
"""

from __future__ import annotations

import numpy as np

from .mcq import _question, _requires


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


# --------------------------------------------------------------------------------------------------- tasks


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
