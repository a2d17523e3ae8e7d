"""Scene specifications and the seeded sampler of synthetic clips (https://huggingface.co/papers/2605.05997).

What differs from the paper:

1. The paper synthesises its 4D CoT data from real SpatialVID clips with a teacher model; we add a procedural world
   whose camera and object motion are known exactly, so labels are computed rather than judged, and everything runs
   offline.
2. The world layout is fixed (sky above, ground below, sun from the east, scene redder towards the east) because a
   consistent layout is what lets tiny models learn camera motion on CPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .camera import _AXIS, CAMERA_MOTIONS, camera_trajectory, canonical_motion, euler_yxz


TRAIN_SEED_LIMIT = 1_000_000
SYNTHDSR_SEED_START = 1_000_000
SPLITS = ("train", "synthdsr")

COLORS = {
    "red": (0.85, 0.12, 0.10),
    "blue": (0.12, 0.28, 0.88),
    "green": (0.12, 0.68, 0.22),
    "yellow": (0.95, 0.84, 0.12),
    "purple": (0.58, 0.22, 0.78),
    "orange": (0.98, 0.52, 0.08),
    "white": (0.95, 0.95, 0.95),
    "black": (0.08, 0.08, 0.08),
}
SHAPES = ("cube", "ball", "cylinder")

# Speeds while moving (m/s). The gap between the bins keeps every speed label unambiguous.
SLOW_SPEED = (0.3, 0.6)
FAST_SPEED = (1.2, 1.8)
TRANSLATION_RANGE_M = (0.6, 2.5)
ROTATION_RANGE_DEG = (12.0, 40.0)
# Objects that show a front (balls and cylinders, whose silhouette a turn leaves unchanged): how often, how far they
# turn over a clip (degrees, either way, or not at all), and how far their mid-clip heading is from facing the camera.
FACING_PROB = 0.6
TURN_RANGE_DEG = (35.0, 90.0)
FACING_SPREAD_DEG = 20.0

# Camera axes (x right, y down, z forward) expressed in world axes (X east, Y north, Z up) for heading 0, pitch 0.
CAM_TO_WORLD_BASE = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


@dataclass
class CameraSpec:
    """The camera of a clip.

    Args:
        motion (`tuple[str, ...]`): canonical motion classes (empty = Stay), see `thinker4d.world.CAMERA_MOTIONS`.
        magnitudes (`dict[str, float]`): total motion over the clip per class (metres or degrees).
        position (`tuple[float, float, float]`): world position of the first frame (metres).
        heading_deg (`float`): yaw from north (+Y) towards east (+X) of the first frame.
        pitch_deg (`float`): pitch of the first frame (negative looks down).
        fov_deg (`float`): horizontal field of view.
    """

    motion: tuple = ()
    magnitudes: dict = field(default_factory=dict)
    position: tuple = (0.0, -6.0, 1.5)
    heading_deg: float = 0.0
    pitch_deg: float = -8.0
    fov_deg: float = 60.0

    def start_c2w(self) -> np.ndarray:
        c2w = np.eye(4)
        c2w[:3, :3] = CAM_TO_WORLD_BASE @ euler_yxz(np.deg2rad(self.heading_deg), np.deg2rad(self.pitch_deg), 0.0)
        c2w[:3, 3] = self.position
        return c2w

    def c2w(self, num_frames: int) -> np.ndarray:
        """(T,4,4) camera-to-world poses."""
        return camera_trajectory(tuple(self.motion), self.magnitudes, num_frames, self.start_c2w())


@dataclass
class ObjectSpec:
    """One named object. Its centre moves as `position + velocity * (clip(t, move_start, move_end) - move_start)`.

    Args:
        name (`str`): `"<color> <shape>"`, unique within a clip.
        shape (`str`): `"cube"` (yawed box, `size` = edge lengths), `"ball"` or `"cylinder"` (vertical axis).
        color (`str`): a key of `COLORS`.
        size (`tuple[float, float, float]`): extent along x, y, z in metres (ball/cylinder: diameter, diameter, height).
        position (`tuple[float, float, float]`): world centre at t = 0 (metres).
        velocity (`tuple[float, float, float]`): world velocity while moving (m/s).
        move_start, move_end (`float`): the moving interval in seconds.
        yaw_deg (`float`): heading at t = 0 about the vertical axis, degrees counter-clockwise from east (+X) seen
            from above: the direction of a cube's local +x face, and of the front marker of a `facing` object.
        turn_deg_s (`float`): yaw rate over the whole clip (degrees per second; positive turns left, i.e.
            counter-clockwise seen from above), so the heading at time t is `yaw_deg + turn_deg_s * t`.
        facing (`bool`): the object shows its front: the renderer paints a vertical wedge of it (`MARKER_DEG` either
            side of the heading) in a contrasting colour, so a turn is visible, and the clip records its heading.
    """

    name: str
    shape: str
    color: str
    size: tuple
    position: tuple
    velocity: tuple = (0.0, 0.0, 0.0)
    move_start: float = 0.0
    move_end: float = 0.0
    yaw_deg: float = 0.0
    turn_deg_s: float = 0.0
    facing: bool = False

    @property
    def moving(self) -> bool:
        return bool(np.linalg.norm(self.velocity) > 0 and self.move_end > self.move_start)

    @property
    def radius(self) -> float:
        """Radius of the bounding sphere."""
        return float(0.5 * np.linalg.norm(self.size))

    def track(self, times: np.ndarray) -> np.ndarray:
        """(T,3) world centre at `times` (seconds)."""
        active = np.clip(times, self.move_start, self.move_end) - self.move_start if self.moving else 0.0 * times
        return np.asarray(self.position)[None] + np.asarray(self.velocity)[None] * np.asarray(active)[:, None]

    def heading(self, times: np.ndarray) -> np.ndarray:
        """(T,) heading in degrees (counter-clockwise from +X seen from above) at `times` (seconds), not wrapped."""
        return self.yaw_deg + self.turn_deg_s * np.asarray(times, dtype=np.float64)


@dataclass
class ClipSpec:
    """Everything needed to render one clip; `render_spec(spec)` is a pure function of it."""

    seed: int
    num_frames: int = 16
    height: int = 128
    width: int = 128
    fps: float = 8.0
    camera: CameraSpec = field(default_factory=CameraSpec)
    objects: list = field(default_factory=list)
    texture_seed: int = 0
    ground_tint: tuple = (0.0, 0.0, 0.0)
    split: str = "train"

    def __post_init__(self):
        validate_size(self.num_frames, self.height, self.width, self.fps)

    @property
    def clip_id(self) -> str:
        return f"world-{self.seed:07d}"

    @property
    def times(self) -> np.ndarray:
        return np.arange(self.num_frames, dtype=np.float64) / self.fps

    def to_dict(self) -> dict:
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> ClipSpec:
        d = dict(d)
        cam = dict(d.pop("camera"))
        cam["motion"] = tuple(cam["motion"])
        cam["position"] = tuple(cam["position"])
        objs = [
            ObjectSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in o.items()}) for o in d.pop("objects")
        ]
        d["ground_tint"] = tuple(d["ground_tint"])
        return cls(camera=CameraSpec(**cam), objects=objs, **d)


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def validate_size(num_frames, height, width, fps=8.0):
    """Raise a clear `ValueError` for impossible clip sizes."""
    if not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}.")
    for name, v in (("height", height), ("width", width)):
        if not isinstance(v, (int, np.integer)) or v <= 0:
            raise ValueError(f"{name} must be a positive integer (pixels), got {v!r}.")
        if not 16 <= v <= 1024 or v % 2:
            raise ValueError(f"{name} must be even and between 16 and 1024 pixels (mp4 needs even sizes), got {v}.")
    if not fps or fps <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}.")


def check_seed(seed, split: str = "train") -> int:
    """Keep training and held-out (SynthDSR) seeds disjoint: train uses [0, TRAIN_SEED_LIMIT), synthdsr the rest."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}.")
    seed = int(seed)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    if split == "train" and not 0 <= seed < TRAIN_SEED_LIMIT:
        raise ValueError(
            f"Seed {seed} is not a training seed: training clips use 0 <= seed < {TRAIN_SEED_LIMIT}; seeds >= "
            f"{SYNTHDSR_SEED_START} are held out for SynthDSR (pass split='synthdsr' only to build the benchmark)."
        )
    if split == "synthdsr" and seed < SYNTHDSR_SEED_START:
        raise ValueError(f"SynthDSR seeds start at {SYNTHDSR_SEED_START}; got {seed}, which is a training seed.")
    return seed


