"""The vLLM V1 logits processor that enforces thinker4d's imagery-block schedule, per request.

Inside a block it forces `<|latent_pad|>` K times and then `<|latent_end|>`; outside a block `<|latent_pad|>` and
`<|latent_end|>` are never sampled, and `<|latent_start|>` is masked once a request has opened `max_imagery_blocks`
blocks (`SamplingParams.extra_args["thinker4d"]["max_imagery_blocks"]`). This is the rule of thinker4d's
`latent_sample` with `on_imagery_limit="suppress"`.
"""

from __future__ import annotations

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

from ._latent import EXTRA_ARGS_KEY, BlockState, LatentSpec


def max_imagery_blocks_of(params: SamplingParams) -> int | None:
    value = ((params.extra_args or {}).get(EXTRA_ARGS_KEY) or {}).get("max_imagery_blocks")
    if value is not None and (not isinstance(value, int) or value < 0):
        raise ValueError(
            f'SamplingParams.extra_args["{EXTRA_ARGS_KEY}"]["max_imagery_blocks"] must be an integer >= 0 or None, '
            f"got {value!r}."
        )
    return value


class _RequestState(BlockState):
    """A request's block state, fed from vLLM's live list of its output tokens."""

    def __init__(self, spec: LatentSpec, params: SamplingParams, prompt: list[int] | None, output: list[int]):
        super().__init__(spec)
        if prompt is None:
            raise ValueError(
                "The thinker4d vLLM backend decodes token-id prompts only (got a prompt given as embeddings)."
            )
        for token in prompt:
            self.push(token)
        self.limit = max_imagery_blocks_of(params)
        self.output = output
        self.seen = 0

    def advance(self) -> None:
        for token in self.output[self.seen :]:
            self.push(token)
        self.seen = len(self.output)


class LatentLogitsProcessor(LogitsProcessor):
    """Forces the block schedule and masks the latent tokens (see the module docstring)."""

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams):
        max_imagery_blocks_of(sampling_params)

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        self.spec = LatentSpec.from_config(vllm_config.model_config.hf_config)
        self.device = device
        self.states: dict[int, _RequestState] = {}
        self.forced_rows = self.forced_tokens = self.limit_rows = torch.zeros(0, dtype=torch.long)

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        process_dict_updates(
            self.states, batch_update, lambda params, prompt, output: _RequestState(self.spec, params, prompt, output)
        )
        forced_rows, forced_tokens, limit_rows = [], [], []
        for index, state in self.states.items():
            state.advance()
            forced = state.forced_token()
            if forced is not None:
                forced_rows.append(index)
                forced_tokens.append(forced)
            elif state.limit is not None and state.blocks >= state.limit:
                limit_rows.append(index)
        self.forced_rows = torch.tensor(forced_rows, dtype=torch.long, device=self.device)
        self.forced_tokens = torch.tensor(forced_tokens, dtype=torch.long, device=self.device)
        self.limit_rows = torch.tensor(limit_rows, dtype=torch.long, device=self.device)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        logits[:, [self.spec.pad_id, self.spec.end_id]] = -float("inf")
        if len(self.limit_rows):
            logits[self.limit_rows, self.spec.start_id] = -float("inf")
        if len(self.forced_rows):
            logits[self.forced_rows] = -float("inf")
            logits[self.forced_rows, self.forced_tokens] = 0.0
        return logits
