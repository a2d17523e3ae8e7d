"""The latent fields of a model config and the block rule, read without thinker4d's model classes.

vLLM brings its own transformers version, which the thinker4d model classes may not import under; the backend needs
only the config fields, read here from the Hugging Face config that vLLM loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


EXTRA_ARGS_KEY = "thinker4d"  # `SamplingParams.extra_args[EXTRA_ARGS_KEY]`: {"key": str, "max_imagery_blocks": int}


@dataclass(frozen=True)
class LatentSpec:
    """The latent token ids, K and `latent_norm` of a model config."""

    start_id: int
    pad_id: int
    end_id: int
    latent_size: int
    latent_norm: float | None

    @classmethod
    def from_config(cls, config) -> LatentSpec:
        config = getattr(config, "text_config", None) if getattr(config, "latent_pad_id", None) is None else config
        fields = {name: getattr(config, name, None) for name in ("latent_start_id", "latent_pad_id", "latent_end_id")}
        if config is None or any(value is None for value in fields.values()):
            raise ValueError(
                "The model's config.json has no latent token ids (latent_start_id / latent_pad_id / latent_end_id), "
                "so the thinker4d vLLM backend cannot decode imagery blocks with it. Convert the checkpoint first "
                "(`thinker4d.from_base`) and save it with `save_pretrained`."
            )
        k = getattr(config, "latent_size", None)
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"config.latent_size must be an integer >= 1, got {k!r}.")
        norm = getattr(config, "latent_norm", None)
        return cls(fields["latent_start_id"], fields["latent_pad_id"], fields["latent_end_id"], k, norm)

    def scale(self, vectors: torch.Tensor) -> torch.Tensor:
        """`vectors` scaled to L2 norm `latent_norm` along the last axis (in fp32), as thinker4d's decoder feeds them."""
        if self.latent_norm is None:
            return vectors
        return (torch.nn.functional.normalize(vectors.float(), dim=-1) * self.latent_norm).to(vectors.dtype)


class BlockState:
    """Where one sequence stands in the block schedule, advanced token by token.

    `open_pads` is `None` outside a block, else the number of `<|latent_pad|>` slots written since the block's
    `<|latent_start|>`; `blocks` counts the blocks opened (prompt included)."""

    def __init__(self, spec: LatentSpec):
        self.spec = spec
        self.blocks = 0
        self.open_pads: int | None = None

    def push(self, token: int) -> None:
        if token == self.spec.start_id:
            self.blocks += 1
            self.open_pads = 0
        elif token == self.spec.pad_id and self.open_pads is not None:
            self.open_pads += 1
        elif token == self.spec.end_id:
            self.open_pads = None

    def forced_token(self) -> int | None:
        """The token the sequence must write next (a slot or the block's end), or `None` when it samples."""
        if self.open_pads is None:
            return None
        return self.spec.pad_id if self.open_pads < self.spec.latent_size else self.spec.end_id


def check_prompt(prompt: list[int], spec: LatentSpec, row: int) -> None:
    """Clear errors for prompts the backend would decode wrongly: latent slots (their vectors are not in the ids) or
    a block left open with other tokens after its start."""
    if spec.pad_id in prompt:
        raise ValueError(
            f"prompt {row} has a <|latent_pad|> (id {spec.pad_id}) at index {prompt.index(spec.pad_id)}: the vLLM "
            "backend has no latent vector for a slot in a prompt. Cut the prompt before the block, or end it with "
            "<|latent_start|> so that the block is decoded."
        )
    state = BlockState(spec)
    for token in prompt:
        state.push(token)
    if state.open_pads is not None and prompt[-1] != spec.start_id:
        raise ValueError(
            f"prompt {row} opens an imagery block (<|latent_start|>, id {spec.start_id}) that is not closed and has "
            "other tokens after its start. End the prompt with the <|latent_start|> itself or close the block."
        )


@dataclass
class LatentCompletion:
    """One completion of [`LatentLLM.generate`].

    Args:
        prompt_token_ids (`list[int]`): the prompt.
        token_ids (`list[int]`): the completion (blocks appear as start, K `<|latent_pad|>`, end).
        latents (`torch.FloatTensor` of shape `(num_slots, hidden)`): the vector fed at each slot, in order (float32).
        latent_positions (`list[int]`): the index of each slot in `prompt_token_ids + token_ids`.
        imagery_blocks (`int`): imagery blocks in the prompt and completion.
        output: vLLM's `CompletionOutput` (log-probs, finish reason).
    """

    prompt_token_ids: list[int]
    token_ids: list[int]
    latents: torch.Tensor
    latent_positions: list[int] = field(default_factory=list)
    imagery_blocks: int = 0
    output: object = None
