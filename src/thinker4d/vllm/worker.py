"""The vLLM worker and model runner that feed latent vectors at `<|latent_pad|>` slots.

vLLM builds them from `ParallelConfig.worker_cls` (the `worker_cls` engine argument that
[`thinker4d.vllm.latent_engine_kwargs`] sets); nothing in vLLM is patched. The runner:

- embeds every scheduled token itself (the engine runs with `enable_prompt_embeds=True`, so the model takes
  `inputs_embeds`, on CUDA graphs too) and writes, at each `<|latent_pad|>` slot, the request's previous last-layer
  post-norm hidden state (the lm_head input) scaled to `latent_norm`, as thinker4d's `latent_sample` does;
- keeps every fed vector per request and position, so a request that vLLM preempts and recomputes (in one prefill or
  in chunks) gets the same vectors back at its slots;
- returns them through `collective_rpc("thinker4d_pop_latents", ...)`.

The worker refuses the settings the runner does not handle, with the setting to change.
"""

from __future__ import annotations

import numpy as np
import torch
from vllm.v1.worker.cpu_model_runner import CPUModelRunner
from vllm.v1.worker.cpu_worker import CPUWorker
from vllm.v1.worker.gpu_model_runner import GPUModelRunner
from vllm.v1.worker.gpu_worker import Worker

from ._latent import EXTRA_ARGS_KEY, LatentSpec


def check_engine_config(vllm_config, use_v2_model_runner: bool) -> LatentSpec:
    """The latent spec of the model, or a clear error for an engine setting the latent runner does not handle."""
    spec = LatentSpec.from_config(vllm_config.model_config.hf_config)
    problems = []
    if use_v2_model_runner:
        problems.append("vLLM chose its Model Runner V2; set the environment variable VLLM_USE_V2_MODEL_RUNNER=0")
    parallel = vllm_config.parallel_config
    if parallel.tensor_parallel_size > 1 or parallel.pipeline_parallel_size > 1:
        problems.append(
            f"tensor_parallel_size={parallel.tensor_parallel_size}, pipeline_parallel_size="
            f"{parallel.pipeline_parallel_size}: only one worker per engine is supported (use data parallelism)"
        )
    if vllm_config.cache_config.enable_prefix_caching:
        problems.append(
            "prefix caching is on: two requests with the same tokens but different latents would share a cached "
            "block; pass enable_prefix_caching=False"
        )
    if vllm_config.speculative_config is not None:
        problems.append("speculative decoding is on: a draft cannot know the latents; remove speculative_config")
    if vllm_config.scheduler_config.async_scheduling:
        problems.append("async scheduling is on: pass async_scheduling=False")
    if not vllm_config.model_config.enable_prompt_embeds:
        problems.append("the runner feeds embeddings: pass enable_prompt_embeds=True")
    if vllm_config.model_config.is_multimodal_model:
        problems.append(
            "the model is multimodal: the thinker4d vLLM backend decodes text-only models (Qwen2.5-VL / Qwen3-VL "
            "are not supported by it yet)"
        )
    if problems:
        raise ValueError(
            "The thinker4d latent vLLM runner cannot run with these settings: " + "; ".join(problems) + "."
        )
    return spec


