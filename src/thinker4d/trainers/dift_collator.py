"""Rows of the 4D CoT data set -> model inputs for DIFT: chat-template sequences with latent imagery blocks, labels on
the assistant turn, video frames and overlay images.

Paper: https://huggingface.co/papers/2605.05997. What differs from the paper's collator (docs/paper_differences.md,
section 5):

1. Each `<imagery>` marker is written as `<|latent_start|>` + K x `<|latent_pad|>` + `<|latent_end|>` in the text before
   tokenisation (they are special tokens, so each is one id). The paper inserted image blocks, let the processor expand
   them to the full patch count, then collapsed them back to K pads with per-sample Python scans.
2. Labels are built for the whole padded batch with tensor operations: the assistant content up to and including its
   `<|im_end|>`, minus the latent slots and the padding. The `\\n` after `<|im_start|>assistant` is prompt, as it is at
   inference (the generation prompt ends with it); the paper made it a target.
3. Overlays are processed by the image processor only (not as chat images), so they never enter the prompt.
4. Malformed rows raise an error that names the row id (or are skipped and counted); nothing is silently dropped.
5. Work is split in two: `encode_row` (processor calls, once per row; can run in `dataset.map`) and `collate` (padding
   and concatenation only), so the collator itself is cheap.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from ..errors import UserError
from ..models.configuration_thinker4d import LATENT_END_TOKEN, LATENT_PAD_TOKEN, LATENT_START_TOKEN, LATENT_TOKENS
from ..prompting import LETTERS, build_messages, option_text, render_options, video_kwargs


logger = logging.getLogger(__name__)

IMAGERY_MARKER = "<imagery>"
_FORBIDDEN = (*LATENT_TOKENS, "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>", "<|im_end|>")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_LETTER = re.compile(r"^\s*\(?([A-H])(?:[.):\s]|$)")
_MARKER_WITH_SPACE = re.compile(r"[ \t]*" + re.escape(IMAGERY_MARKER))


class InvalidRowError(UserError, ValueError):
    """A data set row that cannot be trained on; the message names the row id and the fix."""


def _row_id(row: dict) -> str:
    return str(row.get("id", "<row without id>"))


def answer_letter(text: str) -> str | None:
    """The option letter inside the last `<answer>...</answer>` of `text`, or `None` when there is none."""
    found = _ANSWER.findall(text or "")
    if not found:
        return None
    m = _LETTER.match(found[-1])
    return m.group(1) if m else None


def _num_items(value) -> int:
    if value is None:
        return 0
    if isinstance(value, np.ndarray):
        return 0 if value.size == 0 else (value.shape[0] if value.ndim == 4 else len(value))
    return len(value)


def validate_dift_row(row: dict, mode: str = "dift") -> None:
    """Check the text fields of a 4D CoT row (no image is decoded).

    Raises:
        InvalidRowError: naming the row id, when frames are missing, the options or the answer letter are invalid, the
            CoT has no `<answer>` or its letter disagrees with `answer`, or (mode `"dift"`) the number of `<imagery>`
            markers differs from the number of overlay images.
    """
    rid = _row_id(row)
    if _num_items(row.get("frames")) == 0:
        raise InvalidRowError(f"Row {rid!r}: `frames` is empty; every row needs at least one video frame.")
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise InvalidRowError(f"Row {rid!r}: `question` is empty; put the question stem (without options) there.")
    options = list(row.get("options") or [])
    try:
        rendered = render_options(options)
    except ValueError as e:
        raise InvalidRowError(f"Row {rid!r}: bad `options`: {e}") from None
    answer = row.get("answer")
    if not isinstance(answer, str) or answer not in LETTERS[: len(rendered)]:
        raise InvalidRowError(
            f"Row {rid!r}: answer {answer!r} is not among the options {LETTERS[: len(rendered)]!r}; `answer` must be "
            "the letter of the correct option."
        )
    texts = {"question": question, "options": " ".join(options)}
    if mode != "raw_qa":
        cot = row.get("cot")
        if not isinstance(cot, str) or not cot.strip():
            raise InvalidRowError(f"Row {rid!r}: `cot` is empty; mode={mode!r} trains on the chain of thought.")
        texts["cot"] = cot
        if not _ANSWER.search(cot):
            raise InvalidRowError(
                f"Row {rid!r}: the CoT has no <answer>...</answer>; end it with e.g. <answer>{rendered[0]}</answer>."
            )
        letter = answer_letter(cot)
        if letter is None:
            raise InvalidRowError(f"Row {rid!r}: the CoT's <answer> has no option letter; write e.g. '{rendered[0]}'.")
        if letter != answer:
            raise InvalidRowError(
                f"Row {rid!r}: the CoT answers {letter!r} but `answer` is {answer!r}; fix the label or the CoT."
            )
    for name, text in texts.items():
        for token in _FORBIDDEN:
            if token in text:
                raise InvalidRowError(
                    f"Row {rid!r}: `{name}` contains the reserved token {token!r}. Write `{IMAGERY_MARKER}` where an "
                    "imagery block goes; the collator inserts the latent tokens itself."
                )
        if "<output_image>" in text:
            raise InvalidRowError(
                f"Row {rid!r}: `{name}` contains the paper's `<output_image>` marker; convert paper JSONL rows with "
                "thinker4d.data.paper_jsonl.paper_row_to_dift (markers become `<imagery>`)."
            )
    if mode == "dift":
        n_markers = texts["cot"].count(IMAGERY_MARKER)
        n_images = _num_items(row.get("imagery"))
        if "imagery_targets" in row and row["imagery_targets"] is not None and not n_images:
            n_images = n_markers  # cached rows may have dropped the images; the targets are checked at encode time
        if n_markers != n_images:
            raise InvalidRowError(
                f"Row {rid!r}: the CoT has {n_markers} `{IMAGERY_MARKER}` markers but `imagery` has {n_images} overlay "
                "images; they must match one to one, in order."
            )


def row_problem(row: dict, mode: str = "dift") -> str | None:
    """The message of [`validate_dift_row`]'s error, or `None` for a valid row."""
    try:
        validate_dift_row(row, mode)
    except InvalidRowError as e:
        return str(e)
    return None


