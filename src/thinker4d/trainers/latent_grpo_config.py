"""Configuration of [`LatentGRPOTrainer`]: trl's `GRPOConfig` plus the few knobs latent rollouts need.

Paper: https://huggingface.co/papers/2605.05997 (4DRL). What differs from the paper's code
(docs/paper_differences.md, sections 6 and 8):

1. Video sampling is explicit (`video_fps`, `video_max_frames`), and the processor is told the real frame rate of
   the frames it gets, so temporal positions match the seconds in the questions (the paper subsampled to 16 frames
   but kept `fps=1`).
2. `max_imagery_blocks` bounds the imagery blocks per rollout; the paper had no limit.
3. The paper's hyper-parameters live in `examples/recipes/Qwen2.5-VL-3B/grpo/config_paper.yaml`, not in the
   defaults, which stay trl's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig


@dataclass
class LatentGRPOConfig(GRPOConfig):
    r"""
    Configuration class for [`LatentGRPOTrainer`]. Every [`~trl.GRPOConfig`] parameter keeps its meaning
    (`num_generations`, `beta`, `loss_type`, `num_iterations`, `scale_rewards`, `reward_weights`, ...).

    > Parameters that control latent rollouts and the loss mask

    mask_latent_delimiters (`bool`, *optional*, defaults to `True`):
        Exclude the sampled `<|latent_start|>` from the policy-gradient and KL masks (the paper's choice). Latent
        slots are always excluded, and so is `<|latent_end|>`, which the decoder forces (probability 1) rather than
        samples. With `False`, the decision to open an imagery block gets a gradient of its own.
    max_imagery_blocks (`int` or `None`, *optional*, defaults to `None`):
        The most imagery blocks one rollout may open; `None` means no limit.
    on_imagery_limit (`str`, *optional*, defaults to `"suppress"`):
        `"suppress"`: once the limit is reached `<|latent_start|>` is masked (in sampling and in the recomputed
        log-probs alike). `"error"`: a rollout past the limit raises.
    record_sampling_logps (`bool`, *optional*, defaults to `False`):
        Keep the rollout's raw logits to log how far the recomputed log-probs are from the sampling distribution
        (`sampling/latent_logp_diff/max`). Costs `batch x steps x vocab` floats per rollout: debugging only.

    > vLLM rollouts

    `use_vllm=True` decodes rollouts with thinker4d's vLLM backend inside trl's vLLM integration, for text-only latent
    models, with `vllm_mode="colocate"`, `vllm_tensor_parallel_size=1` and `on_imagery_limit="suppress"` (other values
    and `vllm_structured_outputs_regex` are refused). See docs/grpo.md for the environment it needs.

    > Parameters that control the video input

    video_fps (`float`, *optional*, defaults to `1.0`):
        Frames per second sampled from a row's `video` file; frames given in a `frames` column are used as they
        are (with the row's `fps`).
    video_max_frames (`int`, *optional*, defaults to `16`):
        Frame cap per video (uniform subsampling; the reported frame rate is updated). The paper's RL used 16.
    video_max_pixels (`int` or `None`, *optional*, defaults to `200704`):
        Decode-time pixel cap per frame for `video` files; the processor resizes again to its own limits.

    Example:

    ```python
    >>> from thinker4d.trainers.latent_grpo_config import LatentGRPOConfig
    >>> args = LatentGRPOConfig(output_dir="out", max_imagery_blocks=4, report_to="none")
    >>> args.mask_latent_delimiters, args.num_generations
    (True, 8)
    ```
    """

    use_vllm: bool = field(
        default=False,
        metadata={
            "help": "Roll out with thinker4d's vLLM backend (text-only latent models; needs vLLM 0.32, see "
            "docs/grpo.md) instead of the model's latent generate."
        },
    )
    vllm_mode: str = field(
        default="colocate",
        metadata={
            "help": "Only 'colocate' (vLLM in the training process): trl's 'server' mode runs stock vLLM workers, "
            "which cannot feed latents back, and is refused."
        },
    )
    mask_latent_delimiters: bool = field(
        default=True,
        metadata={"help": "Exclude the sampled <|latent_start|> from the policy-gradient and KL masks (paper)."},
    )
    max_imagery_blocks: int | None = field(
        default=None, metadata={"help": "The most imagery blocks one rollout may open; None means no limit."}
    )
    on_imagery_limit: str = field(
        default="suppress",
        metadata={
            "help": "'suppress' masks <|latent_start|> at the limit; 'error' raises.",
            "choices": ["suppress", "error"],
        },
    )
    record_sampling_logps: bool = field(
        default=False,
        metadata={
            "help": "Keep rollout logits to log the sampling-vs-training log-prob gap (debugging; memory heavy)."
        },
    )
    video_fps: float = field(default=1.0, metadata={"help": "Frames per second sampled from `video` files."})
    video_max_frames: int = field(default=16, metadata={"help": "Frame cap per video (the paper's RL used 16)."})
    video_max_pixels: int | None = field(
        default=200704, metadata={"help": "Decode-time pixel cap per frame for `video` files (None: no cap)."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.use_vllm:
            self._check_vllm()
        if self.use_transformers_continuous_batching:
            raise ValueError(
                "LatentGRPOTrainer does not support use_transformers_continuous_batching; set it to False "
                "(rollouts use the model's latent generate)."
            )
        if self.max_imagery_blocks is not None and self.max_imagery_blocks < 0:
            raise ValueError(f"max_imagery_blocks must be >= 0 or None, got {self.max_imagery_blocks}.")
        if self.on_imagery_limit not in ("suppress", "error"):
            raise ValueError(f"on_imagery_limit must be 'suppress' or 'error', got {self.on_imagery_limit!r}.")
        if not self.video_fps or self.video_fps <= 0:
            raise ValueError(f"video_fps must be > 0, got {self.video_fps}; use e.g. 1.0 (the paper's rate).")
        if self.video_max_frames is None or self.video_max_frames < 1:
            raise ValueError(f"video_max_frames must be >= 1, got {self.video_max_frames}; the paper's RL used 16.")
        if self.video_max_pixels is not None and self.video_max_pixels < 28 * 28:
            raise ValueError(
                f"video_max_pixels must be >= 784 (one 28x28 patch group) or None, got {self.video_max_pixels}."
            )
        num_beams = (self.generation_kwargs or {}).get("num_beams", 1)
        if num_beams not in (None, 1):
            raise ValueError(
                f"generation_kwargs sets num_beams={num_beams}; latent rollouts sample one beam per completion. "
                "Remove num_beams (GRPO samples num_generations completions instead)."
            )

    def _check_vllm(self) -> None:
        problems = []
        if self.vllm_mode != "colocate":
            problems.append(
                f"vllm_mode={self.vllm_mode!r}: trl's vLLM server (`trl vllm-serve`) runs stock vLLM workers, which "
                "cannot feed latents back nor return them; use vllm_mode='colocate'"
            )
        if self.vllm_tensor_parallel_size != 1:
            problems.append(
                f"vllm_tensor_parallel_size={self.vllm_tensor_parallel_size}: the latent vLLM runner runs one worker "
                "per engine; use 1"
            )
        if self.on_imagery_limit != "suppress":
            problems.append(
                f"on_imagery_limit={self.on_imagery_limit!r}: the vLLM backend suppresses <|latent_start|> at the "
                "block limit; use 'suppress'"
            )
        if self.vllm_structured_outputs_regex is not None:
            problems.append("vllm_structured_outputs_regex: a grammar would fight the forced latent slots; unset it")
        if problems:
            raise ValueError("use_vllm=True (thinker4d's vLLM backend): " + "; ".join(problems) + ".")


__all__ = ["LatentGRPOConfig"]
