"""4DRL: GRPO whose rollouts may open latent imagery blocks, kept on-policy through them.

Paper: https://huggingface.co/papers/2605.05997 (4DRL). What differs from the paper's code
(docs/paper_differences.md, section 6):

1. A subclass of trl's `GRPOTrainer` instead of a 1,400-line `transformers.Trainer` copy, so trl's features keep
   working: `num_generations`, `beta` with a reference model, `loss_type`, `num_iterations`, `scale_rewards`,
   `reward_weights`, logging, and the distributed sampler (the paper's dataloader was not sharded, so every rank
   trained on the same prompts).
2. **On-policy log-probs.** Each rollout keeps the latent vectors it fed back and the policy, old-policy and reference
   forwards re-insert them at the `<|latent_pad|>` slots, with the positions generation used. The paper re-embedded
   the `<|latent_pad|>` token there, so every text token after an imagery block was scored under a context the
   policy never sampled from. The recomputed log-probs also mask every token the sampler masks, through the
   decoder's own `apply_sampling_masks` (`<|latent_pad|>` / `<|latent_end|>` are never text; `<|latent_start|>` past
   `max_imagery_blocks`; the generation config's `suppress_tokens`: trl's `<|image_pad|>` and `<|video_pad|>`), so
   they equal the sampling distribution's (trl's temperature handling; top-p/top-k are not part of it, as in trl).
3. The loss mask drops latent slots and the forced `<|latent_end|>`; the sampled `<|latent_start|>` is dropped too
   unless `mask_latent_delimiters=False` (paper: dropped). The KL is trl's (k3 estimator), not the paper's k1.
4. No truncation of completions to 1,024 tokens for the gradient pass, and no rollout-batch fallback that fed pad
   embeddings to mid-block rows (the decoding loop is per row).
5. Strict rewards (see `thinker4d.rewards`) and the one prompt of `thinker4d.prompting`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from typing import Any

import torch
from accelerate.utils import gather
from transformers import LogitsProcessorList, Trainer, TrainingArguments
from trl import GRPOTrainer
from trl.data_utils import is_conversational, prepare_multimodal_messages
from trl.extras.profiling import profiling_context
from trl.kernels import ChunkedLogProbFunction
from trl.models import unwrap_model_for_generation
from trl.trainer.utils import pad

from thinker4d.models.generation import apply_sampling_masks, latent_token_ids
from thinker4d.prompting import LETTERS, build_messages, frames_to_array, render_options, video_kwargs
from thinker4d.rewards import DEFAULT_REWARD_WEIGHTS, accuracy_reward, format_reward

from .checkpointing import load_thinker4d_checkpoint
from .latent_grpo_config import LatentGRPOConfig
from .records import write_training_record


logger = logging.getLogger(__name__)
# Around every rollout trl calls `model.is_gradient_checkpointing` and `gradient_checkpointing_disable/enable`, which
# transformers 5 deprecates: nothing a user can change, so those warnings are not shown.
warnings.filterwarnings(
    "ignore",
    message="`(is_gradient_checkpointing|gradient_checkpointing_disable|gradient_checkpointing_enable)` is deprecated",
    category=FutureWarning,
)

_MASKED_LOGIT = -1.0e4  # exp() underflows to exactly 0 in fp16/bf16/fp32, and it stays finite after / temperature
_CHUNK_SIZE = 32768
# Per-row tensors a rollout keeps for the log-prob recomputes. The image ones are not named `pixel_values` /
# `image_grid_thw`: trl's batch splitting would concatenate those lists, and its loss would pass them to the recompute.
_ROW_KEYS = (
    "latents",
    "pixel_values_videos",
    "video_grid_thw",
    "second_per_grid_ts",
    "images_pixel_values",
    "images_grid_thw",
)
_IMAGE_COLUMNS = ("image", "images")


# ----------------------------------------------------------------------------------------------------------- data
def _row_name(row: dict, index: int) -> str:
    rid = row.get("id")
    return f"row {index}" + (f" (id={rid!r})" if rid is not None else "")


def _row_images(row: dict) -> list | None:
    """The row's images in trl's columns: `images` (a list) or `image` (one); `None` when it has none."""
    if row.get("images") is not None:
        return list(row["images"]) or None
    if row.get("image") is not None:
        return [row["image"]]
    return None


def check_rl_row(row: dict, index: int) -> None:
    """Raise a `ValueError` naming the row when it cannot become a 4DRL prompt.

    A row is either in the docs/design.md schema (`question`, `options`, `answer`, and `frames` + `fps` or a `video` path)
    or trl-style: a `prompt` that is a plain string or conversational, with images in trl's `image` / `images`
    columns (conversational prompts only, as in trl). DSR-Train rows go through
    [`thinker4d.data.dsr_train.convert_dsr_train`].
    """
    name = _row_name(row, index)
    if row.get("prompt") is not None and row.get("question") is None:
        prompt = row["prompt"]
        if is_conversational({"prompt": prompt}):
            return
        if not isinstance(prompt, str):
            raise ValueError(
                f"{name}: `prompt` must be a string or a conversation ([{{'role': 'user', 'content': ...}}]), "
                f"got {type(prompt).__name__}."
            )
        visual = [
            c
            for c in ("image", "images", "frames", "video")
            if row.get(c) is not None and not (isinstance(row[c], (list, tuple, str)) and len(row[c]) == 0)
        ]
        if visual:
            raise ValueError(
                f"{name}: a plain-text `prompt` cannot carry `{visual[0]}`: multimodal rows need a conversational "
                "prompt ([{'role': 'user', 'content': 'What is in the image?'}]); the trainer applies the chat "
                "template and places the images and video."
            )
        return
    if "Question" in row or "Correct" in row:
        raise ValueError(
            f"{name} looks like a DSR-Train row (Question/Correct columns). Convert the dataset first: "
            "`thinker4d.data.dsr_train.convert_dsr_train(dataset, video_root=...)`."
        )
    question, options, answer = row.get("question"), row.get("options"), row.get("answer")
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"{name}: `question` must be a non-empty string, got {question!r}.")
    if options is None or isinstance(options, str) or len(options) < 2:
        raise ValueError(f"{name}: `options` must be a list of 2-8 option strings, got {options!r}.")
    try:
        render_options(options)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    if not isinstance(answer, str) or answer.strip()[:1] not in LETTERS[: len(options)] or not answer.strip():
        raise ValueError(
            f"{name}: `answer` must be the correct option letter among {LETTERS[: len(options)]!r}, got {answer!r}."
        )
    frames, video = row.get("frames"), row.get("video")
    if (frames is None or len(frames) == 0) and not video:
        raise ValueError(f"{name}: no video. Give `frames` (a list of images, with `fps`) or `video` (a file path).")
    if _row_images(row):
        raise ValueError(
            f"{name}: a `question` row takes its visual input as a video (`frames` / `video`), not `image` / "
            "`images`. For an image question, give the row a conversational `prompt` with the images, as in trl."
        )


def _prompt_kind(row: dict) -> str:
    prompt = row.get("prompt") if row.get("question") is None else None
    return "plain-text" if isinstance(prompt, str) else "conversational"


def _check_prompt_kind(row: dict, index: int, kind: str) -> None:
    """Raise when a row's prompt format differs from the others' (trl renders a batch one way, from its first row)."""
    if _prompt_kind(row) != kind:
        raise ValueError(
            f"{_row_name(row, index)} has a {_prompt_kind(row)} prompt but row 0 has a {kind} one. Use one format for "
            "every row: `question` rows and conversational `prompt`s are chat, a string `prompt` is plain text."
        )


def _check_dataset(dataset) -> None:
    if dataset is None or not hasattr(dataset, "column_names") or not hasattr(dataset, "__len__"):
        return  # iterable datasets are checked batch by batch at rollout time
    light = [c for c in dataset.column_names if c not in ("frames", "imagery", "cot", "image", "images")]
    kind = None
    for i, row in enumerate(dataset.select_columns(light)):
        if "frames" in dataset.column_names and "video" not in row and row.get("question") is not None:
            row = {**row, "video": True}  # frames exist as a column; emptiness is checked at rollout time
        check_rl_row(row, i)  # image columns are checked at rollout time, once decoded
        kind = kind or _prompt_kind(row)
        _check_prompt_kind(row, i, kind)


# -------------------------------------------------------------------------------------------------- log-probs core
def _latent_core(model):
    m = model
    while hasattr(m, "module") or hasattr(m, "_orig_mod"):  # DDP / torch.compile wrappers
        m = getattr(m, "module", None) or m._orig_mod
    if hasattr(m, "get_base_model"):  # PEFT
        m = m.get_base_model()
    if not hasattr(m, "latent_ids"):
        raise ValueError(
            f"{type(m).__name__} is not a thinker4d latent model. Convert a Qwen2.5-VL / Qwen3-VL model first: "
            "`model, processor = thinker4d.from_base(model_or_id, processor)`. A text-only causal LM has no latent "
            "imagery path (no vision tower, no latent tokens); train it with `trl.GRPOTrainer`."
        )
    return m


def _final_norm(core):
    norm = getattr(getattr(getattr(core, "model", None), "language_model", None), "norm", None)
    if norm is None:
        raise ValueError(f"Cannot find the final norm (model.language_model.norm) of {type(core).__name__}.")
    return norm


def latent_per_token_logps(
    model,
    input_ids: torch.LongTensor,
    attention_mask: torch.LongTensor,
    logits_to_keep: int,
    latents: list[torch.Tensor] | torch.Tensor,
    temperature: float = 1.0,
    max_imagery_blocks: int | None = None,
    suppress_tokens: list[int] | None = None,
    compute_entropy: bool = False,
    cast_lm_head_to_fp32: bool = False,
    autocast=None,
    **mm_kwargs,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs of the last `logits_to_keep` tokens with the rollout's latents re-inserted at the slots.

    The forward is the thinker4d model's latent path (the positions generation used), and the log-softmax is trl's
    chunked kernel (no `(batch, seq, vocab)` logits), with the decoder's masks applied
    ([`~thinker4d.models.generation.apply_sampling_masks`]): `<|latent_pad|>` and `<|latent_end|>` are never sampled
    as text, `<|latent_start|>` is masked once a row has opened `max_imagery_blocks` blocks, and `suppress_tokens`
    are masked everywhere. Latent slots and the forced `<|latent_end|>` get log-prob 0 (they are not policy tokens).

    Args:
        model: a thinker4d model, possibly wrapped (DDP, PEFT); called through the wrapper so gradients sync.
        input_ids, attention_mask (`torch.LongTensor` of shape `(batch, seq)`): prompt + completion, left-padded
            prompts and right-padded completions as in trl.
        logits_to_keep (`int`): completion length.
        latents (`list[torch.Tensor]` or `torch.Tensor`): per row `(n_i, hidden)` vectors in slot order, or all of
            them row-major as one `(num_slots, hidden)` tensor.
        temperature (`float`): logits are divided by it (trl's handling).
        max_imagery_blocks (`int`, *optional*): the rollout's block limit when it suppressed `<|latent_start|>`.
        suppress_tokens (`list[int]`, *optional*): the token ids the rollout's generation config suppressed.
        autocast (*optional*): a callable returning the autocast context (`accelerator.autocast`).
        mm_kwargs: `pixel_values_videos`, `video_grid_thw`, `second_per_grid_ts`, `pixel_values`, `image_grid_thw`.

    Returns:
        `(logps, entropies)` of shape `(batch, logits_to_keep)`, float32; entropies are `None` unless requested.
    """
    core = _latent_core(model)
    start_id, pad_id, end_id, _ = core.latent_ids
    embed = core.get_input_embeddings()
    hidden_size = embed.weight.shape[-1]
    if isinstance(latents, torch.Tensor):
        flat = latents.reshape(-1, hidden_size)
    else:
        parts = [lat.reshape(-1, hidden_size) for lat in latents if lat is not None and lat.numel()]
        flat = torch.cat(parts) if parts else embed.weight.new_zeros((0, hidden_size))
    n_slots = int((input_ids == pad_id).sum())
    if n_slots != flat.shape[0]:
        raise ValueError(
            f"The batch has {n_slots} <|latent_pad|> slots but {flat.shape[0]} latent vectors were given; pass the "
            "`latents` recorded by generate(return_dict_in_generate=True) for exactly these sequences."
        )
    mm = {k: v for k, v in mm_kwargs.items() if v is not None}
    if "video_grid_thw" in mm or "image_grid_thw" in mm:
        mm_types = torch.zeros_like(input_ids, dtype=torch.int)
        mm_types[input_ids == core.config.image_token_id] = 1
        mm_types[input_ids == core.config.video_token_id] = 2
        mm["mm_token_type_ids"] = mm_types
    autocast = autocast if autocast is not None else contextlib.nullcontext

    captured: dict[str, torch.Tensor] = {}
    handle = _final_norm(core).register_forward_hook(lambda mod, args, out: captured.__setitem__("hidden", out))
    try:
        with autocast():
            # logits_to_keep=1: the stock head projects one position; the kernel below scores the completion.
            model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                latent_embeds=flat.to(device=embed.weight.device, dtype=embed.weight.dtype),
                logits_to_keep=1,
                use_cache=False,
                **mm,
            )
    finally:
        handle.remove()
    hidden = captured["hidden"][:, -logits_to_keep - 1 : -1]
    targets = input_ids[:, -logits_to_keep:]
    scored = attention_mask[:, -logits_to_keep:].bool() & (targets != pad_id) & (targets != end_id)
    if max_imagery_blocks is not None:
        opens = (targets == start_id).long()
        at_limit = (opens.cumsum(1) - opens) >= max_imagery_blocks
    else:
        at_limit = torch.zeros_like(scored)

    lm_head = core.get_output_embeddings()
    weight = lm_head.weight
    vocab = weight.shape[0]
    base_bias = torch.zeros(vocab, device=weight.device, dtype=torch.float32)
    if lm_head.bias is not None:
        base_bias = base_bias + lm_head.bias.float()
    # One bias for positions below the block limit, one for positions at it: the sampler's masks, as finite logits.
    at_the_limit = {"blocks_opened": torch.tensor(0), "max_imagery_blocks": 0}
    limit_bias = apply_sampling_masks(
        base_bias.clone(), core.config, **at_the_limit, suppress_tokens=suppress_tokens, fill_value=_MASKED_LOGIT
    )
    base_bias = apply_sampling_masks(base_bias, core.config, suppress_tokens=suppress_tokens, fill_value=_MASKED_LOGIT)
    outputs = ("log_probs", "entropy") if compute_entropy else ("log_probs",)

    # Keeps the result attached to the graph even when no position is scored (an all-masked micro-batch).
    logps = hidden.new_zeros(targets.shape, dtype=torch.float32) + 0.0 * hidden.sum()
    entropies = torch.zeros_like(logps) if compute_entropy else None
    kernel_ctx = torch.autocast(hidden.device.type, enabled=False) if cast_lm_head_to_fp32 else autocast()
    with kernel_ctx:
        for group, bias in ((scored & ~at_limit, base_bias), (scored & at_limit, limit_bias)):
            if not bool(group.any()):
                continue
            h = hidden[group].to(weight.device)
            if cast_lm_head_to_fp32:
                h = h.float()
            lp, ent, *_ = ChunkedLogProbFunction.apply(
                h, weight, bias.to(h.dtype), targets[group].to(weight.device), temperature, _CHUNK_SIZE, None, 1.0,
                outputs,
            )  # fmt: skip
            logps = logps.masked_scatter(group, lp.float())
            if compute_entropy:
                entropies = entropies.masked_scatter(group, ent.float())
    return logps, entropies


