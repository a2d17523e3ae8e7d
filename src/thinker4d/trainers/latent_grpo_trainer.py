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

import copy
import functools
import logging
import warnings
from typing import Any

import torch
from accelerate.utils import gather
from transformers import LogitsProcessorList, Trainer, TrainingArguments
from trl import GRPOTrainer
from trl.data_utils import is_conversational
from trl.extras.profiling import profiling_context
from trl.models import unwrap_model_for_generation
from trl.trainer.utils import pad

from thinker4d.models.conversion import unwrap_latent_model
from thinker4d.models.generation import latent_generate, latent_token_ids
from thinker4d.models.modeling_thinker4d_base import build_mm_token_type_ids
from thinker4d.rewards import DEFAULT_REWARD_WEIGHTS, accuracy_reward, format_reward

from .checkpointing import load_thinker4d_checkpoint
from .latent_grpo_config import LatentGRPOConfig
from .latent_logps import latent_per_token_logps, sampling_logps
from .latent_vllm import attach_latent_vllm, vllm_rollout
from .records import write_training_record
from .rl_rows import (
    ROW_TENSOR_KEYS,
    check_prompt_kind,
    check_rl_dataset,
    check_rl_row,
    encode_prompts,
    load_row_video,
    prompt_kind,
    to_trl_row,
)


logger = logging.getLogger(__name__)
# Around every rollout trl calls `model.is_gradient_checkpointing` and `gradient_checkpointing_disable/enable`, which
# transformers 5 deprecates: nothing a user can change, so those warnings are not shown.
warnings.filterwarnings(
    "ignore",
    message="`(is_gradient_checkpointing|gradient_checkpointing_disable|gradient_checkpointing_enable)` is deprecated",
    category=FutureWarning,
)

