"""Decode a video once, at a target frame rate with a frame cap, and cache the frames on disk. Used by evaluation
(benchmark videos) and by the 4DRL trainer (rows with a `video` path).

Paper: https://huggingface.co/papers/2605.05997

What differs from the paper's `evaluation/dsr_eval.py` (docs/paper_differences.md, section 9):

1. One decoder (PyAV) instead of a decord -> OpenCV -> ffmpeg cascade, so every machine samples the same frames.
2. Frames are picked by their **presentation timestamps** (one every `1 / fps` seconds from the first frame), and
   the real frame rate after the cap is returned, so the model's time axis matches the seconds in the questions.
3. The cache key includes the file's size and modification time and every sampling setting, so a changed video or a
   different `--fps` never reuses stale frames; entries are written atomically.
4. A missing or unreadable file raises [`VideoError`] with a reason the runner records per row (the paper silently
   dropped such rows from every denominator).
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from pathlib import Path

import numpy as np


DEFAULT_CACHE = Path(os.environ.get("THINKER4D_CACHE", Path.home() / ".cache" / "thinker4d")) / "frames"


class VideoError(Exception):
    """A video that cannot be used; `reason` is `"missing_video"` or `"unreadable_video"`."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def cap_frames(frames: np.ndarray, fps: float, max_frames: int | None, times: np.ndarray | None = None):
    """Uniformly keeps at most `max_frames` frames; returns `(frames, fps, times)` with the frame rate after the cap."""
    n = len(frames)
    if times is None:
        times = np.arange(n, dtype=np.float64) / (fps or 1.0)
    if max_frames and n > max_frames:
        idx = np.linspace(0, n - 1, max_frames).round().astype(int)
        frames, times = frames[idx], times[idx]
        span = float(times[-1] - times[0])
        fps = (len(idx) - 1) / span if span > 0 else fps
    return frames, float(fps), np.asarray(times, dtype=np.float64)


def _cache_path(path: Path, fps, max_frames, max_pixels, cache_dir: Path) -> Path:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|fps={fps}|cap={max_frames}|px={max_pixels}"
    return cache_dir / f"{hashlib.sha1(key.encode()).hexdigest()}.npz"


def _target_size(h: int, w: int, max_pixels: int | None) -> tuple[int, int]:
    if not max_pixels or h * w <= max_pixels:
        return h, w
    scale = math.sqrt(max_pixels / (h * w))
    return max(2, int(h * scale) // 2 * 2), max(2, int(w * scale) // 2 * 2)


def _decode(path: Path, fps: float | None, max_pixels: int | None):
    import av

    frames, times = [], []
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise VideoError("unreadable_video", f"{path} has no video stream.")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        native = float(stream.average_rate or 0) or None
        next_t, size = None, None
        for i, frame in enumerate(container.decode(stream)):
            t = frame.time if frame.time is not None else i / (native or 1.0)
            if next_t is None:
                next_t = t
            if fps and t + 1e-6 < next_t:
                continue
            if size is None:
                size = _target_size(frame.height, frame.width, max_pixels)
            if (frame.height, frame.width) != size:
                frame = frame.reformat(width=size[1], height=size[0])
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(t)
            if fps:
                while next_t <= t + 1e-6:
                    next_t += 1.0 / fps
    if not frames:
        raise VideoError("unreadable_video", f"{path} has no decodable frames.")
    times = np.asarray(times, dtype=np.float64)
    out_fps = fps or native or 1.0
    if len(times) > 1 and times[-1] > times[0]:
        out_fps = (len(times) - 1) / float(times[-1] - times[0])
    return np.stack(frames), out_fps, times


def decode_video(
    path: str | os.PathLike,
    fps: float | None = 1.0,
    max_frames: int | None = 50,
    max_pixels: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[np.ndarray, float, np.ndarray]:
    """Decodes `path` at `fps` frames per second (by timestamp), keeping at most `max_frames` frames.

    Args:
        path (`str`):
            A video file PyAV can read (mp4, webm, ...).
        fps (`float`, *optional*, defaults to 1.0):
            Target sampling rate; `None` or 0 keeps every frame.
        max_frames (`int`, *optional*, defaults to 50):
            Frame cap (the paper's `MAX_INFERENCE_FRAMES`); longer videos are subsampled uniformly.
        max_pixels (`int`, *optional*):
            Frames larger than this many pixels are downscaled (aspect kept) while decoding, which keeps the cache
            small; the processor resizes again to its own limits.
        cache_dir (`str`, *optional*):
            Where `<sha1>.npz` entries go; defaults to `$THINKER4D_CACHE/frames` (`~/.cache/thinker4d/frames`).
            Pass `False` to disable caching.

    Returns:
        `(frames, fps, times)`: `(T, H, W, 3)` uint8 frames, their real frame rate after sampling and capping, and
        their timestamps in seconds of the original video.

    Raises:
        VideoError: with `reason` `"missing_video"` or `"unreadable_video"`.

    Example:

    ```python
    >>> frames, fps, times = decode_video("videos/abc.mp4", fps=1.0, max_frames=50)  # doctest: +SKIP
    ```
    """
    path = Path(path)
    if not path.is_file():
        raise VideoError("missing_video", f"{path} does not exist.")
    cache = None
    if cache_dir is not False:
        cache_root = Path(cache_dir) if cache_dir else DEFAULT_CACHE
        cache = _cache_path(path, fps, max_frames, max_pixels, cache_root)
        if cache.is_file():
            try:
                with np.load(cache) as z:
                    return z["frames"], float(z["fps"]), z["times"]
            except Exception:  # a corrupt entry is re-decoded and overwritten
                pass
    try:
        frames, out_fps, times = _decode(path, fps, max_pixels)
    except VideoError:
        raise
    except Exception as e:
        raise VideoError("unreadable_video", f"{path}: {type(e).__name__}: {e}") from e
    frames, out_fps, times = cap_frames(frames, out_fps, max_frames, times)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, frames=frames, fps=np.float64(out_fps), times=times)
            os.replace(tmp, cache)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return frames, out_fps, times
