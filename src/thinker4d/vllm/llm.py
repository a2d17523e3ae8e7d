"""The client side: engine arguments, sampling parameters and [`LatentLLM`], a `vllm.LLM` that returns the latents."""

from __future__ import annotations

import uuid

import torch
from vllm import LLM, SamplingParams
from vllm.platforms import current_platform

from ._latent import EXTRA_ARGS_KEY, BlockState, LatentCompletion, LatentSpec, check_prompt


# Engine settings the latent runner needs, and why (a caller that passes another value gets this reason back).
_REQUIRED = {
    "enable_prefix_caching": (False, "a cached block would be shared by requests whose latents differ"),
    "enable_prompt_embeds": (True, "the runner feeds the latent vectors as input embeddings"),
    "async_scheduling": (False, "the runner reads each step's token ids on the host before the forward"),
}


def latent_engine_kwargs(**engine_kwargs) -> dict:
    """`engine_kwargs` plus the settings of the latent backend, for `vllm.LLM(**...)` (or trl's vLLM engine).

    Sets `worker_cls` (the latent worker of the platform), appends [`LatentLogitsProcessor`] to `logits_processors`,
    and sets `enable_prefix_caching=False`, `enable_prompt_embeds=True`, `async_scheduling=False`; raises a
    `ValueError` when `engine_kwargs` asks for another value of one of these."""
    kwargs = dict(engine_kwargs)
    for name, (value, reason) in _REQUIRED.items():
        if name in kwargs and kwargs[name] != value:
            raise ValueError(
                f"The thinker4d vLLM backend needs {name}={value} ({reason}); got {name}={kwargs[name]!r}."
            )
        kwargs[name] = value
    worker = "LatentCPUWorker" if current_platform.is_cpu() else "LatentGPUWorker"
    if kwargs.get("worker_cls", "auto") != "auto":
        raise ValueError(
            f"The thinker4d vLLM backend sets worker_cls itself; got worker_cls={kwargs['worker_cls']!r}."
        )
    kwargs["worker_cls"] = f"thinker4d.vllm.worker.{worker}"
    from .logits import LatentLogitsProcessor

    kwargs["logits_processors"] = [*(kwargs.get("logits_processors") or []), LatentLogitsProcessor]
    return kwargs


def latent_sampling_params(
    params: SamplingParams, key: str | None = None, max_imagery_blocks: int | None = None
) -> SamplingParams:
    """A copy of `params` tagged for the latent backend: a request `key` (to fetch its latents) and the block limit."""
    if params.n != 1:
        raise ValueError(
            f"SamplingParams.n={params.n}: the thinker4d vLLM backend keeps latents per request; repeat the prompt "
            "n times with n=1 instead."
        )
    if max_imagery_blocks is not None and (not isinstance(max_imagery_blocks, int) or max_imagery_blocks < 0):
        raise ValueError(f"max_imagery_blocks must be an integer >= 0 or None, got {max_imagery_blocks!r}.")
    params = params.clone()
    extra = dict(params.extra_args or {})
    extra[EXTRA_ARGS_KEY] = {"key": key or uuid.uuid4().hex, "max_imagery_blocks": max_imagery_blocks}
    params.extra_args = extra
    return params


def fetch_latents(llm: LLM, requests: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """`{key: (num_slots, hidden) float32 tensor}`: the latents fed at the given slot positions of each request (tagged
    with `key` by [`latent_sampling_params`]), fetched from the worker, which then forgets those requests."""
    raw = llm.collective_rpc("thinker4d_pop_latents", args=(requests,))[0]
    hidden = llm.llm_engine.vllm_config.model_config.get_hidden_size()
    result = {}
    for key, positions in requests.items():
        data = bytearray(raw[key])
        vectors = torch.frombuffer(data, dtype=torch.float32) if data else torch.zeros(0)
        result[key] = vectors.reshape(len(positions), hidden)
    return result


class LatentLLM:
    """A `vllm.LLM` that decodes thinker4d imagery blocks and returns, per completion, the fed latents.

    Example:

    ```python
    >>> import os; os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # doctest: +SKIP
    >>> from vllm import SamplingParams  # doctest: +SKIP
    >>> from thinker4d.vllm import LatentLLM  # doctest: +SKIP
    >>> llm = LatentLLM("path/to/converted-model", dtype="float32", enforce_eager=True)  # doctest: +SKIP
    >>> out = llm.generate([[12, 34, 56]], SamplingParams(max_tokens=32, temperature=0), max_imagery_blocks=2)  # doctest: +SKIP
    >>> out[0].token_ids, out[0].latents.shape, out[0].latent_positions  # doctest: +SKIP
    ```

    Args:
        model (`str`): a local folder or Hub id of a thinker4d-converted checkpoint (its config carries the latent
            fields).
        **engine_kwargs: further `vllm.LLM` arguments; see [`latent_engine_kwargs`] for the ones it sets.
    """

    def __init__(self, model: str, **engine_kwargs):
        self.llm = LLM(model=model, **latent_engine_kwargs(**engine_kwargs))
        self.spec = LatentSpec.from_config(self.llm.llm_engine.vllm_config.model_config.hf_config)

    def generate(
        self,
        prompts: list[list[int]],
        sampling_params: SamplingParams | list[SamplingParams],
        max_imagery_blocks: int | None = None,
        use_tqdm: bool = False,
    ) -> list[LatentCompletion]:
        """Decode token-id `prompts`; one [`LatentCompletion`] per prompt, in order."""
        if isinstance(sampling_params, SamplingParams):
            sampling_params = [sampling_params] * len(prompts)
        if len(sampling_params) != len(prompts):
            raise ValueError(f"Got {len(sampling_params)} SamplingParams for {len(prompts)} prompts.")
        for row, prompt in enumerate(prompts):
            check_prompt(list(prompt), self.spec, row)
        tagged = [latent_sampling_params(p, max_imagery_blocks=max_imagery_blocks) for p in sampling_params]
        outputs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts], tagged, use_tqdm=use_tqdm)
        requests, completions = {}, []
        for prompt, params, output in zip(prompts, tagged, outputs):
            completion = output.outputs[0]
            sequence = [*prompt, *completion.token_ids]
            positions = [i for i in range(len(prompt), len(sequence)) if sequence[i] == self.spec.pad_id]
            requests[params.extra_args[EXTRA_ARGS_KEY]["key"]] = positions
            state = BlockState(self.spec)
            for token in sequence:
                state.push(token)
            completions.append(
                LatentCompletion(list(prompt), list(completion.token_ids), None, positions, state.blocks, completion)
            )
        latents = fetch_latents(self.llm, requests)
        for key, completion in zip(requests, completions):
            completion.latents = latents[key]
        return completions

    def stats(self) -> dict[str, int]:
        """The runner's counters: `reinserted_latents` (slots recomputed with their stored vector, after a preemption)
        and `held_requests` (requests whose latents are kept and not yet returned)."""
        return self.llm.collective_rpc("thinker4d_stats")[0]