# Per-row state a rollout keeps for the log-prob recomputes: its latents and its video / image tensors.
_ROW_KEYS = ("latents", *ROW_TENSOR_KEYS)


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

    Rollouts use the model's latent `generate`, or with `use_vllm=True` (text-only latent LMs, `vllm_mode="colocate"`)
    thinker4d's vLLM backend in trl's engine ([`~thinker4d.trainers.latent_vllm`]); each completion keeps the latent
    vectors it fed back, and every log-prob recompute (policy, old policy, reference) re-inserts them, so text after
    an imagery block is scored under the context it was sampled in. Latent slots never enter the loss. Rows are
    docs/design.md RL rows (`question`, `options`, `answer`, `frames`/`fps` or `video`), rendered with
    `thinker4d.prompting`, or trl's rows: a `prompt` (plain text, or conversational with images in an `image` /
    `images` column). One data set may mix question rows and conversational prompts; plain-text prompts cannot be
    mixed with either (trl renders a batch one way).

    Overridden methods (everything else is trl's `GRPOTrainer`). Apart from `__init__`, `_load_from_checkpoint` and
    `_save` (transformers' `Trainer`), they are private trl methods, whose signatures trl may change between releases:
    this class is tested with trl 1.16.

    - `__init__`: refuses `tools` / `rollout_func` / `environment_factory` and non-latent models, converts a
      `GRPOConfig` to a [`LatentGRPOConfig`], sets the default rewards, checks map-style data sets row by row
      ([`~thinker4d.trainers.rl_rows.check_rl_row`]) and suppresses `<|video_pad|>` in rollouts.
    - `_generate_and_score_completions`: builds prompts, videos and images from the rows, then calls `super()`; adds
      the per-row latents, video and image tensors to the batch and logs imagery metrics.
    - `_tokenize_prompts`: renders conversational prompts with their videos and images in one processor call (trl
      has no video path, and its image path cannot batch rows without images); plain text goes to trl's.
    - `_calculate_rewards`: gives reward functions back the `image` / `images` columns, which the rollout keeps out
      of trl's image path.
    - `_generate_single_turn`: latent `generate(return_dict_in_generate=True)`, keeping latents per completion (and,
      with `record_sampling_logps`, the rollout's log-probs from [`~thinker4d.trainers.latent_logps.sampling_logps`]);
      with `use_vllm`, [`~thinker4d.trainers.latent_vllm.vllm_rollout`] (vLLM's log-probs and latents).
    - `_generate`: decodes completions with the latent tokens kept (for `format_reward`) and returns the policy-token
      mask (latent slots and delimiters off) through trl's `tool_mask`, which trl applies to the loss and KL.
    - `_get_per_token_logps_and_entropies`: [`~thinker4d.trainers.latent_logps.latent_per_token_logps`] with the
      batch's latents, video and images.
    - `_compute_loss`: exposes the micro-batch's latents, video and images to the log-prob recompute, then `super()`.
    - `_load_from_checkpoint`: loads thinker4d checkpoints through `from_pretrained`'s key mapping on resume.
    - `_save`: also writes `training_args.json`, `trainer_state.json` and `training_stages.json`
      (`thinker4d.trainers.records`), so a model card can say how the folder was made.

    Args:
        model (`str` or `PreTrainedModel`): a thinker4d checkpoint path / Hub id, a model from `thinker4d.from_base`, or
            a text-only causal LM whose config carries the latent fields (`latent_size`, `latent_start_id`,
            `latent_pad_id`, `latent_end_id`). Any other model (a stock Qwen-VL or causal LM) is refused.
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
            unwrap_latent_model(model, text_only=True)  # before trl builds a reference model or wraps it
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
        check_rl_dataset(train_dataset)
        for ds in eval_dataset.values() if isinstance(eval_dataset, dict) else [eval_dataset]:
            check_rl_dataset(ds)
        use_vllm, args.use_vllm = args.use_vllm, False  # trl's engine lacks the latent runner: ours is built below
        try:
            super().__init__(
                model, reward_funcs, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, **kwargs
            )
        finally:
            args.use_vllm = use_vllm
        if self.aux_loss_enabled:
            raise ValueError("Router aux losses are not supported by LatentGRPOTrainer; unset output_router_logits.")
        core = unwrap_latent_model(self.model, text_only=True)
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
        if use_vllm:
            attach_latent_vllm(self, core)

    # ------------------------------------------------------------------------------------------------ rollouts
    def _load_video(self, row: dict, index: int):
        return load_row_video(row, index, self.args)

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        rows, videos, image_columns = [], [], []
        for i, x in enumerate(inputs):
            check_rl_row(x, i)
            check_prompt_kind(x, i, prompt_kind(inputs[0]))
            video = self._load_video(x, i)
            x, columns = to_trl_row(x, i, has_video=video is not None)
            if not self._is_vlm and (video is not None or any(v is not None for v in columns.values())):
                raise ValueError(
                    f"Row {i} has a video or images, which a text-only model cannot take: use `prompt` rows."
                )
            x["latent_size"] = self.latent_size
            rows.append(x)
            videos.append(video)
            image_columns.append(columns)
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
        if not is_conversational({"prompt": prompts[0]}):
            if self._latent_context is not None:
                self._latent_context.update({k: [None] * len(prompts) for k in ROW_TENSOR_KEYS})
            return super()._tokenize_prompts(prompts)  # plain text: no chat template, no images or video (trl)
        prompt_ids, fields, per_row = encode_prompts(
            self.processing_class, prompts, self._batch_videos, self._is_vlm, self.chat_template_kwargs
        )
        if self._latent_context is not None:
            self._latent_context.update(per_row)
        # No images for trl: it would re-process them for its own loss inputs; the recompute reads `per_row` instead.
        return prompt_ids, None, fields

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        if self.use_vllm:
            return vllm_rollout(self, prompt_ids, images, num_generations)
        tok = self._tokenizer
        prompt_tensors = [torch.tensor(ids) for ids in prompt_ids]
        padded = pad(prompt_tensors, padding_value=tok.pad_token_id, padding_side="left",
                     pad_to_multiple_of=self.pad_to_multiple_of)  # fmt: skip
        attention = pad([torch.ones_like(t) for t in prompt_tensors], padding_value=0, padding_side="left",
                        pad_to_multiple_of=self.pad_to_multiple_of)  # fmt: skip
        inputs = {"input_ids": padded, "attention_mask": attention}
        inputs.update({k: v for k, v in multimodal_fields.items() if isinstance(v, torch.Tensor)})
        if "video_grid_thw" in inputs or "image_grid_thw" in inputs:
            inputs["mm_token_type_ids"] = build_mm_token_type_ids(padded, unwrap_latent_model(self.model).config)
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
            core = unwrap_latent_model(unwrapped_model, text_only=True)  # a text-only LM's `generate` is the stock one
            generate = (
                unwrapped_model.generate if hasattr(core, "latent_ids") else functools.partial(latent_generate, core)
            )
            out = generate(**inputs, **gen_kwargs)
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
                torch.stack(out.logits, dim=1), completion, core.config, self.temperature,
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
            write_training_record(
                self, output_dir or self.args.output_dir, unwrap_latent_model(self.model, text_only=True)
            )


__all__ = ["LatentGRPOTrainer"]
