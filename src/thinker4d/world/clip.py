"""The `Clip` type, and reading/writing clips in a SpatialVID-like folder (https://huggingface.co/papers/2605.05997).

What differs from SpatialVID's own folders:

1. Frames in a `Clip` are aligned 1:1 with the poses: for a real SpatialVID clip the loader decodes only the annotated
   frames listed in `indexes.txt`, and `fps` is the video fps divided by the annotation interval.
2. Our folders keep the video next to the annotations (`video.mp4`), add metric z-depth (`depth.npz`, not inverse-depth
   EXRs), an instance-id map (`masks.npz`) and object tracks (`tracks.json`).
3. SpatialVID's `dyn_masks.npz` (one binary dynamic mask per frame) loads as one object named `"dynamic"`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .camera import STAY, matrix_to_pose, motion_label_text, pose_to_matrix


FORMAT = "thinker4d-world/1"


@dataclass
class Clip:
    """A video clip with its geometry. Shapes use T frames of H x W pixels; see docs/world.md for conventions.

    Args:
        clip_id (`str`): `world-0000007` for synthetic seed 7, the folder name for real clips.
        frames (`np.ndarray` of shape `(T, H, W, 3)`, uint8): RGB frames aligned 1:1 with the poses.
        fps (`float`): frame rate of `frames`.
        K (`np.ndarray` of shape `(3, 3)`): pixel intrinsics; pixel (u, v) has its centre at (u + 0.5, v + 0.5).
        w2c (`np.ndarray` of shape `(T, 4, 4)`): world-to-camera poses, OpenCV axes (x right, y down, z forward).
        depth (`np.ndarray` of shape `(T, H, W)`, float32, *optional*): z-depth in metres.
        instance_ids (`np.ndarray` of shape `(T, H, W)`, uint8, *optional*): 0 background, i + 1 = `object_names[i]`.
        object_names (`list[str]`): names of the objects in id order.
        objects (`list[dict]`): per object `name, shape, color, size` (metres) and `moving`.
        tracks (`dict[str, np.ndarray]`): per object name, `(T, 3)` world position of its centre in metres.
        motion_labels (`dict[str, list[str]]`): SpatialVID `instructions.json`, `"start->end"` -> camera-motion labels.
        frame_indices (`np.ndarray` of shape `(T,)`): index of each frame in the source video.
        meta (`dict`): `source`, `seed`, `spec`, `depth_kind`, ...

    Example:

    ```python
    >>> from thinker4d.world import render_clip
    >>> clip = render_clip(1, num_frames=4, size=64)
    >>> clip.c2w.shape, sorted(clip.masks) == sorted(clip.object_names)
    ((4, 4, 4), True)
    ```
    """

    clip_id: str
    frames: np.ndarray
    fps: float
    K: np.ndarray
    w2c: np.ndarray
    depth: np.ndarray | None = None
    instance_ids: np.ndarray | None = None
    object_names: list = field(default_factory=list)
    objects: list = field(default_factory=list)
    tracks: dict = field(default_factory=dict)
    motion_labels: dict = field(default_factory=dict)
    frame_indices: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(
                f"Clip {self.clip_id}: frames must be (T, H, W, 3) uint8, got {self.frames.shape} {self.frames.dtype}."
            )
        T = len(self.frames)
        if self.w2c.shape != (T, 4, 4):
            raise ValueError(
                f"Clip {self.clip_id}: w2c must be ({T}, 4, 4) to match {T} frames, got {self.w2c.shape}."
            )
        for name in ("depth", "instance_ids"):
            arr = getattr(self, name)
            if arr is not None and arr.shape != self.frames.shape[:3]:
                raise ValueError(f"Clip {self.clip_id}: {name} must be {self.frames.shape[:3]}, got {arr.shape}.")
        if self.frame_indices is None:
            self.frame_indices = np.arange(T, dtype=np.int64)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def c2w(self) -> np.ndarray:
        """(T,4,4) camera-to-world poses."""
        return np.linalg.inv(self.w2c)

    @property
    def masks(self) -> dict:
        """`{name: (T, H, W) bool}` instance masks (empty when the clip has no masks)."""
        if self.instance_ids is None:
            return {}
        return {name: self.instance_ids == i + 1 for i, name in enumerate(self.object_names)}

    @property
    def camera_motion(self) -> str:
        """Camera-motion label text over the whole clip (`"Pan Right"`, `"Dolly In + Tilt Up"`, `"Stay"`); segments
        with different labels are joined with `" then "`."""
        segs = [motion_label_text(v) for _, v in sorted(self.motion_labels.items(), key=lambda kv: _seg_start(kv[0]))]
        if not segs:
            return STAY
        out = [segs[0]]
        for s in segs[1:]:
            if s != out[-1]:
                out.append(s)
        return " then ".join(out)


def _seg_start(key: str) -> int:
    return int(str(key).split("->")[0])


# --------------------------------------------------------------------------------------------------- video


def write_video(path, frames: np.ndarray, fps: float, crf: int = 18) -> None:
    """H.264 (yuv420p) mp4 with PyAV; single-threaded so the bytes are reproducible."""
    import av

    T, H, W, _ = frames.shape
    if H % 2 or W % 2:
        raise ValueError(f"mp4 (yuv420p) needs even frame sizes, got {H}x{W}; render an even size.")
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        # x264's macroblock-tree rate control is not reproducible across processes; without it the bytes are.
        stream.options = {"crf": str(crf), "preset": "medium", "threads": "1", "mbtree": "0"}
        stream.codec_context.thread_count = 1
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def read_video(path, indices=None) -> tuple[np.ndarray, float]:
    """Decode an mp4 into (T,H,W,3) uint8 frames (only `indices`, when given) and its frame rate."""
    import av

    wanted = None if indices is None else {int(i): k for k, i in enumerate(indices)}
    out = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 0.0
        for i, frame in enumerate(container.decode(stream)):
            if wanted is None or i in wanted:
                out[i] = frame.to_ndarray(format="rgb24")
            if wanted is not None and len(out) == len(wanted):
                break
    if wanted is not None and len(out) < len(wanted):
        missing = sorted(set(wanted) - set(out))[:5]
        raise ValueError(f"{path}: the video has no frames {missing} listed in indexes.txt (it has {i + 1} frames).")
    frames = np.stack([out[k] for k in sorted(out)]) if out else np.zeros((0, 0, 0, 3), np.uint8)
    return frames, fps


# --------------------------------------------------------------------------------------------------- save / load


def save_clip(clip: Clip, path, video: bool = True) -> Path:
    """Write `clip` to the folder `path` (created) in the SpatialVID-like layout of docs/world.md; returns the folder."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if video:
        write_video(path / "video.mp4", clip.frames, clip.fps)
    np.save(path / "poses.npy", matrix_to_pose(clip.w2c))
    W, H = clip.width, clip.height
    intr = np.array([clip.K[0, 0] / W, clip.K[1, 1] / H, clip.K[0, 2] / W, clip.K[1, 2] / H])
    np.save(path / "intrinsics.npy", np.tile(intr, (clip.num_frames, 1)))
    (path / "indexes.txt").write_text("".join(f"{i} {int(f)}\n" for i, f in enumerate(clip.frame_indices)))
    (path / "instructions.json").write_text(json.dumps(clip.motion_labels, indent=1))
    if clip.depth is not None:
        np.savez_compressed(path / "depth.npz", depth=clip.depth.astype(np.float32))
    if clip.instance_ids is not None:
        np.savez_compressed(path / "masks.npz", instance_ids=clip.instance_ids.astype(np.uint8))
    tracks = {
        "fps": clip.fps,
        "units": "metres, world frame (Z up), object centre per frame",
        "objects": [
            {**o, "positions": np.asarray(clip.tracks[o["name"]]).round(6).tolist()}
            for o in clip.objects
            if o["name"] in clip.tracks
        ],
    }
    (path / "tracks.json").write_text(json.dumps(tracks))
    info = {
        "format": FORMAT,
        "clip_id": clip.clip_id,
        "fps": clip.fps,
        "num_frames": clip.num_frames,
        "height": H,
        "width": W,
        "K": np.asarray(clip.K).tolist(),
        "object_names": list(clip.object_names),
        "meta": clip.meta,
    }
    (path / "clip.json").write_text(json.dumps(info, indent=1))
    return path


