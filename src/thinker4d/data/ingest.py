"""Stage 1, ingest and frames: where clips come from and which frames are shown (https://huggingface.co/papers/2605.05997).

What differs from the paper (docs/paper_differences.md, section 10):

1. Three sources behind one shape (`Source` -> `thinker4d.world.Clip`): synthetic world seeds (exact geometry),
   SpatialVID-style folders (`thinker4d.world.load_clip`: video + poses + optional depth/masks) and plain video folders
   (frames only). The paper reads SpatialVID only and drops videos with more than 50 frames.
2. Frames are sampled at a stated target fps with a maximum count (PyAV), and `fps` travels with the row; the paper
   assumes that frame k is second k and never checks it. The frames are chosen before decoding and scaled
   to `max_size` one at a time as they are decoded, so memory is bounded by the settings, not by the input video.
3. Every failure to read a clip (a corrupt or streamless video, a missing annotation file, masks of the wrong size)
   raises `IngestError` naming the clip and the file, so the runner records it and goes on.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm")


class IngestError(ValueError):
    """A clip could not be read; the message names the clip and the file."""


@dataclass(frozen=True)
class Source:
    """One clip to process. `index` is its position in the full (unsharded) source list, which fixes its row order
    and its balanced answer letters, so shards and resumed runs agree.

    Args:
        index (`int`): global position.
        kind (`str`): `"world"` (synthetic seed), `"folder"` (SpatialVID-like clip folder) or `"video"` (plain video).
        ref (`str`): the seed (as text) or the path.
    """

    index: int
    kind: str
    ref: str

    @property
    def key(self) -> str:
        """File-system-safe, unique, sortable name of this source's result file."""
        name = Path(self.ref).stem if self.kind != "world" else f"world-{int(self.ref):07d}"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]
        return f"{self.index:07d}-{safe}"


def list_sources(config) -> list[Source]:
    """The full, deterministic source list of a `SynthesisConfig`: world seeds, then clip folders, then videos."""
    refs: list[tuple[str, str]] = []
    for s in range(config.world_seed_start, config.world_seed_start + config.world_num_clips):
        refs.append(("world", str(s)))
    for pattern in config.clip_dirs:
        matches = sorted(glob.glob(os.path.expanduser(pattern)))
        if not matches:
            raise FileNotFoundError(f"clip_dirs pattern {pattern!r} matches nothing; fix the path or remove it.")
        for m in matches:
            if os.path.isdir(m):
                refs.append(("folder", m))
    for folder in config.video_dirs:
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"video_dirs entry {folder!r} is not a folder of videos.")
        for name in sorted(os.listdir(folder)):
            if name.lower().endswith(VIDEO_EXTENSIONS):
                refs.append(("video", os.path.join(folder, name)))
    return [Source(i, kind, ref) for i, (kind, ref) in enumerate(refs)]


def shard_sources(sources: list[Source], num_shards: int = 1, shard_index: int = 0) -> list[Source]:
    """The disjoint slice `sources[shard_index::num_shards]` one process (or one job of an array) handles."""
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(f"Need num_shards >= 1 and 0 <= shard_index < num_shards, got {shard_index} of {num_shards}.")
    return sources[shard_index::num_shards]


def sample_indices(num_frames: int, src_fps: float, target_fps: float | None, max_frames: int) -> np.ndarray:
    """Frame indices at `target_fps` (all frames when `None` or not below the source rate), then at most
    `max_frames` of them spread evenly over the clip."""
    if num_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.arange(num_frames)
    if target_fps and src_fps and target_fps < src_fps:
        step = src_fps / target_fps
        idx = np.unique(np.floor(np.arange(0, num_frames, step)).astype(np.int64))
    if max_frames and len(idx) > max_frames:
        idx = idx[np.round(np.linspace(0, len(idx) - 1, max_frames)).astype(np.int64)]
    return idx.astype(np.int64)


