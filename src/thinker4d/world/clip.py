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


def fit_size(height: int, width: int, max_size: int | None) -> tuple[int, int]:
    """`(height, width)` scaled down (aspect kept) so the longer side is at most `max_size`; unchanged when it already
    fits or `max_size` is `None`."""
    if not max_size or max(height, width) <= max_size:
        return int(height), int(width)
    scale = max_size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def video_info(path) -> dict:
    """What a video's header says, without decoding: `num_frames` (0 when the container does not say), `fps`,
    `height`, `width`.

    Raises:
        ValueError: when the file has no video stream.
    """
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream (audio or data only?); re-encode it with a video track.")
        stream = container.streams.video[0]
        return {
            "num_frames": int(stream.frames or 0),
            "fps": float(stream.average_rate or stream.guessed_rate or 0) or 0.0,
            "height": int(stream.codec_context.height),
            "width": int(stream.codec_context.width),
        }


def read_video(path, indices=None, max_size: int | None = None) -> tuple[np.ndarray, float]:
    """Decode an mp4 into (T,H,W,3) uint8 frames (only `indices`, when given) and its frame rate.

    Frames are decoded one at a time and only the wanted ones are kept, each scaled down first so its longer side is at
    most `max_size` (area interpolation, aspect kept): memory holds the kept frames at that size, never the video.

    Raises:
        ValueError: when the file has no video stream, or lacks frames listed in `indices`.
    """
    import av

    wanted = None if indices is None else {int(i): k for k, i in enumerate(indices)}
    out = {}
    i = -1
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream (audio or data only?); re-encode it with a video track.")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 0.0
        for i, frame in enumerate(container.decode(stream)):
            if wanted is None or i in wanted:
                h, w = fit_size(frame.height, frame.width, max_size)
                if (h, w) != (frame.height, frame.width):
                    frame = frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA")
                out[i] = frame.to_ndarray(format="rgb24")
            if wanted is not None and len(out) == len(wanted):
                break
    if wanted is not None and len(out) < len(wanted):
        missing = sorted(set(wanted) - set(out))[:5]
        raise ValueError(f"{path}: the video has no frames {missing} listed in indexes.txt (it has {i + 1} frames).")
    frames = np.stack([out[k] for k in sorted(out)]) if out else np.zeros((0, 0, 0, 3), np.uint8)
    return frames, fps


def remap_motion_labels(labels: dict, indices) -> dict:
    """`instructions.json` segments (`"start->end"` over the frames) re-expressed over the frames `indices` keeps;
    a segment keeping fewer than two frames is dropped."""
    pos = {int(i): k for k, i in enumerate(indices)}
    out = {}
    for key, value in labels.items():
        a, b = (int(x) for x in str(key).split("->"))
        inside = [k for i, k in pos.items() if a <= i <= b]
        if len(inside) >= 2:
            out[f"{min(inside)}->{max(inside)}"] = value
    return out


def sampled_fps(fps: float, indices) -> float:
    """Frame rate of the frames `indices` keeps from a `fps` sequence (their mean spacing)."""
    indices = np.asarray(indices)
    span = float(indices[-1] - indices[0]) if len(indices) > 1 else 1.0
    return float(fps * (len(indices) - 1) / span) if len(indices) > 1 and span > 0 else float(fps)


def _selection(sample, num_frames: int, fps: float) -> np.ndarray:
    """The frames a loader keeps: `sample(num_frames, fps)` (checked), or all of them."""
    if sample is None:
        return np.arange(num_frames, dtype=np.int64)
    sel = np.asarray(sample(num_frames, fps), dtype=np.int64).reshape(-1)
    if len(sel) and (sel.min() < 0 or sel.max() >= num_frames):
        raise ValueError(f"sample returned frame indices outside 0..{num_frames - 1}: {sel.tolist()[:5]}")
    return sel


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


