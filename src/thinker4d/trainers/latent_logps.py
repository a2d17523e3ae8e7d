"""Log-probs of latent-imagery completions, for 4DRL: the training forward's (with the rollout's latents re-inserted
at the slots) and the rollout's own (from the logits `generate` recorded). Both apply the decoder's masks through
[`~thinker4d.models.generation.apply_sampling_masks`], so they score tokens under the distribution that sampled them;
`tests/test_grpo.py` checks that the two agree.
"""

from __future__ import annotations

import contextlib

import torch
from trl.kernels import ChunkedLogProbFunction

from thinker4d.models.conversion import unwrap_latent_model
from thinker4d.models.generation import (
    apply_sampling_masks,
    capture_last_hidden_state,
    latent_token_ids,
    scale_latents,
)
from thinker4d.models.imagery import place_latents
from thinker4d.models.modeling_thinker4d_base import build_mm_token_type_ids


_MASKED_LOGIT = -1.0e4  # exp() underflows to exactly 0 in fp16/bf16/fp32, and it stays finite after / temperature
_CHUNK_SIZE = 32768


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

    The forward is the thinker4d model's latent path (the positions generation used), or, for a text-only causal LM
    whose config carries the latent fields, the latents written into its input embeddings (positions counted from
    each row's first non-padding token, as vLLM and generation count them); and the log-softmax is trl's
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
    core = unwrap_latent_model(model, text_only=True)
    start_id, pad_id, end_id, _ = latent_token_ids(core.config)
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
        mm["mm_token_type_ids"] = build_mm_token_type_ids(input_ids, core.config)
    autocast = autocast if autocast is not None else contextlib.nullcontext

    with capture_last_hidden_state(core) as captured, autocast():
        # logits_to_keep=1: the stock head projects one position; the kernel below scores the completion from the
        # final norm's output, which covers every position.
        flat = flat.to(device=embed.weight.device, dtype=embed.weight.dtype)
        if hasattr(core, "latent_ids"):
            inputs = {"input_ids": input_ids, "latent_embeds": flat}
        else:  # a text-only latent LM: no latent path of its own
            embeds = embed(input_ids.to(embed.weight.device))
            flat = scale_latents(flat, getattr(core.config, "latent_norm", None))
            positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            inputs = {"inputs_embeds": place_latents(embeds, input_ids, flat, pad_id), "position_ids": positions}
        model(**inputs, attention_mask=attention_mask, logits_to_keep=1, use_cache=False, **mm)
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


__all__ = ["latent_per_token_logps", "sampling_logps"]
