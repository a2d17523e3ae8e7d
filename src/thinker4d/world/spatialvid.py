"""Reading SpatialVID annotation folders (https://huggingface.co/papers/2605.05997), and the frame-subset
bookkeeping that the thinker4d world folders, which follow the same layout, share.

What differs from SpatialVID's own folders:

1. Frames are aligned 1:1 with the poses: the loader decodes only the annotated frames listed in `indexes.txt`, and
   `fps` is the video fps divided by the annotation interval.
2. SpatialVID's `dyn_masks.npz` (one binary dynamic mask per frame) loads as one object named `"dynamic"`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .camera import pose_to_matrix
from .video_io import read_video, video_info


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


def sampled_fields(path: Path, frames: np.ndarray, fps: float, w2c: np.ndarray, labels: dict, sel) -> dict:
    """The `Clip` fields that follow the kept frames `sel` of a folder's `len(w2c)` annotated frames: `frames` (already
    decoded at their size), `fps`, `K` (from `intrinsics.npy`, for that size), `w2c` and `motion_labels`."""
    whole = len(sel) == len(w2c) and np.array_equal(sel, np.arange(len(w2c)))
    H, W = frames.shape[1:3]
    return dict(
        frames=frames,
        fps=fps if whole else sampled_fps(fps, sel),
        K=_intrinsics_to_K(np.load(path / "intrinsics.npy"), W, H),
        w2c=w2c[sel],
        motion_labels=labels if whole else remap_motion_labels(labels, sel),
    )


def read_spatialvid(path: Path, video, max_size, sample) -> dict:
    """The `Clip` fields of a SpatialVID annotation folder (see `thinker4d.world.load_clip`)."""
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
    return dict(
        clip_id=path.name,
        **sampled_fields(path, frames, fps, w2c, labels, sel),
        depth=depth,
        instance_ids=ids,
        object_names=names,
        objects=objects,
        tracks={},
        frame_indices=indices[sel],
        meta={"source": "spatialvid", "video": str(video), "video_fps": video_fps, "scale": "up-to-scale"},
    )