def sampling_logps(
    logits: torch.Tensor,
    completion_ids: torch.LongTensor,
    config,
    temperature: float = 1.0,
    max_imagery_blocks: int | None = None,
    suppress_tokens: list[int] | None = None,
) -> torch.Tensor:
    """Log-probs of the sampled tokens under the rollout's sampling distribution, from `generate(output_logits=True)`.

    `logits` are the model's raw logits per step `(batch, steps, vocab)`; the sampler's masks are applied as it
    applied them ([`~thinker4d.models.generation.apply_sampling_masks`]: `<|latent_pad|>` / `<|latent_end|>` never
    text, `<|latent_start|>` masked at the block limit, `suppress_tokens` everywhere), then trl's temperature. Latent
    slots and forced ends get 0.
    """
    start_id, pad_id, end_id, _ = latent_token_ids(config)
    completion_ids = completion_ids[:, : logits.size(1)]
    opens = (completion_ids == start_id).long()
    scores = apply_sampling_masks(
        logits.float().clone(), config, opens.cumsum(1) - opens, max_imagery_blocks, suppress_tokens
    )
    lp = torch.log_softmax(scores / temperature, dim=-1).gather(-1, completion_ids[..., None]).squeeze(-1)
    return lp.masked_fill((completion_ids == pad_id) | (completion_ids == end_id), 0.0)


