"""Camera-motion classes, camera trajectories and the poses-only motion labeller
(https://huggingface.co/papers/2605.05997).

The classes are SpatialVID's `instructions.json` labels (the paper's DIFT data comes from SpatialVID). What differs from
SpatialVID's `utils/get_instructions.py`:

1. Our labeller compares the first and the last pose of a segment (no EMA smoothing): synthetic poses are exact.
2. Thresholds are in metres and degrees over the whole segment (0.15 m, 4 degrees), because our poses are metric;
   SpatialVID's are per step and its poses are up to scale.
3. Translations are expressed in the first frame's camera axes and rotations are decomposed "yxz" (yaw, pitch,
   roll) in that frame; the generator uses the same parameterisation, so labels are recovered exactly.
"""

from __future__ import annotations

import numpy as np


CAMERA_MOTIONS = (
    "Dolly In",
    "Dolly Out",
    "Truck Left",
    "Truck Right",
    "Pedestal Up",
    "Pedestal Down",
    "Pan Left",
    "Pan Right",
    "Tilt Up",
    "Tilt Down",
    "Roll CW",
    "Roll CCW",
)
STAY = "Stay"

MOTION_ALIASES = {
    "Move Forward": "Dolly In",
    "Move Backward": "Dolly Out",
    "Move Left": "Truck Left",
    "Move Right": "Truck Right",
    "Move Up": "Pedestal Up",
    "Move Down": "Pedestal Down",
    "Roll Clockwise": "Roll CW",
    "Roll Counter-Clockwise": "Roll CCW",
    "Roll Counterclockwise": "Roll CCW",
    "Static": STAY,
}

# class -> (axis index in [tx, ty, tz, yaw, pitch, roll], sign). Camera axes are OpenCV: x right, y down, z forward.
_AXIS = {
    "Dolly In": (2, +1),
    "Dolly Out": (2, -1),
    "Truck Left": (0, -1),
    "Truck Right": (0, +1),
    "Pedestal Up": (1, -1),
    "Pedestal Down": (1, +1),
    "Pan Left": (3, -1),
    "Pan Right": (3, +1),
    "Tilt Up": (4, +1),
    "Tilt Down": (4, -1),
    "Roll CW": (5, +1),
    "Roll CCW": (5, -1),
}
_BY_AXIS = {(a, s): name for name, (a, s) in _AXIS.items()}

TRANSLATION_THRESHOLD_M = 0.15
ROTATION_THRESHOLD_DEG = 4.0


def canonical_motion(motion: str) -> tuple[str, ...]:
    """Parse `"Pan Right"`, an alias (`"Move Forward"`), `"Stay"` or a combination `"Dolly In + Pan Right"` into a
    tuple of canonical class names in `CAMERA_MOTIONS` order (empty tuple for Stay).

    Raises:
        ValueError: for an unknown class (the message lists the valid choices), or two classes on the same axis.
    """
    if not isinstance(motion, str) or not motion.strip():
        raise ValueError(f"camera_motion must be a non-empty string, got {motion!r}.")
    parts = [p.strip() for p in motion.split("+")]
    names = []
    for p in parts:
        p = MOTION_ALIASES.get(p, p)
        if p == STAY:
            continue
        if p not in _AXIS:
            raise ValueError(
                f"Unknown camera motion {p!r} in {motion!r}. Valid classes: {', '.join(CAMERA_MOTIONS)}, {STAY!r}; "
                f"aliases: {', '.join(MOTION_ALIASES)}; combine two with ' + ' (e.g. 'Dolly In + Pan Right')."
            )
        names.append(p)
    axes = [_AXIS[n][0] for n in names]
    if len(set(axes)) != len(axes):
        raise ValueError(f"Camera motion {motion!r} combines two classes on the same axis; pick at most one per axis.")
    return tuple(sorted(names, key=CAMERA_MOTIONS.index))


def motion_label_text(labels) -> str:
    """`("Dolly In", "Pan Right")` -> `"Dolly In + Pan Right"`; empty -> `"Stay"`."""
    labels = [lab for lab in labels if lab != STAY]
    return " + ".join(sorted(labels, key=CAMERA_MOTIONS.index)) if labels else STAY


# --------------------------------------------------------------------------------------------------- rotations


def rot_x(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)


def rot_y(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)