def load_clip(path, video=None) -> Clip:
    """Read a clip folder written by `save_clip`, or a real SpatialVID annotation folder, into a `Clip`.

    For SpatialVID (`annotations/<group>/<id>/` with `poses.npy`, `intrinsics.npy`, `indexes.txt`, ...) the video is
    `video` if given, else `<root>/videos/<group>/<id>.mp4`, else `<folder>/video.mp4`. Only the frames listed in
    `indexes.txt` are decoded, so frames and poses stay aligned.

    Raises:
        FileNotFoundError: when the folder is neither layout, or the video cannot be found.
    """
    path = Path(path)
    if (path / "clip.json").is_file():
        return _load_world(path, video)
    if (path / "poses.npy").is_file():
        return _load_spatialvid(path, video)
    raise FileNotFoundError(
        f"{path} is not a clip folder: expected clip.json (thinker4d world) or poses.npy + intrinsics.npy "
        "(SpatialVID annotations)."
    )


def _intrinsics_to_K(intr: np.ndarray, W: int, H: int) -> np.ndarray:
    fx, fy, cx, cy = np.asarray(intr, dtype=np.float64).reshape(-1, 4)[0]
    return np.array([[fx * W, 0, cx * W], [0, fy * H, cy * H], [0, 0, 1]])


def _read_indexes(path: Path, n: int) -> np.ndarray:
    f = path / "indexes.txt"
    if not f.is_file():
        return np.arange(n, dtype=np.int64)
    rows = [line.split() for line in f.read_text().splitlines() if line.strip()]
    try:
        return np.array([int(r[1] if len(r) > 1 else r[0]) for r in rows], dtype=np.int64)
    except (ValueError, IndexError) as e:
        raise ValueError(f"{f}: expected lines '<seq> <frame_idx>', got {rows[:2]!r}.") from e


