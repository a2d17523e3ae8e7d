"""Reading and writing mp4 videos with PyAV, frame by frame (only the kept frames are held in memory)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np


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
