"""The `Clip` type, and reading/writing clips in a SpatialVID-like folder (https://huggingface.co/papers/2605.05997).

Our folders differ from SpatialVID's own: they keep the video next to the annotations (`video.mp4`), and add metric
z-depth (`depth.npz`, not inverse-depth EXRs), an instance-id map (`masks.npz`) and object tracks (`tracks.json`).
Real SpatialVID folders are read by `spatialvid.py`; mp4 reading and writing lives in `video_io.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .camera import STAY, matrix_to_pose, motion_label_text, pose_to_matrix
from .spatialvid import (
    _read_indexes,
    _resize_nearest,
    _selection,
    expand_dyn_masks,
    read_spatialvid,
    remap_motion_labels,
    sampled_fields,
    sampled_fps,
)
from .video_io import fit_size, read_video, video_info, write_video


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
        objects (`list[dict]`): per object `name, shape, color, size` (metres), `moving` and `facing`.
        tracks (`dict[str, np.ndarray]`): per object name, `(T, 3)` world position of its centre in metres.
        headings (`dict[str, np.ndarray]`): per object that shows a front (`facing`), `(T,)` heading in degrees,
            counter-clockwise from +X (east) seen from above, not wrapped (a turn of 400 degrees reads as one).
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
    headings: dict = field(default_factory=dict)
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
        bad = {n: np.shape(h) for n, h in self.headings.items() if np.shape(h) != (T,)}
        if bad:
            raise ValueError(f"Clip {self.clip_id}: headings must have one value per frame ({T},), got {bad}.")
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
        "units": "metres, world frame (Z up), object centre per frame; headings in degrees counter-clockwise from +X",
        "objects": [
            {
                **o,
                "positions": np.asarray(clip.tracks[o["name"]]).round(6).tolist(),
                **(
                    {"headings": np.asarray(clip.headings[o["name"]]).round(6).tolist()}
                    if o["name"] in clip.headings
                    else {}
                ),
            }
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
            poses, masks, depth, tracks, headings, motion labels and `fps` follow.

    Raises:
        FileNotFoundError: when the folder is neither layout, a file of a thinker4d world folder is missing, or the
            video cannot be found.
        ValueError: when the video has no video stream, or an annotation file does not match the video.
    """
    path = Path(path)
    if (path / "clip.json").is_file():
        return _load_world(path, video, max_size, sample)
    if (path / "poses.npy").is_file():
        return Clip(**read_spatialvid(path, video, max_size, sample))
    raise FileNotFoundError(
        f"{path} is not a clip folder: expected clip.json (thinker4d world) or poses.npy + intrinsics.npy "
        "(SpatialVID annotations)."
    )


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
    objects = [{k: v for k, v in o.items() if k not in ("positions", "headings")} for o in tr["objects"]]
    tracks = {o["name"]: np.asarray(o["positions"], dtype=np.float64) for o in tr["objects"]}
    headings = {o["name"]: np.asarray(o["headings"], dtype=np.float64) for o in tr["objects"] if "headings" in o}
    for key, values in (("positions", tracks), ("headings", headings)):
        bad = [n for n, t in values.items() if len(t) != T]
        if bad:
            raise ValueError(f"{path / 'tracks.json'}: {key} of {bad} do not have {T} entries (one per pose).")
    labels = json.loads((path / "instructions.json").read_text())
    return Clip(
        clip_id=info["clip_id"],
        **sampled_fields(path, frames, fps, w2c, labels, sel),
        depth=depth,
        instance_ids=ids,
        object_names=names,
        objects=objects,
        tracks={n: t[sel] for n, t in tracks.items()},
        headings={n: h[sel] for n, h in headings.items()},
        frame_indices=frame_indices[sel],
        meta=info.get("meta", {}),
    )


__all__ = [
    "FORMAT",
    "Clip",
    "expand_dyn_masks",
    "fit_size",
    "load_clip",
    "read_video",
    "remap_motion_labels",
    "sampled_fps",
    "save_clip",
    "video_info",
    "write_video",
]
