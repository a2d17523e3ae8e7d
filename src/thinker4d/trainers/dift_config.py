"""Configuration of [`DIFTTrainer`]: Dynamic-Imagery Fine-Tuning (DIFT).

Paper: https://huggingface.co/papers/2605.05997. What differs from the paper's `train.sh` / `main.py`
(docs/paper_differences.md, sections 5 and 8):

1. The paper's ablation (raw QA SFT, text CoT SFT, DIFT, imagery size K) is one flag each: `mode` and `latent_size`.
2. `bf16` defaults to on only where the GPU supports it, so the same config runs on CPU for tests.
3. The declared fps of a sub-sampled video is recomputed from the kept frames (the paper kept fps = 1 after
   sub-sampling).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments


DIFT_MODES = ("dift", "raw_qa", "text_cot")


@dataclass
class DIFTConfig(TrainingArguments):
    r"""Configuration class for the [`DIFTTrainer`].

    Only the DIFT-specific parameters are listed here; see [`~transformers.TrainingArguments`] for the rest. Defaults
    that differ from `TrainingArguments` follow the paper's `train.sh`: `learning_rate=1e-5`, `num_train_epochs=1`,
    `warmup_steps=10`, `weight_decay=0.01`, `per_device_train_batch_size=1`, activation (gradient) checkpointing on.

    > Parameters that control the loss

    mode (`str`, *optional*, defaults to `"dift"`):
        What the assistant turn is, for the paper's ablation: `"dift"` (the CoT with each `<imagery>` expanded to a
        latent block, CE + imagery loss), `"text_cot"` (the CoT with the `<imagery>` markers removed, CE only) or
        `"raw_qa"` (the answer only, `<answer>B. Pan Right</answer>`, CE only).
    ce_weight (`float`, *optional*, defaults to `0.1`):
        Weight of the next-token cross-entropy over the assistant tokens.
    imagery_weight (`float`, *optional*, defaults to `1.0`):
        Weight of `mean(1 - cos(h[p-1], z[p]))` over the latent slots p.

    > Parameters that control the model

    model_init_kwargs (`dict`, *optional*):
        Keyword arguments for `from_pretrained` when `model` is a string (e.g. `{"dtype": "bfloat16"}`).
    latent_size (`int`, *optional*):
        K, latent slots per imagery block. Written to the model config (it travels in config.json). `None` keeps the
        model's value (4 for a freshly converted stock checkpoint).
    imagery_pooling (`str`, *optional*):
        `"raster"` (paper) or `"grid"`; written to the model config. `None` keeps the model's value.
    latent_norm (`float` or `str`, *optional*):
        L2 norm every vector placed at a latent slot is scaled to, in training (the pooled targets) and in decoding
        (the fed-back hidden states); written to the model config. `"embedding"` uses the mean norm of the model's
        input-embedding rows, so the slots carry vectors on the scale of the token embeddings around them. `None`
        keeps the model's value (unscaled for a freshly converted checkpoint, as in the paper). Without it the layers
        see pooled vision features in training and last-layer hidden states (often far larger) at inference; see
        docs/dift.md.

    > Parameters that control the data

    cache_imagery_targets (`bool`, *optional*, defaults to `False`):
        Pool every overlay once with the frozen vision tower before training and store the targets as a dataset
        column (`imagery_targets`), so that a DIFT step costs about what an SFT step costs. A dataset that already
        has the column (see [`cache_imagery_targets`]) is used as is.
    pre_encode (`bool`, *optional*, defaults to `False`):
        Tokenise and process frames and overlays once with `dataset.map` (using `dataset_num_proc` processes) instead
        of in the collator. Fast, but the processed pixels are stored: use it for small data sets.
    skip_invalid_rows (`bool`, *optional*, defaults to `False`):
        Drop malformed rows (and rows whose images cannot be read) and log how many, instead of raising.
    dataset_num_proc (`int`, *optional*):
        Processes for the dataset passes (validation, `pre_encode`).
    default_fps (`float`, *optional*, defaults to `1.0`):
        Frame rate used for rows without an `fps` value.
    max_frames (`int`, *optional*):
        Uniformly sub-sample longer videos to this many frames (the fps passed to the processor is recomputed).
    frame_max_pixels (`int`, *optional*):
        Downscale frames larger than this many pixels (aspect kept) before the processor; the paper uses 200,704.
    imagery_max_pixels (`int`, *optional*):
        Same for overlay images.

    > Parameters that control evaluation

    prediction_loss_only (`bool`, *optional*):
        Evaluate the loss and the logged loss terms only, without gathering logits. `None` means `True`, unless the
        trainer is given `compute_metrics` (which needs the predictions), then `False`.

    Example:

    ```python
    >>> from thinker4d.trainers import DIFTConfig
    >>> args = DIFTConfig(output_dir="out", mode="text_cot")
    >>> args.ce_weight, args.learning_rate
    (0.1, 1e-05)
    ```
    """

    _VALID_DICT_FIELDS = TrainingArguments._VALID_DICT_FIELDS + ["model_init_kwargs"]

    # Parameters that control the loss
    mode: str = field(
        default="dift",
        metadata={
            "help": "Assistant turn for the paper's ablation: 'dift' (CoT + latent blocks), 'text_cot' (CoT without "
            "the <imagery> markers, CE only) or 'raw_qa' (answer only, CE only).",
            "choices": list(DIFT_MODES),
        },
    )
    ce_weight: float = field(default=0.1, metadata={"help": "Weight of the cross-entropy over assistant tokens."})
    imagery_weight: float = field(
        default=1.0, metadata={"help": "Weight of mean(1 - cos(h[p-1], z[p])) over the latent slots."}
    )

    # Parameters that control the model
    model_init_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={"help": "Keyword arguments for from_pretrained when the model is given as a string."},
    )
    latent_size: int | None = field(
        default=None,
        metadata={"help": "K, latent slots per imagery block (written to the model config); None keeps the model's."},
    )
    imagery_pooling: str | None = field(
        default=None,
        metadata={"help": "'raster' (paper) or 'grid' (written to the model config); None keeps the model's."},
    )
    latent_norm: float | str | None = field(
        default=None,
        metadata={
            "help": "Scale every vector at a latent slot to this L2 norm (a number, or 'embedding' for the mean input-"
            "embedding norm); written to the model config. None keeps the model's value (paper: unscaled)."
        },
    )

    # Parameters that control the data
    cache_imagery_targets: bool = field(
        default=False,
        metadata={"help": "Pool every overlay once with the frozen vision tower and store the targets as a column."},
    )
    pre_encode: bool = field(
        default=False,
        metadata={"help": "Tokenise and process frames once with dataset.map instead of in the collator."},
    )
    skip_invalid_rows: bool = field(
        default=False, metadata={"help": "Drop malformed rows and log how many, instead of raising an error."}
    )
    dataset_num_proc: int | None = field(default=None, metadata={"help": "Processes for the dataset passes."})
    default_fps: float = field(default=1.0, metadata={"help": "Frame rate of rows without an fps value."})
    max_frames: int | None = field(
        default=None, metadata={"help": "Uniformly sub-sample longer videos to this many frames."}
    )
    frame_max_pixels: int | None = field(
        default=None, metadata={"help": "Downscale larger frames to this many pixels (the paper uses 200704)."}
    )
    imagery_max_pixels: int | None = field(
        default=None, metadata={"help": "Downscale larger overlay images to this many pixels."}
    )

    # Overridden TrainingArguments defaults (the paper's train.sh)
    learning_rate: float = field(default=1e-5, metadata={"help": "The initial learning rate for AdamW."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Total number of training epochs."})
    warmup_steps: float = field(default=10, metadata={"help": "Linear warmup steps (or ratio if < 1)."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    per_device_train_batch_size: int = field(default=1, metadata={"help": "Rows per device per step (paper: 1)."})
    logging_steps: float = field(default=10, metadata={"help": "Log every X update steps (or ratio if < 1)."})
    activation_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "Recompute activations in the backward pass to save memory; None means True (paper)."},
    )
    bf16: bool | None = field(
        default=None,
        metadata={"help": "bf16 mixed precision; None turns it on where the GPU supports it (not on CPU)."},
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Must stay False: the DIFT collator reads the raw dataset columns."}
    )
    prediction_loss_only: bool | None = field(
        default=None,
        metadata={
            "help": "Evaluation returns the loss only (no logits are gathered). None means True unless the trainer "
            "has a compute_metrics function."
        },
    )

    def __post_init__(self):
        if self.activation_checkpointing is None and self.gradient_checkpointing is None:
            self.activation_checkpointing = True
        if self.bf16 is None:
            import torch

            self.bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()) and not self.fp16
        if self.mode not in DIFT_MODES:
            raise ValueError(
                f"mode must be one of {DIFT_MODES} ('dift' = CoT with latent imagery, 'text_cot' = CoT without "
                f"imagery, 'raw_qa' = answer only), got {self.mode!r}."
            )
        if self.ce_weight < 0 or self.imagery_weight < 0:
            raise ValueError(
                f"ce_weight and imagery_weight must be >= 0, got {self.ce_weight} and {self.imagery_weight}. The paper "
                "uses ce_weight=0.1, imagery_weight=1.0."
            )
        if self.ce_weight == 0 and (self.imagery_weight == 0 or self.mode != "dift"):
            raise ValueError(
                f"With ce_weight=0 and mode={self.mode!r} (imagery_weight={self.imagery_weight}) nothing is trained; set "
                "ce_weight > 0 (the paper uses 0.1)."
            )
        if self.latent_size is not None and (not isinstance(self.latent_size, int) or self.latent_size < 1):
            raise ValueError(
                f"latent_size (K) must be an integer >= 1 or None, got {self.latent_size!r}; the paper uses 4."
            )
        if self.imagery_pooling not in (None, "raster", "grid"):
            raise ValueError(f"imagery_pooling must be 'raster', 'grid' or None, got {self.imagery_pooling!r}.")
        if isinstance(self.latent_norm, str):
            try:
                self.latent_norm = float(self.latent_norm)
            except ValueError:
                if self.latent_norm != "embedding":
                    raise ValueError(
                        f"latent_norm must be a positive number, 'embedding' or None, got {self.latent_norm!r}."
                    ) from None
        if isinstance(self.latent_norm, (int, float)) and not self.latent_norm > 0:
            raise ValueError(f"latent_norm must be > 0, got {self.latent_norm}.")
        if self.remove_unused_columns:
            raise ValueError(
                "remove_unused_columns=True would drop the columns the DIFT collator reads (frames, cot, imagery, ...); "
                "leave it False."
            )
        if self.cache_imagery_targets and self.mode != "dift":
            raise ValueError(
                f"cache_imagery_targets only applies to mode='dift' (mode={self.mode!r} has no imagery); turn it off."
            )
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1 or None, got {self.max_frames}.")
        for name in ("frame_max_pixels", "imagery_max_pixels"):
            value = getattr(self, name)
            if value is not None and value < 28 * 28:
                raise ValueError(f"{name} must be at least 784 (28 x 28) or None, got {value}.")
        if self.default_fps <= 0:
            raise ValueError(f"default_fps must be > 0, got {self.default_fps}.")
        super().__post_init__()


__all__ = ["DIFT_MODES", "DIFTConfig"]