def _sample_motion(rng) -> tuple[str, ...]:
    r = rng.random()
    if r < 0.1:
        return ()
    if r < 0.8:
        return (CAMERA_MOTIONS[rng.integers(len(CAMERA_MOTIONS))],)
    while True:
        a, b = rng.choice(len(CAMERA_MOTIONS), size=2, replace=False)
        try:
            return canonical_motion(f"{CAMERA_MOTIONS[a]} + {CAMERA_MOTIONS[b]}")
        except ValueError:
            continue


def sample_clip_spec(
    seed: int,
    *,
    num_frames: int = 16,
    size: int = 128,
    height: int | None = None,
    width: int | None = None,
    fps: float = 8.0,
    camera_motion: str | None = None,
    num_objects: int | None = None,
    split: str = "train",
    camera_motions=None,
) -> ClipSpec:
    """A random but reproducible clip specification.

    Camera, objects, textures and the objects' fronts and turns draw from separate streams (`default_rng([seed, k])`),
    so fixing `camera_motion` leaves the objects of a seed unchanged.

    Args:
        seed (`int`): training seeds are `0 <= seed < TRAIN_SEED_LIMIT`; held-out seeds need `split="synthdsr"`.
        num_frames (`int`), size / height / width (`int`, pixels, even, 16-1024), fps (`float`): clip size.
        camera_motion (`str`, *optional*): a class, alias, `"Stay"` or `"A + B"`; sampled when `None`.
        num_objects (`int`, *optional*): 0 to 8; 2 to 4 when `None`.
        split (`str`): `"train"` or `"synthdsr"`.
        camera_motions (`list[str]`, *optional*): when `camera_motion` is `None`, sample uniformly from these
            classes (or combinations) instead of from all of them.

    Example:

    ```python
    >>> from thinker4d.world import sample_clip_spec
    >>> spec = sample_clip_spec(3, camera_motion="Move Forward")
    >>> spec.camera.motion
    ('Dolly In',)
    ```
    """
    seed = check_seed(seed, split)
    height = size if height is None else height
    width = size if width is None else width
    validate_size(num_frames, height, width, fps)
    cam_rng, obj_rng, tex_rng, turn_rng = (np.random.default_rng([seed, k]) for k in range(4))

    if camera_motion is None and camera_motions:
        camera_motion = list(camera_motions)[int(cam_rng.integers(len(camera_motions)))]
    motion = _sample_motion(cam_rng) if camera_motion is None else canonical_motion(camera_motion)
    magnitudes = {}
    for name in motion:
        lo, hi = ROTATION_RANGE_DEG if _AXIS[name][0] >= 3 else TRANSLATION_RANGE_M
        magnitudes[name] = float(cam_rng.uniform(lo, hi))
    camera = CameraSpec(
        motion=motion,
        magnitudes=magnitudes,
        position=(float(cam_rng.uniform(-1, 1)), float(-6 + cam_rng.uniform(-1, 1)), float(cam_rng.uniform(1.3, 2.0))),
        heading_deg=float(cam_rng.uniform(-25, 25)),
        pitch_deg=float(cam_rng.uniform(-14, -6)),
        fov_deg=float(cam_rng.uniform(55, 70)),
    )
    if num_objects is None:
        num_objects = int(obj_rng.integers(2, 5))
    if not 0 <= num_objects <= len(COLORS):
        raise ValueError(f"num_objects must be between 0 and {len(COLORS)}, got {num_objects}.")
    duration = num_frames / fps
    objects = _sample_objects(obj_rng, camera, num_objects, num_frames, fps, duration)
    objects = _sample_turns(turn_rng, camera, objects, num_frames, fps)
    return ClipSpec(
        seed=seed,
        num_frames=num_frames,
        height=height,
        width=width,
        fps=float(fps),
        camera=camera,
        objects=objects,
        texture_seed=int(tex_rng.integers(2**31)),
        ground_tint=tuple(float(x) for x in tex_rng.uniform(-0.05, 0.05, 3)),
        split=split,
    )