def load_clip(path, video=None, max_size: int | None = None, sample=None) -> Clip:
    """Read a clip folder written by `save_clip`, or a real SpatialVID annotation folder, into a `Clip`.

    For SpatialVID (`annotations/<group>/<id>/` with `poses.npy`, `intrinsics.npy`, `indexes.txt`, ...) the video is
    `video` if given, else `<root>/videos/<group>/<id>.mp4`, else `<folder>/video.mp4`. Only the frames listed in
    `indexes.txt` are decoded, so frames and poses stay aligned.

    Args:
        max_size (`int`, *optional*): scale frames down at decode time so their longer side is at most this many
            pixels (aspect kept); masks and depth follow (nearest neighbour) and `K` is for the new size.
        sample (`Callable[[int, float], array]`, *optional*): `(num_frames, fps) -> indices` of the clip's frames to
            keep (e.g. `thinker4d.data.ingest.sample_indices` at a target fps); only those frames are decoded, and
            poses, masks, depth, tracks, motion labels and `fps` follow.

    Raises:
        FileNotFoundError: when the folder is neither layout, a file of a thinker4d world folder is missing, or the
            video cannot be found.
        ValueError: when the video has no video stream, or an annotation file does not match the video.
    """
    path = Path(path)
    if (path / "clip.json").is_file():
        return _load_world(path, video, max_size, sample)
    if (path / "poses.npy").is_file():
        return _load_spatialvid(path, video, max_size, sample)
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


# every file `save_clip` writes, except the optional depth; masks and tracks only when the clip has objects
_WORLD_FILES = ("poses.npy", "intrinsics.npy", "indexes.txt", "instructions.json")
_WORLD_OBJECT_FILES = ("masks.npz", "tracks.json")


def _load_world(path: Path, video, max_size, sample) -> Clip:
    info = json.loads((path / "clip.json").read_text())
    if info.get("format") != FORMAT:
        raise ValueError(f"{path / 'clip.json'}: unknown format {info.get('format')!r}; expected {FORMAT!r}.")
    names = list(info.get("object_names", []))
    required = list(_WORLD_FILES) + ([] if video else ["video.mp4"]) + (list(_WORLD_OBJECT_FILES) if names else [])
    missing = [f for f in required if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{path}: missing {', '.join(missing)}; a thinker4d world clip folder needs "
            f"{', '.join(required)} (clip.json lists objects {names}): restore the file(s) or write the clip again "
            "with thinker4d.world.save_clip."
        )
    video = Path(video or path / "video.mp4")
    w2c = pose_to_matrix(np.load(path / "poses.npy"))
    T = len(w2c)
    frame_indices = _read_indexes(path, T)
    if len(frame_indices) != T:
        raise ValueError(f"{path}: indexes.txt lists {len(frame_indices)} frames but poses.npy has {T} poses.")
    head = video_info(video)
    if head["num_frames"] and head["num_frames"] != T:
        raise ValueError(f"{video} has {head['num_frames']} frames but {path / 'poses.npy'} has {T} poses.")
    native = (T, head["height"], head["width"])
    fps = float(info["fps"])
    sel = _selection(sample, T, fps)
    frames, _ = read_video(video, sel, max_size)
    H, W = frames.shape[1:3]

    def per_frame(name: str, key: str):
        if not (path / name).is_file():
            return None
        arr = np.load(path / name)[key]
        if arr.shape != native:
            raise ValueError(
                f"{path / name}: {key} must be {native} (one map per pose, at the video's size), got {arr.shape}."
            )
        return _resize_nearest(arr[sel], H, W)

    depth = per_frame("depth.npz", "depth")
    ids = per_frame("masks.npz", "instance_ids")
    tr = json.loads((path / "tracks.json").read_text()) if (path / "tracks.json").is_file() else {"objects": []}
    objects = [{k: v for k, v in o.items() if k != "positions"} for o in tr["objects"]]
    tracks = {o["name"]: np.asarray(o["positions"], dtype=np.float64) for o in tr["objects"]}
    bad = [n for n, t in tracks.items() if len(t) != T]
    if bad:
        raise ValueError(f"{path / 'tracks.json'}: positions of {bad} do not have {T} entries (one per pose).")
    labels = json.loads((path / "instructions.json").read_text())
    whole = len(sel) == T and np.array_equal(sel, np.arange(T))
    return Clip(
        clip_id=info["clip_id"],
        frames=frames,
        fps=fps if whole else sampled_fps(fps, sel),
        K=_intrinsics_to_K(np.load(path / "intrinsics.npy"), W, H),
        w2c=w2c[sel],
        depth=depth,
        instance_ids=ids,
        object_names=names,
        objects=objects,
        tracks={n: t[sel] for n, t in tracks.items()},
        motion_labels=labels if whole else remap_motion_labels(labels, sel),
        frame_indices=frame_indices[sel],
        meta=info.get("meta", {}),
    )