def _load_world(path: Path, video) -> Clip:
    info = json.loads((path / "clip.json").read_text())
    if info.get("format") != FORMAT:
        raise ValueError(f"{path / 'clip.json'}: unknown format {info.get('format')!r}; expected {FORMAT!r}.")
    frames, _ = read_video(video or path / "video.mp4")
    w2c = pose_to_matrix(np.load(path / "poses.npy"))
    depth = np.load(path / "depth.npz")["depth"] if (path / "depth.npz").is_file() else None
    ids = np.load(path / "masks.npz")["instance_ids"] if (path / "masks.npz").is_file() else None
    tr = json.loads((path / "tracks.json").read_text()) if (path / "tracks.json").is_file() else {"objects": []}
    objects = [{k: v for k, v in o.items() if k != "positions"} for o in tr["objects"]]
    return Clip(
        clip_id=info["clip_id"],
        frames=frames,
        fps=float(info["fps"]),
        K=_intrinsics_to_K(np.load(path / "intrinsics.npy"), frames.shape[2], frames.shape[1]),
        w2c=w2c,
        depth=depth,
        instance_ids=ids,
        object_names=list(info.get("object_names", [])),
        objects=objects,
        tracks={o["name"]: np.asarray(o["positions"], dtype=np.float64) for o in tr["objects"]},
        motion_labels=json.loads((path / "instructions.json").read_text()),
        frame_indices=_read_indexes(path, len(w2c)),
        meta=info.get("meta", {}),
    )


def expand_dyn_masks(npz) -> np.ndarray:
    """SpatialVID `dyn_masks.npz` (per-frame CSR: `shape`, `f_{i}_data`, `f_{i}_indices`, `f_{i}_indptr`) -> (T,H,W) bool."""
    shape = tuple(int(s) for s in np.asarray(npz["shape"]).reshape(-1))
    H, W = shape[-2:]
    n = shape[0] if len(shape) == 3 else len([k for k in npz.files if k.endswith("_indptr")])
    out = np.zeros((n, H, W), dtype=bool)
    for i in range(n):
        data, indices, indptr = npz[f"f_{i}_data"], npz[f"f_{i}_indices"], npz[f"f_{i}_indptr"]
        rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        out[i, rows, indices] = data != 0
    return out


def _resize_nearest(masks: np.ndarray, H: int, W: int) -> np.ndarray:
    if masks.shape[1:] == (H, W):
        return masks
    rows = (np.arange(H) * masks.shape[1] // H).clip(0, masks.shape[1] - 1)
    cols = (np.arange(W) * masks.shape[2] // W).clip(0, masks.shape[2] - 1)
    return masks[:, rows][:, :, cols]


def _load_spatialvid(path: Path, video) -> Clip:
    w2c = pose_to_matrix(np.load(path / "poses.npy"))
    indices = _read_indexes(path, len(w2c))
    if len(indices) != len(w2c):
        raise ValueError(f"{path}: indexes.txt lists {len(indices)} frames but poses.npy has {len(w2c)} poses.")
    if video is None:
        group, cid = path.parent.name, path.name
        candidates = [path.parent.parent.parent / "videos" / group / f"{cid}.mp4", path / "video.mp4"]
        video = next((c for c in candidates if c.is_file()), None)
        if video is None:
            raise FileNotFoundError(
                f"No video for SpatialVID clip {path}: looked at {', '.join(map(str, candidates))}; pass video=<mp4>."
            )
    frames, video_fps = read_video(video, indices)
    interval = float(np.median(np.diff(indices))) if len(indices) > 1 else 1.0
    T, H, W = frames.shape[:3]
    ids, names, objects = None, [], []
    if (path / "dyn_masks.npz").is_file():
        m = expand_dyn_masks(np.load(path / "dyn_masks.npz"))
        if len(m) == T:
            ids, names = _resize_nearest(m, H, W).astype(np.uint8), ["dynamic"]
            objects = [{"name": "dynamic", "shape": None, "color": None, "size": None, "moving": True}]
    depth = None
    if (path / "depth.npz").is_file():
        depth = np.load(path / "depth.npz")["depth"].astype(np.float32)
        depth = depth if depth.shape == (T, H, W) else None
    instr = path / "instructions.json"
    return Clip(
        clip_id=path.name,
        frames=frames,
        fps=video_fps / max(interval, 1.0) if video_fps else 0.0,
        K=_intrinsics_to_K(np.load(path / "intrinsics.npy"), W, H),
        w2c=w2c,
        depth=depth,
        instance_ids=ids,
        object_names=names,
        objects=objects,
        tracks={},
        motion_labels=json.loads(instr.read_text()) if instr.is_file() else {},
        frame_indices=indices,
        meta={"source": "spatialvid", "video": str(video), "video_fps": video_fps, "scale": "up-to-scale"},
    )