def _sample_objects(rng, camera: CameraSpec, n: int, num_frames: int, fps: float, duration: float) -> list:
    times = np.arange(num_frames) / fps
    cam_pos = camera.c2w(num_frames)[:, :3, 3]
    h = np.deg2rad(camera.heading_deg)
    fwd = np.array([np.sin(h), np.cos(h), 0.0])
    right = np.array([np.cos(h), -np.sin(h), 0.0])
    half_fov = np.tan(np.deg2rad(camera.fov_deg) / 2)
    colors = [str(c) for c in rng.permutation(list(COLORS))[:n]]
    objects: list[ObjectSpec] = []
    for i, color in enumerate(colors):
        shape = SHAPES[rng.integers(len(SHAPES))]
        s = float(rng.uniform(0.6, 1.1))
        size = (s, s, s) if shape != "cylinder" else (s, s, float(rng.uniform(0.9, 1.6)))
        for _attempt in range(60):
            d = rng.uniform(3.5, 9.0)
            lat = rng.uniform(-0.55, 0.55) * d * half_fov
            base = np.asarray(camera.position) * np.array([1, 1, 0]) + d * fwd + lat * right
            pos = (float(base[0]), float(base[1]), size[2] / 2)
            # the first object always moves, so every clip has dynamics to ask about
            moving = i == 0 or rng.random() < 0.55
            vel, t0, t1, kind = (0.0, 0.0, 0.0), 0.0, 0.0, None
            if moving:
                kind = str(rng.choice(["left", "right", "toward", "away", "oblique"]))
                angle = {"left": np.pi, "right": 0.0, "toward": -np.pi / 2, "away": np.pi / 2}.get(
                    str(kind), rng.uniform(0, 2 * np.pi)
                )
                direction = np.cos(angle) * right + np.sin(angle) * fwd
                speed = rng.uniform(*(FAST_SPEED if rng.random() < 0.5 else SLOW_SPEED))
                vel = tuple(float(x) for x in direction * speed)
                timing = rng.random()
                if timing < 0.6:
                    t0, t1 = 0.0, duration
                elif timing < 0.8:  # starts moving mid-clip
                    t0, t1 = float(rng.uniform(0.3, 0.45) * duration), duration
                else:  # stops mid-clip
                    t0, t1 = 0.0, float(rng.uniform(0.55, 0.7) * duration)
            obj = ObjectSpec(
                name=f"{color} {shape}",
                shape=shape,
                color=color,
                size=size,
                position=pos,
                velocity=vel,
                move_start=t0,
                move_end=t1,
                yaw_deg=float(rng.uniform(0, 90)) if shape == "cube" else 0.0,
            )
            if kind == "toward" and obj.moving:
                # start far enough back that an approaching object does not run into the camera
                shift = np.asarray(vel) * (t0 - t1)
                obj = dataclasses.replace(obj, position=(pos[0] + shift[0], pos[1] + shift[1], pos[2]))
            if _fits(obj, objects, times, cam_pos):
                objects.append(obj)
                break
    return objects