def expand_dyn_masks(npz, frames=None) -> np.ndarray:
    """SpatialVID `dyn_masks.npz` (per-frame CSR: `shape`, `f_{i}_data`, `f_{i}_indices`, `f_{i}_indptr`) -> (T,H,W) bool
    (only the masks of `frames`, when given)."""
    shape = tuple(int(s) for s in np.asarray(npz["shape"]).reshape(-1))
    H, W = shape[-2:]
    n = shape[0] if len(shape) == 3 else len([k for k in npz.files if k.endswith("_indptr")])
    frames = range(n) if frames is None else [int(i) for i in frames]
    out = np.zeros((len(frames), H, W), dtype=bool)
    for k, i in enumerate(frames):
        data, indices, indptr = npz[f"f_{i}_data"], npz[f"f_{i}_indices"], npz[f"f_{i}_indptr"]
        rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        out[k, rows, indices] = data != 0
    return out


def _resize_nearest(masks: np.ndarray, H: int, W: int) -> np.ndarray:
    if masks.shape[1:] == (H, W):
        return masks
    rows = (np.arange(H) * masks.shape[1] // H).clip(0, masks.shape[1] - 1)
    cols = (np.arange(W) * masks.shape[2] // W).clip(0, masks.shape[2] - 1)
    return masks[:, rows][:, :, cols]


def _load_spatialvid(path: Path, video, max_size, sample) -> Clip:
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
    head = video_info(video)
    video_fps = head["fps"]
    interval = float(np.median(np.diff(indices))) if len(indices) > 1 else 1.0
    T = len(indices)
    fps = video_fps / max(interval, 1.0) if video_fps else 0.0
    sel = _selection(sample, T, fps)
    whole = len(sel) == T and np.array_equal(sel, np.arange(T))
    frames, _ = read_video(video, indices[sel], max_size)
    H, W = frames.shape[1:3]
    ids, names, objects = None, [], []
    if (path / "dyn_masks.npz").is_file():
        npz = np.load(path / "dyn_masks.npz")
        shape = tuple(int(x) for x in np.asarray(npz["shape"]).reshape(-1))
        n = shape[0] if len(shape) == 3 else len([k for k in npz.files if k.endswith("_indptr")])
        if n == T:
            ids, names = _resize_nearest(expand_dyn_masks(npz, sel), H, W).astype(np.uint8), ["dynamic"]
            objects = [{"name": "dynamic", "shape": None, "color": None, "size": None, "moving": True}]
    depth = None
    if (path / "depth.npz").is_file():
        depth = np.load(path / "depth.npz")["depth"].astype(np.float32)
        native = (T, head["height"], head["width"])
        depth = _resize_nearest(depth[sel], H, W) if depth.shape == native else None
    instr = path / "instructions.json"
    labels = json.loads(instr.read_text()) if instr.is_file() else {}
    return Clip(
        clip_id=path.name,
        frames=frames,
        fps=fps if whole else sampled_fps(fps, sel),
        K=_intrinsics_to_K(np.load(path / "intrinsics.npy"), W, H),
        w2c=w2c[sel],
        depth=depth,
        instance_ids=ids,
        object_names=names,
        objects=objects,
        tracks={},
        motion_labels=labels if whole else remap_motion_labels(labels, sel),
        frame_indices=indices[sel],
        meta={"source": "spatialvid", "video": str(video), "video_fps": video_fps, "scale": "up-to-scale"},
    )
