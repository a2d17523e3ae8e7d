"""The one prompt every stage uses: DIFT, 4DRL rollouts and evaluation render questions through these functions, so
the model is always asked the same way it was trained (the paper's code drifted between three suffixes;
docs/paper_differences.md, section 8).

Example:

```python
>>> from thinker4d.prompting import build_messages
>>> msgs = build_messages("How does the camera move?", ["Pan Left", "Pan Right", "Tilt Up", "Tilt Down"])
>>> msgs[0]["content"][1]["text"].splitlines()[1]
'A. Pan Left'
```
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from .images import to_rgb_array


LETTERS = "ABCDEFGH"

PROMPT_SUFFIX = (
    "Think step by step and imagine the relevant object or region when it helps. "
    "Put your reasoning inside <think>...</think> and only the final option inside <answer>...</answer>, "
    "for example <answer>B. Pan Right</answer>."
)

_PREFIXED = re.compile(r"^\s*\(?([A-H])[.):]\s*")


def render_options(options: Sequence[str]) -> list[str]:
    """Options as `"A. text"` lines; options that already carry their letter (DSR-Bench style) are kept as they are.

    Raises:
        ValueError: if there are fewer than 2 or more than 8 options, or if pre-lettered options are out of order.
    """
    options = [str(o) for o in options]
    if not 2 <= len(options) <= len(LETTERS):
        raise ValueError(f"Expected 2-{len(LETTERS)} options, got {len(options)}: {options!r}.")
    out = []
    for i, opt in enumerate(options):
        m = _PREFIXED.match(opt)
        if m:
            if m.group(1) != LETTERS[i]:
                raise ValueError(
                    f"Option {i} is lettered {m.group(1)!r} but should be {LETTERS[i]!r}: {opt!r}. "
                    "Pass options in letter order, or without letters."
                )
            out.append(f"{LETTERS[i]}. {opt[m.end() :].strip()}")
        else:
            out.append(f"{LETTERS[i]}. {opt.strip()}")
    return out


def option_text(options: Sequence[str], letter: str) -> str:
    """The rendered option line (`"B. Pan Right"`) for `letter`."""
    rendered = render_options(options)
    idx = LETTERS.index(letter)
    if idx >= len(rendered):
        raise ValueError(f"Answer letter {letter!r} is not among the {len(rendered)} options.")
    return rendered[idx]


def user_text(question: str, options: Sequence[str], suffix: str | None = PROMPT_SUFFIX) -> str:
    """The text of the user turn: question, one option per line, then the reasoning instruction."""
    text = question.strip() + "\n" + "\n".join(render_options(options))
    if suffix:
        text += "\n" + suffix
    return text


def build_messages(
    question: str,
    options: Sequence[str],
    assistant: str | None = None,
    video: bool = True,
    suffix: str | None = PROMPT_SUFFIX,
) -> list[dict]:
    """Chat messages: the user's video (if `video`) then the question; an assistant turn when `assistant` is given."""
    content = ([{"type": "video"}] if video else []) + [{"type": "text", "text": user_text(question, options, suffix)}]
    messages = [{"role": "user", "content": content}]
    if assistant is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": assistant}]})
    return messages


def frames_to_array(frames) -> np.ndarray:
    """A list of PIL images / HWC arrays, or a THWC array, as one uint8 THWC array (all frames the same size).

    Each frame goes through [`thinker4d.images.to_rgb_array`]: 16-bit frames are scaled to 8 bits, never clipped.
    """
    if isinstance(frames, np.ndarray):
        arr = frames
    else:
        if len(frames) == 0:
            raise ValueError("A video needs at least one frame, got an empty list.")
        arr = np.stack([to_rgb_array(f, f"frame {i}") for i, f in enumerate(frames)])
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"Frames must be T x H x W x 3, got shape {arr.shape}.")
    if arr.dtype != np.uint8:
        arr = np.stack([to_rgb_array(f, f"frame {i}") for i, f in enumerate(arr)])
    return arr


def video_kwargs(processor, videos: Sequence[np.ndarray], fps: Sequence[float] | float | None) -> dict:
    """Processor keyword arguments for already-decoded videos (frames are never re-sampled by the processor).

    Both processors read the real frame rate from `video_metadata`: Qwen3-VL writes timestamps into the prompt and
    Qwen2.5-VL derives its temporal position step (`second_per_grid_ts`) from it.
    """
    if not videos:
        return {}
    fps_list = [float(fps)] * len(videos) if fps is None or isinstance(fps, (int, float)) else [float(f) for f in fps]
    fps_list = [f if f and f > 0 else 1.0 for f in fps_list]
    from transformers.video_utils import VideoMetadata

    metadata = [
        VideoMetadata(total_num_frames=len(v), fps=f, frames_indices=list(range(len(v))))
        for v, f in zip(videos, fps_list)
    ]
    return {"videos": list(videos), "do_sample_frames": False, "video_metadata": metadata}