def _fits(obj: ObjectSpec, others: list, times: np.ndarray, cam_pos: np.ndarray) -> bool:
    tr = obj.track(times)
    if np.min(np.linalg.norm(tr - cam_pos, axis=1)) < obj.radius + 1.5:
        return False
    if np.max(np.linalg.norm(tr[:, :2], axis=1)) > 30.0:
        return False
    for o in others:
        if np.min(np.linalg.norm(tr - o.track(times), axis=1)) < obj.radius + o.radius + 0.3:
            return False
    return True


def _sample_turns(rng, camera: CameraSpec, objects: list, num_frames: int, fps: float) -> list:
    """Give some balls and cylinders a front and a turn (left, right or none, equally likely), from their own random
    stream: positions, motion and every other choice of a seed stay as they were, and so do the masks and depth,
    since these shapes look the same from every heading. The front points within `FACING_SPREAD_DEG` of the camera at
    mid-clip, so the marker is in view while the object turns."""
    span = (num_frames - 1) / fps
    out = []
    for obj in objects:
        u, kind, amount, offset = rng.random(), rng.integers(3), rng.uniform(*TURN_RANGE_DEG), rng.uniform(-1, 1)
        if obj.shape not in ("ball", "cylinder") or u >= FACING_PROB:
            out.append(obj)
            continue
        total = float(amount) * (0.0, 1.0, -1.0)[int(kind)] if span > 0 else 0.0
        mid = obj.track(np.array([span / 2]))[0]
        bearing = np.degrees(np.arctan2(camera.position[1] - mid[1], camera.position[0] - mid[0]))
        yaw = float(bearing + FACING_SPREAD_DEG * offset - total / 2)
        out.append(dataclasses.replace(obj, facing=True, yaw_deg=yaw, turn_deg_s=total / span if span > 0 else 0.0))
    return out