def _count_frames(path: Path) -> tuple[int, float]:
    """`(frames, fps)` from the header, or by reading the packets without decoding when the header has no count."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise IngestError(
                f"Video {path} has no video stream (audio or data only?); re-encode it with a video track."
            )
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 0.0
        if stream.frames:
            return int(stream.frames), fps
        return sum(1 for packet in container.demux(stream) if packet.size), fps


def _decode_at(path: Path, idx: np.ndarray, max_size: int | None) -> tuple[list, int]:
    """Decode frame by frame, keeping only the frames `idx` (each scaled to `max_size` before it becomes an array);
    returns `(kept frames, frames decoded)`."""
    import av

    from thinker4d.world.clip import fit_size

    wanted, kept, n = set(int(i) for i in idx), [], 0
    with av.open(str(path)) as container:
        for n, frame in enumerate(container.decode(container.streams.video[0]), start=1):
            if n - 1 in wanted:
                h, w = fit_size(frame.height, frame.width, max_size)
                if (h, w) != (frame.height, frame.width):
                    frame = frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA")
                kept.append(frame.to_ndarray(format="rgb24"))
    return kept, n


def read_video_frames(
    path, target_fps: float | None = None, max_frames: int = 16, max_size: int | None = None
) -> tuple[np.ndarray, float]:
    """Decode a video with PyAV and sample it; returns `(frames (T,H,W,3) uint8, fps of the sampled frames)`.

    The frames to keep are chosen from the frame count before decoding (`sample_indices` at `target_fps`, at most
    `max_frames`), and decoding goes frame by frame: only the kept frames become arrays, each scaled down first so its
    longer side is at most `max_size` pixels (aspect kept). Memory is bounded by `max_frames` and `max_size`, not by
    the video's length or resolution.

    Raises:
        IngestError: when the file is missing, empty, corrupt or truncated (no decodable frame), or has no video
            stream.
    """
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"Video {path} does not exist.")
    if path.stat().st_size == 0:
        raise IngestError(f"Video {path} is empty (0 bytes).")
    try:
        count, src_fps = _count_frames(path)
        idx = sample_indices(count, src_fps, target_fps, max_frames)
        frames, decoded = _decode_at(path, idx, max_size)
        if decoded and decoded != count:  # the header or packets miscounted (e.g. a truncated file): sample again
            count = decoded
            idx = sample_indices(count, src_fps, target_fps, max_frames)
            frames, decoded = _decode_at(path, idx, max_size)
    except IngestError:
        raise
    except Exception as e:  # av raises many error types for broken files
        raise IngestError(f"Cannot decode video {path} (corrupt or truncated?): {type(e).__name__}: {e}") from None
    if not frames or not decoded:
        raise IngestError(f"Video {path} has no decodable frames (truncated?).")
    out_fps = src_fps * len(idx) / decoded if src_fps else 1.0
    return np.stack(frames), float(out_fps)


def subsample_clip(clip, indices: np.ndarray):
    """A `Clip` restricted to `indices` (frames, poses, depth, masks, tracks, headings and motion-label segments
    together)."""
    from thinker4d.world.clip import remap_motion_labels, sampled_fps

    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) == clip.num_frames and np.array_equal(indices, np.arange(clip.num_frames)):
        return clip
    return dataclasses.replace(
        clip,
        frames=clip.frames[indices],
        fps=sampled_fps(clip.fps, indices),
        w2c=clip.w2c[indices],
        depth=None if clip.depth is None else clip.depth[indices],
        instance_ids=None if clip.instance_ids is None else clip.instance_ids[indices],
        tracks={k: np.asarray(v)[indices] for k, v in clip.tracks.items()},
        headings={k: np.asarray(v)[indices] for k, v in clip.headings.items()},
        motion_labels=remap_motion_labels(clip.motion_labels, indices),
        frame_indices=np.asarray(clip.frame_indices)[indices],
    )


def load_source(source: Source, config):
    """Load one source as a `thinker4d.world.Clip` with frames sampled per `config.fps` / `config.max_frames`.

    Plain videos become clips without geometry (identity poses, no masks).

    Raises:
        IngestError: naming the clip and the problem (bad video, missing annotation file, wrong mask size, ...).
    """
    from thinker4d.world import Clip, load_clip, render_clip

    try:
        if source.kind == "world":
            clip = render_clip(
                int(source.ref),
                num_frames=config.world_num_frames,
                size=config.world_size,
                fps=config.world_fps,
                camera_motions=getattr(config, "world_camera_motions", None) or None,
            )
        elif source.kind == "folder":  # sampled and scaled while decoding
            return _checked(
                source,
                load_clip(
                    source.ref,
                    max_size=config.max_size,
                    sample=lambda n, fps: sample_indices(n, fps, config.fps, config.max_frames),
                ),
            )
        elif source.kind == "video":
            frames, fps = read_video_frames(source.ref, config.fps, config.max_frames, config.max_size)
            H, W = frames.shape[1:3]
            K = np.array([[max(H, W), 0, W / 2], [0, max(H, W), H / 2], [0, 0, 1.0]])
            w2c = np.tile(np.eye(4), (len(frames), 1, 1))
            return Clip(Path(source.ref).stem, frames, fps, K, w2c, meta={"source": "video", "path": source.ref})
        else:
            raise IngestError(f"Unknown source kind {source.kind!r}; expected world, folder or video.")
    except IngestError:
        raise
    except FileNotFoundError as e:
        raise IngestError(f"Clip {source.ref}: missing file: {e}") from None
    except Exception as e:
        raise IngestError(f"Clip {source.ref}: {type(e).__name__}: {e}") from None
    return _checked(
        source, subsample_clip(clip, sample_indices(clip.num_frames, clip.fps, config.fps, config.max_frames))
    )


def _checked(source: Source, clip):
    if clip.num_frames == 0:
        raise IngestError(f"Clip {source.ref}: the video has no frames.")
    return clip


__all__ = [
    "IngestError",
    "Source",
    "list_sources",
    "load_source",
    "read_video_frames",
    "sample_indices",
    "shard_sources",
    "subsample_clip",
]