def rot_z(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


def euler_yxz(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """`R_y(yaw) @ R_x(pitch) @ R_z(roll)` in camera axes: +yaw turns the view right, +pitch up, +roll clockwise."""
    # OpenCV y points down, so turning the view *up* is a rotation about +x that sends z towards -y: +pitch = rot_x(+).
    return rot_y(yaw) @ rot_x(pitch) @ rot_z(roll)


def decompose_yxz(R: np.ndarray) -> tuple[float, float, float]:
    """Inverse of `euler_yxz` (yaw, pitch, roll) in radians."""
    pitch = float(np.arcsin(np.clip(-R[1, 2], -1.0, 1.0)))
    yaw = float(np.arctan2(R[0, 2], R[2, 2]))
    roll = float(np.arctan2(R[1, 0], R[1, 1]))
    return yaw, pitch, roll


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """(…,3,3) rotation -> (…,4) quaternion `[qx, qy, qz, qw]` (scipy order), `qw >= 0`."""
    R = np.asarray(R, dtype=np.float64)
    m = R.reshape(-1, 3, 3)
    q = np.empty((m.shape[0], 4))
    for i, r in enumerate(m):
        tr = np.trace(r)
        if tr > 0:
            s = np.sqrt(tr + 1.0) * 2
            q[i] = [(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, 0.25 * s]
        elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
            s = np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
            q[i] = [0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s, (r[2, 1] - r[1, 2]) / s]
        elif r[1, 1] > r[2, 2]:
            s = np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
            q[i] = [(r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s, (r[0, 2] - r[2, 0]) / s]
        else:
            s = np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
            q[i] = [(r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s, (r[1, 0] - r[0, 1]) / s]
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    q *= np.where(q[:, 3:] < 0, -1.0, 1.0)
    return q.reshape(R.shape[:-2] + (4,))


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(…,4) `[qx, qy, qz, qw]` -> (…,3,3) rotation (the quaternion is normalised first)."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    R = np.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - z * w),
            2 * (x * z + y * w),
            2 * (x * y + z * w),
            1 - 2 * (x * x + z * z),
            2 * (y * z - x * w),
            2 * (x * z - y * w),
            2 * (y * z + x * w),
            1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    )
    return R.reshape(q.shape[:-1] + (3, 3))


def matrix_to_pose(w2c: np.ndarray) -> np.ndarray:
    """(T,4,4) world-to-camera -> (T,7) SpatialVID `poses.npy` rows `[tx, ty, tz, qx, qy, qz, qw]`."""
    w2c = np.asarray(w2c, dtype=np.float64)
    return np.concatenate([w2c[..., :3, 3], matrix_to_quat(w2c[..., :3, :3])], axis=-1)


def pose_to_matrix(poses: np.ndarray) -> np.ndarray:
    """(T,7) SpatialVID `poses.npy` rows `[tx, ty, tz, qx, qy, qz, qw]` -> (T,4,4) world-to-camera."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[1] != 7:
        raise ValueError(f"poses must have shape (N, 7) [tx, ty, tz, qx, qy, qz, qw], got {poses.shape}.")
    out = np.tile(np.eye(4), (len(poses), 1, 1))
    out[:, :3, :3] = quat_to_matrix(poses[:, 3:])
    out[:, :3, 3] = poses[:, :3]
    return out


# --------------------------------------------------------------------------------------------------- trajectories


def camera_trajectory(
    labels: tuple[str, ...], magnitudes: dict[str, float], num_frames: int, start_c2w: np.ndarray
) -> np.ndarray:
    """(T,4,4) camera-to-world poses for a constant-velocity motion.

    Args:
        labels: canonical class names (see `canonical_motion`); empty for Stay.
        magnitudes: total motion over the clip per class, metres for translations and degrees for rotations.
        num_frames: T.
        start_c2w: (4,4) pose of the first frame.
    """
    vec = np.zeros(6)
    for name in labels:
        axis, sign = _AXIS[name]
        mag = float(magnitudes[name])
        vec[axis] = sign * (np.deg2rad(mag) if axis >= 3 else mag)
    s = np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)
    R0, p0 = start_c2w[:3, :3], start_c2w[:3, 3]
    out = np.tile(np.eye(4), (num_frames, 1, 1))
    for i, f in enumerate(s):
        out[i, :3, :3] = R0 @ euler_yxz(*(vec[3:] * f))
        out[i, :3, 3] = p0 + R0 @ (vec[:3] * f)
    return out


def relative_motion(w2c: np.ndarray, start: int = 0, end: int = -1) -> np.ndarray:
    """`[tx, ty, tz, yaw, pitch, roll]` of frame `end` in frame `start`'s camera axes (metres, radians)."""
    w2c = np.asarray(w2c, dtype=np.float64)
    c2w = np.linalg.inv(w2c)
    R0, p0 = c2w[start, :3, :3], c2w[start, :3, 3]
    R1, p1 = c2w[end, :3, :3], c2w[end, :3, 3]
    t = R0.T @ (p1 - p0)
    return np.array([*t, *decompose_yxz(R0.T @ R1)])


def camera_motion_labels(
    w2c: np.ndarray,
    start: int = 0,
    end: int = -1,
    translation_threshold: float = TRANSLATION_THRESHOLD_M,
    rotation_threshold_deg: float = ROTATION_THRESHOLD_DEG,
) -> list[str]:
    """Camera-motion classes between two frames, from (T,4,4) world-to-camera poses alone.

    Every axis whose motion passes its threshold contributes its class; `["Stay"]` when none does.

    Example:

    ```python
    >>> import numpy as np
    >>> from thinker4d.world.camera import camera_trajectory, camera_motion_labels
    >>> c2w = camera_trajectory(("Pan Right",), {"Pan Right": 20.0}, 8, np.eye(4))
    >>> camera_motion_labels(np.linalg.inv(c2w))
    ['Pan Right']
    ```
    """
    w2c = np.asarray(w2c, dtype=np.float64)
    if w2c.ndim != 3 or w2c.shape[1:] != (4, 4) or len(w2c) == 0:
        raise ValueError(f"w2c must have shape (T, 4, 4) with T >= 1, got {w2c.shape}.")
    rel = relative_motion(w2c, start, end)
    thr = np.array([translation_threshold] * 3 + [np.deg2rad(rotation_threshold_deg)] * 3)
    labels = [_BY_AXIS[(i, 1 if rel[i] > 0 else -1)] for i in range(6) if abs(rel[i]) > thr[i]]
    labels = sorted(labels, key=CAMERA_MOTIONS.index)
    return labels or [STAY]