# --------------------------------------------------------------------------------------------------------- trainer
def _to_latent_config(args: TrainingArguments) -> LatentGRPOConfig:
    """`args` (a `GRPOConfig` or `TrainingArguments`) as a `LatentGRPOConfig` with the latent fields' defaults, the way
    trl's `SFTTrainer` converts a `TrainingArguments`."""
    values = args.to_dict()
    values["hub_token"] = args.hub_token  # to_dict hides it
    if values.get("steps_per_generation") is not None:
        values.pop("generation_batch_size", None)  # derived from steps_per_generation by GRPOConfig.__post_init__
    logger.warning(
        "args is a %s; converting it to a LatentGRPOConfig with the latent fields at their defaults "
        "(mask_latent_delimiters, max_imagery_blocks, video_*). Pass a LatentGRPOConfig to set them.",
        type(args).__name__,
    )
    return LatentGRPOConfig(**values)


class LatentGRPOTrainer(GRPOTrainer):
    r"""GRPO for thinker4d latent-imagery models (the paper's 4DRL), kept exactly on-policy through imagery blocks.

    Rollouts use the model's latent `generate`; each completion keeps the latent vectors it fed back, and every
    log-prob recompute (policy, old policy, reference) re-inserts them, so text after an imagery block is scored
    under the context it was sampled in. Latent slots never enter the loss. Rows are docs/design.md RL rows (`question`,
    `options`, `answer`, `frames`/`fps` or `video`), rendered with `thinker4d.prompting`, or trl's rows: a `prompt`
    (plain text, or conversational with images in an `image` / `images` column). One data set may mix question rows
    and conversational prompts; plain-text prompts cannot be mixed with either (trl renders a batch one way).

    Overridden methods (everything else is trl's `GRPOTrainer`):

    - `_generate_and_score_completions`: builds prompts, videos and images from the rows, then calls `super()`; adds
      the per-row latents, video and image tensors to the batch and logs imagery metrics.
    - `_tokenize_prompts`: renders conversational prompts with their videos and images in one processor call (trl
      has no video path, and its image path cannot batch rows without images); plain text goes to trl's.
    - `_calculate_rewards`: gives reward functions back the `image` / `images` columns, which the rollout keeps out
      of trl's image path.
    - `_generate_single_turn`: latent `generate(return_dict_in_generate=True)`, keeping latents per completion.
    - `_generate`: decodes completions with the latent tokens kept (for `format_reward`) and returns the policy-token
      mask (latent slots and delimiters off) through trl's `tool_mask`, which trl applies to the loss and KL.
    - `_get_per_token_logps_and_entropies`: [`latent_per_token_logps`] with the batch's latents, video and images.
    - `_compute_loss`: exposes the micro-batch's latents, video and images to the log-prob recompute, then `super()`.
    - `_load_from_checkpoint`: loads thinker4d checkpoints through `from_pretrained`'s key mapping on resume.
    - `_save`: also writes `training_args.json`, `trainer_state.json` and `training_stages.json`
      (`thinker4d.trainers.records`), so a model card can say how the folder was made.

    Args:
        model (`str` or `PreTrainedModel`): a thinker4d checkpoint path / Hub id, or a model from `thinker4d.from_base`.
            Any other model (a text-only causal LM, a stock Qwen-VL) is refused with a `ValueError` saying so.
        reward_funcs (*optional*): defaults to `[accuracy_reward, format_reward]` with weights `[1.0, 0.2]`.
        args ([`LatentGRPOConfig`], *optional*): a trl `GRPOConfig` (or `TrainingArguments`) is converted to a
            `LatentGRPOConfig` with the latent fields at their defaults, with a warning. `generation_kwargs` with
            `num_beams > 1` is refused (latent decoding samples one beam per completion).
        train_dataset, eval_dataset, processing_class, and the other keywords of `GRPOTrainer` (except `tools`,
            `rollout_func`, `environment_factory`, which latent rollouts do not support).

    Attributes:
        rollout_logits_processor (`LogitsProcessorList`, *optional*): extra logits processors for rollouts (e.g. to
            force imagery blocks in tests); `None` by default.

    Example:

    ```python
    >>> import numpy as np
    >>> import thinker4d
    >>> from datasets import Dataset
    >>> from thinker4d.tiny import build_tiny_model, build_tiny_processor
    >>> from thinker4d.trainers.latent_grpo_trainer import LatentGRPOTrainer
    >>> from thinker4d.trainers.latent_grpo_config import LatentGRPOConfig
    >>> proc = build_tiny_processor("qwen2_5_vl")
    >>> model, proc = thinker4d.from_base(build_tiny_model("qwen2_5_vl", proc), proc)
    >>> rows = [{"question": "Camera?", "options": ["Pan Left", "Pan Right"], "answer": "B",
    ...          "frames": [np.zeros((56, 56, 3), np.uint8)] * 2, "fps": 1.0}] * 4
    >>> args = LatentGRPOConfig("out", max_steps=1, per_device_train_batch_size=4, num_generations=4,
    ...                         max_completion_length=8, report_to="none", use_cpu=True, save_strategy="no")
    >>> trainer = LatentGRPOTrainer(model, args=args, train_dataset=Dataset.from_list(rows), processing_class=proc)
    >>> trainer.train()  # doctest: +SKIP
    ```
    """

    _tag_names = ["trl", "grpo", "thinker4d", "4drl"]
    _name = "LatentGRPO"

    def __init__(self, model, reward_funcs=None, args=None, train_dataset=None, eval_dataset=None, **kwargs):
        for key in ("tools", "rollout_func", "environment_factory"):
            if kwargs.get(key) is not None:
                raise ValueError(
                    f"LatentGRPOTrainer does not support `{key}`: rollouts are single-turn latent decoding."
                )
        if not isinstance(model, str):
            _latent_core(model)  # before trl builds a reference model or wraps it
        if args is None:
            name = model if isinstance(model, str) else (model.config._name_or_path or "thinker4d")
            args = LatentGRPOConfig(f"{str(name).rstrip('/').split('/')[-1]}-4DRL")
        elif isinstance(args, TrainingArguments) and not isinstance(args, LatentGRPOConfig):
            args = _to_latent_config(args)
        elif not isinstance(args, LatentGRPOConfig):
            raise TypeError(f"args must be a LatentGRPOConfig (or a GRPOConfig), got {type(args).__name__}.")
        if reward_funcs is None:
            reward_funcs = [accuracy_reward, format_reward]
            if args.reward_weights is None:
                args.reward_weights = list(DEFAULT_REWARD_WEIGHTS)
        _check_dataset(train_dataset)
        for ds in eval_dataset.values() if isinstance(eval_dataset, dict) else [eval_dataset]:
            _check_dataset(ds)
        super().__init__(
            model, reward_funcs, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, **kwargs
        )
        if self.aux_loss_enabled:
            raise ValueError("Router aux losses are not supported by LatentGRPOTrainer; unset output_router_logits.")
        core = _latent_core(self.model)
        self.latent_start_id, self.latent_pad_id, self.latent_end_id, self.latent_size = latent_token_ids(core.config)
        self._special_ids = set(self._tokenizer.all_special_ids) - {
            self.latent_start_id,
            self.latent_pad_id,
            self.latent_end_id,
        }
        video_id = getattr(core.config, "video_token_id", None)
        if video_id is not None:  # a sampled video token would mismatch the video features, as trl does for images
            suppress = list(self.generation_kwargs.get("suppress_tokens") or []) + [video_id]
            self.generation_kwargs["suppress_tokens"] = suppress
            self.generation_config.suppress_tokens = suppress
        self.rollout_logits_processor: LogitsProcessorList | None = None
        self._latent_context: dict[str, list] | None = None
        self._batch_videos: list | None = None
        self._batch_image_columns: list[dict] | None = None

    # ------------------------------------------------------------------------------------------------ rollouts
    def _load_video(self, row: dict, index: int):
        from thinker4d.eval.video import VideoError, cap_frames, decode_video

        name = _row_name(row, index)
        frames, path = row.get("frames"), row.get("video")
        try:
            if frames is not None and len(frames):
                if isinstance(frames[0], str):
                    from PIL import Image

                    frames = [Image.open(f) for f in frames]
                arr = frames_to_array(frames)
                fps = float(row.get("fps") or 1.0)
                arr, fps, _ = cap_frames(arr, fps, self.args.video_max_frames)
                return arr, fps
            if path:
                arr, fps, _ = decode_video(
                    path, fps=self.args.video_fps, max_frames=self.args.video_max_frames,
                    max_pixels=self.args.video_max_pixels, cache_dir=False,
                )  # fmt: skip
                return arr, fps
        except (VideoError, ValueError, OSError) as e:
            raise ValueError(f"{name}: cannot load its video: {e}") from e
        return None

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        rows, videos, image_columns = [], [], []
        for i, x in enumerate(inputs):
            check_rl_row(x, i)
            _check_prompt_kind(x, i, _prompt_kind(inputs[0]))
            video = self._load_video(x, i)
            images = _row_images(x)
            # trl's image columns go into the prompt here, next to the video, and are hidden from trl, whose own
            # image path has no video and cannot batch rows without images; rewards get them back.
            image_columns.append({c: x[c] for c in _IMAGE_COLUMNS if c in x})
            x = {k: v for k, v in x.items() if k not in _IMAGE_COLUMNS}
            if x.get("question") is not None:
                x["prompt"] = build_messages(x["question"], x["options"], video=video is not None)
                x.setdefault("solution", x["answer"])
            elif images:
                try:
                    x["prompt"] = prepare_multimodal_messages(x["prompt"], images=images)
                except ValueError as e:
                    raise ValueError(f"{_row_name(x, i)}: {e}") from e
            x["latent_size"] = self.latent_size
            rows.append(x)
            videos.append(video)
        keys = list(dict.fromkeys(k for x in rows for k in x))
        rows = [{k: x.get(k) for k in keys} for x in rows]  # trl reads the reward columns off the first row
        self._batch_videos, self._batch_image_columns = videos, image_columns
        self._latent_context = {}
        try:
            output = super()._generate_and_score_completions(rows)
            context = self._latent_context
        finally:
            self._latent_context, self._batch_videos, self._batch_image_columns = None, None, None
        output.update({k: context[k] for k in _ROW_KEYS})

        mode = "train" if self.model.training else "eval"
        blocks = torch.tensor([float((ids == self.latent_start_id).sum()) for ids in output["completion_ids"]])
        blocks = gather(blocks.to(self.accelerator.device))
        self._metrics[mode]["imagery/blocks_mean"].append(blocks.mean().item())
        self._metrics[mode]["imagery/frac_with_block"].append((blocks > 0).float().mean().item())
        sampling, old = output.get("sampling_per_token_logps"), output.get("old_per_token_logps")
        if sampling is not None and old is not None:
            mask = (output["completion_mask"] * output["tool_mask"]).bool()
            diff = (sampling - old).abs()[mask]
            value = diff.max() if diff.numel() else torch.zeros((), device=diff.device)
            self._metrics[mode]["sampling/latent_logp_diff/max"].append(
                self.accelerator.gather(value.reshape(1)).max().item()
            )
        return output

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        # Overwritten -- reward functions get the `image` / `images` columns the rollout hid from trl's image path
        columns = self._batch_image_columns
        if columns is not None and any(columns):
            inputs = [{**x, **c} for x, c in zip(inputs, columns)]
        return super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)

    def _tokenize_prompts(self, prompts: list):
        n = len(prompts)
        per_row = {k: [None] * n for k in _ROW_KEYS if k != "latents"}
        if self._latent_context is not None:
            self._latent_context.update(per_row)
        if not is_conversational({"prompt": prompts[0]}):
            return super()._tokenize_prompts(prompts)  # plain text: no chat template, no images or video (trl)
        videos = self._batch_videos or [None] * n
        proc = self.processing_class
        clean, images = [], []
        for prompt in prompts:
            messages = prepare_multimodal_messages(prompt) if self._is_vlm else prompt  # str content -> blocks (trl)
            messages = [
                {**m, "content": [{k: v for k, v in p.items() if v is not None} for p in m["content"]]}
                if isinstance(m.get("content"), list)
                else m
                for m in messages
            ]
            clean.append(messages)
            images.append(
                [p["image"] for m in messages if isinstance(m.get("content"), list) for p in m["content"]
                 if p.get("type") == "image" and p.get("image") is not None]
            )  # fmt: skip
        texts = [
            proc.apply_chat_template(p, tokenize=False, add_generation_prompt=True, **self.chat_template_kwargs)
            for p in clean
        ]
        present = [v for v in videos if v is not None]
        kw = video_kwargs(proc, [v[0] for v in present], [v[1] for v in present]) if present else {}
        flat_images = [im for row in images for im in row]
        if flat_images:
            kw["images"] = flat_images
        enc = proc(text=texts, padding=True, return_tensors="pt", **kw)
        prompt_ids = [ids[m.bool()].tolist() for ids, m in zip(enc["input_ids"], enc["attention_mask"])]

        fields = {}
        if present:
            grid = enc["video_grid_thw"]
            pixels = torch.split(enc["pixel_values_videos"], grid.prod(-1).tolist())
            ts = enc.get("second_per_grid_ts")
            ts = torch.as_tensor(ts, dtype=torch.float32) if ts is not None else None
            j = 0
            for i, v in enumerate(videos):
                if v is None:
                    continue
                per_row["pixel_values_videos"][i] = pixels[j]
                per_row["video_grid_thw"][i] = grid[j : j + 1]
                per_row["second_per_grid_ts"][i] = ts[j : j + 1] if ts is not None else None
                j += 1
            fields = {"pixel_values_videos": enc["pixel_values_videos"], "video_grid_thw": grid}
            if ts is not None:
                fields["second_per_grid_ts"] = ts
        if flat_images:
            grid = enc["image_grid_thw"]
            pixels = torch.split(enc["pixel_values"], grid.prod(-1).tolist())
            j = 0
            for i, row in enumerate(images):
                if row:
                    per_row["images_pixel_values"][i] = torch.cat(pixels[j : j + len(row)])
                    per_row["images_grid_thw"][i] = grid[j : j + len(row)]
                    j += len(row)
            fields.update(pixel_values=enc["pixel_values"], image_grid_thw=grid)
        # No images for trl: it would re-process them for its own loss inputs; the recompute reads `per_row` instead.
        return prompt_ids, None, fields

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        tok = self._tokenizer
        prompt_tensors = [torch.tensor(ids) for ids in prompt_ids]
        padded = pad(prompt_tensors, padding_value=tok.pad_token_id, padding_side="left",
                     pad_to_multiple_of=self.pad_to_multiple_of)  # fmt: skip
        attention = pad([torch.ones_like(t) for t in prompt_tensors], padding_value=0, padding_side="left",
                        pad_to_multiple_of=self.pad_to_multiple_of)  # fmt: skip
        inputs = {"input_ids": padded, "attention_mask": attention}
        inputs.update({k: v for k, v in multimodal_fields.items() if isinstance(v, torch.Tensor)})
        if "video_grid_thw" in inputs or "image_grid_thw" in inputs:
            config = _latent_core(self.model).config
            mm = torch.zeros_like(padded, dtype=torch.int)
            mm[padded == config.image_token_id] = 1
            mm[padded == config.video_token_id] = 2
            inputs["mm_token_type_ids"] = mm
        inputs = Trainer._prepare_inputs(self, inputs)
        record = self.args.record_sampling_logps
        # The output flags go into a copy of the config: transformers warns about flags passed beside a config.
        generation_config = copy.deepcopy(self.generation_config)
        generation_config.return_dict_in_generate = True
        generation_config.output_logits = record
        gen_kwargs = {
            "generation_config": generation_config,
            "max_imagery_blocks": self.args.max_imagery_blocks,
            "on_imagery_limit": self.args.on_imagery_limit,
        }
        if self.rollout_logits_processor is not None:
            gen_kwargs["logits_processor"] = LogitsProcessorList(list(self.rollout_logits_processor))
        with (
            profiling_context(self, "transformers.generate"),
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                generation_kwargs=self.generation_kwargs,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as unwrapped_model,
            torch.no_grad(),
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
            self.accelerator.autocast(),  # the recompute runs under autocast too: same precision as the rollout
        ):
            out = unwrapped_model.generate(**inputs, **gen_kwargs)
        prompt_length = padded.size(1)
        completion = out.sequences[:, prompt_length:]
        is_eos = torch.isin(completion, torch.tensor(self.eos_token_ids, device=completion.device))
        eos_idx = torch.full((is_eos.size(0),), is_eos.size(1), dtype=torch.long, device=completion.device)
        eos_idx[is_eos.any(dim=1)] = is_eos.int().argmax(dim=1)[is_eos.any(dim=1)]
        keep = torch.arange(is_eos.size(1), device=completion.device)[None] <= eos_idx[:, None]
        completion_ids = [c[m].tolist() for c, m in zip(completion.cpu(), keep.cpu())]

        latents = []
        for i, (vecs, pos) in enumerate(zip(out.latents, out.latent_positions)):
            inside = (pos - prompt_length) <= eos_idx[i].to(pos.device)
            latents.append(vecs[inside.to(vecs.device)].detach())
        if self._latent_context is not None:
            self._latent_context["latents"] = latents

        logprobs = None
        if record:
            lp = sampling_logps(
                torch.stack(out.logits, dim=1), completion, _latent_core(self.model).config, self.temperature,
                self.args.max_imagery_blocks if self.args.on_imagery_limit == "suppress" else None,
                self.generation_config.suppress_tokens,
            )  # fmt: skip
            logprobs = [row[: len(ids)].tolist() for row, ids in zip(lp.cpu(), completion_ids)]
        return completion_ids, logprobs

    def _decode_completion(self, ids: list[int]) -> str:
        kept = [t for t in ids if t not in self._special_ids]
        return self._tokenizer.decode(kept, skip_special_tokens=False)

    def _policy_token_mask(self, ids: list[int]) -> list[int]:
        off = {self.latent_pad_id, self.latent_end_id}
        if self.args.mask_latent_delimiters:
            off.add(self.latent_start_id)
        return [0 if t in off else 1 for t in ids]

    def _generate(self, prompts: list):
        (prompt_ids, completion_ids, tool_mask, completions, logprobs, extra, images, tool_images) = super()._generate(
            prompts
        )
        texts = [self._decode_completion(ids) for ids in completion_ids]
        if is_conversational({"prompt": prompts[0]}):
            completions = [[{"role": "assistant", "content": t}] for t in texts]
        else:
            completions = texts
        tool_mask = [self._policy_token_mask(ids) for ids in completion_ids]
        return prompt_ids, completion_ids, tool_mask, completions, logprobs, extra, images, tool_images

    # ---------------------------------------------------------------------------------------------- log-probs
    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        **unused,
    ):
        context = self._latent_context
        if not context or "latents" not in context:
            raise RuntimeError(
                "LatentGRPOTrainer recomputes log-probs only for its own rollouts (their latents are needed)."
            )
        batch_size = batch_size or input_ids.size(0)
        all_logps, all_entropies = [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = min(start + batch_size, input_ids.size(0))
            mm = {}
            for key, grid_key, name, grid_name in (
                ("pixel_values_videos", "video_grid_thw", "pixel_values_videos", "video_grid_thw"),
                ("images_pixel_values", "images_grid_thw", "pixel_values", "image_grid_thw"),
            ):
                pixels = [v for v in context[key][start:end] if v is not None]
                if pixels:
                    mm[name] = torch.cat(pixels).to(input_ids.device)
                    grids = [g for g in context[grid_key][start:end] if g is not None]
                    mm[grid_name] = torch.cat(grids).to(input_ids.device)
            ts = [t for t in context["second_per_grid_ts"][start:end] if t is not None]
            if ts:
                mm["second_per_grid_ts"] = torch.cat(ts).to(input_ids.device)
            logps, entropies = latent_per_token_logps(
                model,
                input_ids[start:end],
                attention_mask[start:end],
                logits_to_keep,
                [lat.to(input_ids.device) for lat in context["latents"][start:end]],
                temperature=self.temperature,
                max_imagery_blocks=self.args.max_imagery_blocks if self.args.on_imagery_limit == "suppress" else None,
                suppress_tokens=self.generation_config.suppress_tokens,
                compute_entropy=compute_entropy,
                cast_lm_head_to_fp32=self.args.cast_lm_head_to_fp32,
                autocast=self.accelerator.autocast,
                **mm,
            )
            all_logps.append(logps)
            if compute_entropy:
                all_entropies.append(entropies)
        logps = torch.cat(all_logps, dim=0)
        entropies = torch.cat(all_entropies, dim=0) if compute_entropy else None
        return logps, entropies, None

    def _compute_loss(self, model, inputs):
        self._latent_context = {k: inputs[k] for k in _ROW_KEYS}
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._latent_context = None

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        # Overwritten -- the stock loader matches none of the legacy Qwen-VL keys and silently keeps the initial weights
        if not load_thinker4d_checkpoint(self, resume_from_checkpoint, model):
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        # Overwritten -- also record the training arguments, the trainer state and the stages that led to these
        # weights as JSON, so a model card can say how the folder was made.
        super()._save(output_dir, state_dict=state_dict)
        if self.args.should_save:
            write_training_record(self, output_dir or self.args.output_dir, _latent_core(self.model))


__all__ = ["LatentGRPOTrainer", "check_rl_row", "latent_per_token_logps", "sampling_logps"]