class LatentRunnerMixin:
    """Feeds, keeps and returns the latent vectors (see the module docstring). Mixed into vLLM's V1 model runners."""

    def _latent_setup(self) -> None:
        self.latent_spec = LatentSpec.from_config(self.vllm_config.model_config.hf_config)
        self.fed_latents: dict[str, dict[int, torch.Tensor]] = {}  # request key -> {position: vector}
        self.last_hidden: dict[str, tuple[int, torch.Tensor]] = {}  # request key -> (position, scaled lm_head input)
        self.reinserted_latents = 0  # slots recomputed with a stored vector (after preemption)
        self._step_layout = None

    def request_key(self, req_id: str) -> str:
        params = self.requests[req_id].sampling_params
        return ((params.extra_args or {}).get(EXTRA_ARGS_KEY) or {}).get("key", req_id) if params else req_id

    def _latent_for(self, key: str, position: int) -> torch.Tensor:
        stored = self.fed_latents.setdefault(key, {})
        if position in stored:
            self.reinserted_latents += 1
            return stored[position]
        last = self.last_hidden.get(key)
        if last is None or last[0] != position - 1:
            raise RuntimeError(
                f"No hidden state for the latent slot at position {position} of request {key!r} (the last one kept is "
                f"at position {None if last is None else last[0]}). A <|latent_pad|> slot is fed with the hidden "
                "state at the position before it, which this request never computed."
            )
        stored[position] = last[1]
        return last[1]

    def _preprocess(self, scheduler_output, num_input_tokens, intermediate_tensors=None):
        out = super()._preprocess(scheduler_output, num_input_tokens, intermediate_tensors)
        inputs_embeds = out[1]
        num_reqs = self.input_batch.num_reqs
        keys = [self.request_key(req_id) for req_id in self.input_batch.req_ids[:num_reqs]]
        starts = self.query_start_loc.np[: num_reqs + 1].copy()
        computed = self.input_batch.num_computed_tokens_cpu[:num_reqs].copy()
        tokens = self.input_ids.cpu[: scheduler_output.total_num_scheduled_tokens]
        slots = (tokens == self.latent_spec.pad_id).nonzero().flatten().tolist()
        if slots:
            if inputs_embeds is None:
                raise RuntimeError(
                    "The latent runner needs inputs_embeds: create the engine with enable_prompt_embeds=True."
                )
            rows = np.searchsorted(starts[1:], slots, side="right")
            for flat, row in zip(slots, rows.tolist()):
                position = int(computed[row] + flat - starts[row])
                inputs_embeds[flat] = self._latent_for(keys[row], position).to(inputs_embeds.dtype)
        # A row whose chunk ends before its last known token (a chunked prefill, or a recompute after preemption) samples
        # nothing: its hidden state there feeds no slot, and keeping it would drop the one a pending slot needs.
        lengths = [self.requests[req_id].num_tokens for req_id in self.input_batch.req_ids[:num_reqs]]
        sampling = computed + np.diff(starts) == np.asarray(lengths)
        self._step_layout = (keys, starts, computed, sampling)
        return out

    def _model_forward(self, *args, **kwargs):
        hidden = super()._model_forward(*args, **kwargs)
        layout, self._step_layout = self._step_layout, None
        if layout is None:  # a dummy / profiling run
            return hidden
        if not isinstance(hidden, torch.Tensor):
            raise RuntimeError(f"The latent runner expects the model to return its hidden states, got {type(hidden)}.")
        keys, starts, computed, sampling = layout
        last_rows = torch.as_tensor(starts[1:] - 1, dtype=torch.long, device=hidden.device)
        vectors = self.latent_spec.scale(hidden[last_rows].detach()).clone()
        ends = computed + np.diff(starts) - 1
        for row, key in enumerate(keys):
            if sampling[row]:
                self.last_hidden[key] = (int(ends[row]), vectors[row])
        return hidden

    def pop_latents(self, requests: dict[str, list[int]]) -> dict[str, bytes]:
        """`{key: float32 bytes of the (num_slots, hidden) latents}` for `{key: slot positions}`, and forgets those
        requests. Bytes, because `collective_rpc` from an engine process returns what msgpack carries, not tensors.

        A slot that was never fed (the completion's last token, when a request stops inside a block) gets the hidden
        state it would have been fed with, as `latent_sample` reports it."""
        result = {}
        for key, positions in requests.items():
            stored = self.fed_latents.pop(key, {})
            last = self.last_hidden.pop(key, None)
            if last is not None and last[0] + 1 not in stored:
                stored[last[0] + 1] = last[1]
            missing = [p for p in positions if p not in stored]
            if missing:
                raise RuntimeError(f"Request {key!r} has no latent vector for the slot(s) at position(s) {missing}.")
            vectors = [stored[p].float().cpu() for p in positions]
            result[key] = torch.stack(vectors).numpy().tobytes() if vectors else b""
        return result


class LatentCPUModelRunner(LatentRunnerMixin, CPUModelRunner):
    def __init__(self, vllm_config, device):
        super().__init__(vllm_config, device)
        self._latent_setup()


class LatentGPUModelRunner(LatentRunnerMixin, GPUModelRunner):
    def __init__(self, vllm_config, device):
        super().__init__(vllm_config, device)
        self._latent_setup()


class _LatentRPC:
    """The `collective_rpc` methods of the latent workers (kept on the worker class, so `worker_extension_cls` stays free
    for trl's weight-sync extension)."""

    def thinker4d_pop_latents(self, requests: dict[str, list[int]]) -> dict[str, bytes]:
        return self.model_runner.pop_latents(requests)

    def thinker4d_stats(self) -> dict[str, int]:
        runner = self.model_runner
        return {"reinserted_latents": runner.reinserted_latents, "held_requests": len(runner.fed_latents)}


class LatentCPUWorker(_LatentRPC, CPUWorker):
    """vLLM's CPU worker with the latent model runner."""

    def init_device(self):
        check_engine_config(self.vllm_config, self.use_v2_model_runner)
        super().init_device()
        self.model_runner = LatentCPUModelRunner(self.vllm_config, torch.device("cpu"))


class LatentGPUWorker(_LatentRPC, Worker):
    """vLLM's GPU worker with the latent model runner (not run in thinker4d's CI, which has no GPU vLLM)."""

    def _make_model_runner(self):
        check_engine_config(self.vllm_config, self.use_v2_model_runner)
        return LatentGPUModelRunner(self.vllm_config, self.device)