def load_image(value, row_id: str = "?", what: str = "image"):
    """An RGB PIL image from a PIL image, an HWC array, a `{"bytes", "path"}` dict (undecoded `datasets.Image`) or a path.

    The pixels go through [`thinker4d.images.to_rgb_image`]: 16-bit images (`I;16` PNGs, `uint16` arrays) are scaled to
    8 bits.

    Raises:
        InvalidRowError: naming the row id, when the image cannot be read.
    """
    from PIL import Image

    from ..images import to_rgb_image

    try:
        if isinstance(value, (Image.Image, np.ndarray)):
            img = value
        elif isinstance(value, dict):
            if value.get("bytes") is not None:
                img = Image.open(io.BytesIO(value["bytes"]))
            elif value.get("path"):
                img = Image.open(value["path"])
            else:
                raise ValueError("neither bytes nor path is set")
        elif isinstance(value, (str, bytes)) or hasattr(value, "__fspath__"):
            img = Image.open(value) if not isinstance(value, bytes) else Image.open(io.BytesIO(value))
        else:
            raise ValueError(f"unsupported type {type(value).__name__}")
        if isinstance(img, Image.Image):
            img.load()
    except Exception as e:  # noqa: BLE001 -- PIL raises many types; all mean "cannot be read"
        raise InvalidRowError(f"Row {row_id!r}: {what} cannot be read ({type(e).__name__}: {e}).") from None
    try:
        return to_rgb_image(img, what)
    except ValueError as e:
        raise InvalidRowError(f"Row {row_id!r}: {e}") from None


def _downscale(img, max_pixels: int | None):
    if max_pixels is None or img.width * img.height <= max_pixels:
        return img
    scale = math.sqrt(max_pixels / (img.width * img.height))
    return img.resize((max(1, int(img.width * scale)), max(1, int(img.height * scale))), resample=3)


def _as_long(x) -> torch.Tensor:
    return x.long() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), dtype=torch.long)


def _as_float(x) -> torch.Tensor:
    return x.float() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float32))


@contextlib.contextmanager
def _one_thread():
    # Collation and per-row processing are small memory-bound tensor ops; intra-op OpenMP threads only add
    # synchronisation, which made them 10-30x slower on a busy 2-core machine (benchmarks/dift_step.py).
    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if threads > 1:
            torch.set_num_threads(threads)


@dataclass
class DIFTDataCollator:
    r"""Turn 4D CoT rows into a DIFT batch.

    Each row becomes `system, user(video, question, options, instruction), assistant(CoT)` rendered with the
    processor's chat template; in mode `"dift"` every `<imagery>` becomes `<|latent_start|>` + K x `<|latent_pad|>` +
    `<|latent_end|>`. Rows that were already encoded (they have `input_ids`, from `pre_encode`) are only collated.

    Args:
        processor (`ProcessorMixin`): the thinker4d model's processor (with the latent tokens).
        latent_size (`int`, *optional*, defaults to 4): K.
        mode (`str`, *optional*, defaults to `"dift"`): `"dift"`, `"text_cot"` or `"raw_qa"` (see [`DIFTConfig`]).
        default_fps, max_frames, frame_max_pixels, imagery_max_pixels: see [`DIFTConfig`].
        skip_invalid_rows (`bool`, *optional*, defaults to `False`): drop bad rows (counted in `num_skipped`).

    Batch keys: `input_ids`, `attention_mask`, `labels`, `mm_token_type_ids`, `pixel_values_videos`,
    `video_grid_thw`, `second_per_grid_ts` (Qwen2.5-VL), and either `latent_embeds` (cached targets) or
    `imagery_pixel_values` + `imagery_grid_thw` when the batch has imagery.

    Example:

    ```python
    >>> import numpy as np, thinker4d
    >>> from thinker4d.tiny import build_tiny_model, build_tiny_processor
    >>> from thinker4d.trainers import DIFTDataCollator
    >>> processor = build_tiny_processor("qwen2_5_vl")
    >>> _, processor = thinker4d.from_base(build_tiny_model("qwen2_5_vl", processor), processor, latent_size=2)
    >>> frames = list(np.zeros((2, 56, 56, 3), dtype=np.uint8))
    >>> row = {"id": "r0", "frames": frames, "fps": 1.0, "question": "Which way?", "options": ["Left", "Right"],
    ...        "answer": "B", "cot": "<think>look <imagery></think><answer>B. Right</answer>", "imagery": [frames[0]]}
    >>> batch = DIFTDataCollator(processor, latent_size=2)([row])
    >>> int((batch["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<|latent_pad|>")).sum())
    2
    ```
    """

    processor: Any
    latent_size: int = 4
    mode: str = "dift"
    default_fps: float = 1.0
    max_frames: int | None = None
    frame_max_pixels: int | None = None
    imagery_max_pixels: int | None = None
    skip_invalid_rows: bool = False
    num_skipped: int = field(default=0, init=False)

    def __post_init__(self):
        tok = self.processor.tokenizer
        vocab = tok.get_vocab()
        for token in (*LATENT_TOKENS, "<|im_start|>", "<|im_end|>"):
            if token not in vocab:
                raise ValueError(
                    f"The tokenizer has no {token!r} token. Use the processor returned by thinker4d.from_base (it adds the "
                    "latent tokens) of a Qwen2.5-VL / Qwen3-VL checkpoint."
                )
        self.latent_start_id = vocab[LATENT_START_TOKEN]
        self.latent_pad_id = vocab[LATENT_PAD_TOKEN]
        self.latent_end_id = vocab[LATENT_END_TOKEN]
        self.im_start_id = vocab["<|im_start|>"]
        self.im_end_id = vocab["<|im_end|>"]
        self.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else self.im_end_id
        self.latent_block = LATENT_START_TOKEN + LATENT_PAD_TOKEN * self.latent_size + LATENT_END_TOKEN
        self.role_length = self._assistant_role_length()

    def _assistant_role_length(self) -> int:
        # Tokens between the assistant's <|im_start|> and its content ("assistant\n": 2 ids for Qwen), measured once
        # on the chat template so labels can start right after them with a tensor comparison.
        tok = self.processor.tokenizer
        prompt = self.processor.apply_chat_template(
            build_messages("Q", ["a", "b"], video=False), add_generation_prompt=True, tokenize=False
        )
        full = self.processor.apply_chat_template(
            build_messages("Q", ["a", "b"], assistant="<answer>A. a</answer>", video=False), tokenize=False
        )
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        f_ids = tok(full, add_special_tokens=False)["input_ids"]
        if not full.startswith(prompt) or f_ids[: len(p_ids)] != p_ids or self.im_start_id not in p_ids:
            raise ValueError(
                "The processor's chat template does not render the assistant turn as the generation prompt followed by "
                "the content (e.g. a thinking template that inserts text); DIFT needs a Qwen-VL Instruct template."
            )
        last_start = len(p_ids) - 1 - p_ids[::-1].index(self.im_start_id)
        return len(p_ids) - last_start - 1

    # ---------------------------------------------------------------- per row
    def assistant_text(self, row: dict) -> str:
        """The assistant turn of `row` for this collator's mode."""
        if self.mode == "raw_qa":
            return f"<answer>{option_text(row['options'], row['answer'])}</answer>"
        if self.mode == "text_cot":
            return _MARKER_WITH_SPACE.sub("", row["cot"])
        return row["cot"].replace(IMAGERY_MARKER, self.latent_block)

    def _frames(self, row: dict) -> tuple[np.ndarray, float]:
        rid = _row_id(row)
        frames = row["frames"]
        fps = float(row.get("fps") or self.default_fps)
        if isinstance(frames, np.ndarray) and frames.ndim == 4:
            frames = list(frames)
        n = len(frames)
        if self.max_frames is not None and n > self.max_frames:
            keep = np.unique(np.linspace(0, n - 1, self.max_frames).round().astype(int))
            frames = [frames[i] for i in keep]
            # the kept frames span the same time, so the declared rate shrinks with them
            fps = fps * (len(keep) - 1) / (n - 1) if len(keep) > 1 else fps
        images = [_downscale(load_image(f, rid, f"frame {i}"), self.frame_max_pixels) for i, f in enumerate(frames)]
        sizes = {im.size for im in images}
        if len(sizes) != 1:
            raise InvalidRowError(
                f"Row {rid!r}: frames have different sizes {sorted(sizes)}; resize them to one size."
            )
        return np.stack([np.asarray(im) for im in images]), fps

    def encode_row(self, row: dict) -> dict[str, Any]:
        """Validate, render and process one row (tokens, video, overlays). Expensive; runs once per row."""
        with _one_thread():
            return self._encode_row(row)

    def _encode_row(self, row: dict) -> dict[str, Any]:
        validate_dift_row(row, self.mode)
        rid = _row_id(row)
        video, fps = self._frames(row)
        messages = build_messages(row["question"], row["options"], assistant=self.assistant_text(row))
        text = self.processor.apply_chat_template(messages, tokenize=False)
        out = self.processor(text=[text], **video_kwargs(self.processor, [video], fps), return_tensors="pt")
        enc = {
            "input_ids": out["input_ids"][0],
            "mm_token_type_ids": out["mm_token_type_ids"][0] if "mm_token_type_ids" in out else None,
            "pixel_values_videos": out["pixel_values_videos"],
            "video_grid_thw": out["video_grid_thw"],
            "num_imagery": 0,
        }
        if "second_per_grid_ts" in out:
            enc["second_per_grid_ts"] = torch.as_tensor(out["second_per_grid_ts"], dtype=torch.float32).reshape(-1)
        if self.mode != "dift":
            return enc
        n_markers = row["cot"].count(IMAGERY_MARKER)
        enc["num_imagery"] = n_markers
        targets = row.get("imagery_targets")
        if targets is not None:
            targets = _as_float(targets)
            hidden = targets.shape[-1] if targets.ndim >= 2 else 0
            targets = targets.reshape(-1, hidden) if targets.numel() else targets.reshape(0, hidden)
            if targets.shape[0] != n_markers * self.latent_size:
                raise InvalidRowError(
                    f"Row {rid!r}: cached imagery_targets have {targets.shape[0]} vectors but the row needs "
                    f"{n_markers} x K={self.latent_size}; the cache was built for another K. Rebuild it with "
                    "thinker4d.trainers.cache_imagery_targets."
                )
            enc["imagery_targets"] = targets
        elif n_markers:
            images = [
                _downscale(load_image(im, rid, f"overlay {i}"), self.imagery_max_pixels)
                for i, im in enumerate(row["imagery"])
            ]
            img = self.processor.image_processor(images=images, return_tensors="pt")
            enc["imagery_pixel_values"] = img["pixel_values"]
            enc["imagery_grid_thw"] = img["image_grid_thw"]
        return enc

    # ---------------------------------------------------------------- per batch
    def labels(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """CE targets: the assistant content through its `<|im_end|>`, minus latent slots and padding; -100 elsewhere."""
        pos = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        start = torch.where(input_ids == self.im_start_id, pos, -1).amax(1)
        end = torch.where(input_ids == self.im_end_id, pos, -1).amax(1)
        first = start + 1 + self.role_length
        if bool(((start < 0) | (end < first)).any()):
            raise ValueError("A sequence has no complete assistant turn (<|im_start|>assistant ... <|im_end|>).")
        keep = (pos >= first[:, None]) & (pos <= end[:, None]) & attention_mask.bool()
        keep &= input_ids != self.latent_pad_id
        return torch.where(keep, input_ids, torch.full_like(input_ids, -100))

    def collate(self, encoded: list[dict]) -> dict[str, torch.Tensor]:
        """Pad and concatenate encoded rows (tensor operations only) and build the labels."""
        with _one_thread():
            return self._collate(encoded)

    def _collate(self, encoded: list[dict]) -> dict[str, torch.Tensor]:
        ids = [_as_long(r["input_ids"]) for r in encoded]
        lengths = torch.tensor([len(x) for x in ids])
        input_ids = pad_sequence(ids, batch_first=True, padding_value=self.pad_token_id)
        attention_mask = (torch.arange(input_ids.shape[1])[None] < lengths[:, None]).long()
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if all(r.get("mm_token_type_ids") is not None for r in encoded):
            batch["mm_token_type_ids"] = pad_sequence(
                [_as_long(r["mm_token_type_ids"]) for r in encoded], batch_first=True, padding_value=0
            )
        batch["pixel_values_videos"] = torch.cat([_as_float(r["pixel_values_videos"]) for r in encoded])
        batch["video_grid_thw"] = torch.cat([_as_long(r["video_grid_thw"]).reshape(-1, 3) for r in encoded])
        if all(r.get("second_per_grid_ts") is not None for r in encoded):
            batch["second_per_grid_ts"] = torch.cat([_as_float(r["second_per_grid_ts"]).reshape(-1) for r in encoded])
        with_imagery = [r for r in encoded if int(r.get("num_imagery") or 0) > 0]
        if with_imagery:
            cached = [r.get("imagery_targets") is not None for r in with_imagery]
            if all(cached):
                batch["latent_embeds"] = torch.cat([_as_float(r["imagery_targets"]) for r in with_imagery])
            elif not any(cached):
                batch["imagery_pixel_values"] = torch.cat([_as_float(r["imagery_pixel_values"]) for r in with_imagery])
                batch["imagery_grid_thw"] = torch.cat(
                    [_as_long(r["imagery_grid_thw"]).reshape(-1, 3) for r in with_imagery]
                )
            else:
                raise ValueError(
                    "Some rows of the batch carry cached imagery_targets and others do not; cache the whole data set "
                    "with thinker4d.trainers.cache_imagery_targets."
                )
        batch["labels"] = self.labels(input_ids, attention_mask)
        return batch

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        encoded = []
        for row in rows:
            if "input_ids" in row:
                encoded.append(row)
                continue
            try:
                encoded.append(self.encode_row(row))
            except InvalidRowError as e:
                if not self.skip_invalid_rows:
                    raise
                self.num_skipped += 1
                logger.warning("Skipping invalid row (%d skipped so far): %s", self.num_skipped, e)
        if not encoded:
            raise InvalidRowError(
                f"Every row of this batch was invalid ({len(rows)} skipped); check the data set (see the warnings)."
            )
        return self.collate(encoded)


__all__ = ["DIFTDataCollator", "IMAGERY_MARKER", "InvalidRowError", "answer_letter", "load_image", "validate_dift_row"]
