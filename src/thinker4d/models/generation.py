"""THE latent decoding loop. `model.generate` of the thinker4d classes and the Hub's `custom_generate/generate.py` both
call [`latent_sample`], which plugs into transformers' `generate(custom_generate=<callable>)`: transformers prepares the
inputs, cache, logits processors and stopping criteria exactly as for its own sampling loop, then runs this loop.

Paper: https://huggingface.co/papers/2605.05997 (inference with recurrent mental imagery). What differs from the paper's
code (docs/paper_differences.md, section 3):

1. Latent mode is tracked **per row**: each row enters a block when *it* samples `<|latent_start|>`, feeds back its
   own previous last-layer post-norm hidden state (scaled to `config.latent_norm` when the config sets it) for
   exactly K steps (writing `<|latent_pad|>` ids), then gets `<|latent_end|>` forced. Rows outside a block decode
   normal tokens in the same forward step. The paper's DIFT/eval
   loop switches the whole batch (correct only at batch size 1) and its RL loop feeds pad embeddings to mid-block rows
   whenever another row starts a block.
2. Token ids and K come from the model config; nothing is hard-coded.
3. `<|latent_pad|>` is never sampled as text, and `<|latent_end|>` cannot be sampled outside a block (their logits are
   masked), so every block in the output is well formed: start, K pads, end.
4. A per-sequence limit on imagery blocks (`max_imagery_blocks`): once reached, `<|latent_start|>` is masked for that
   row (`on_imagery_limit="suppress"`, default) or generation stops with a clear error (`"error"`).
5. With `return_dict_in_generate=True` the output carries, per row, the fed-back latent vectors and their positions
   in `sequences`, so RL can re-insert them when it recomputes log-probs (the paper's RL code re-embeds the pad token).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from transformers.generation.utils import GenerateDecoderOnlyOutput


@dataclass
class LatentGenerateOutput(GenerateDecoderOnlyOutput):
    """[`GenerateDecoderOnlyOutput`] plus the latent vectors fed back during decoding.

    Args:
        latents (`list[torch.FloatTensor]`): per row, a tensor of shape `(num_slots_i, hidden)` with the vector fed as
            the input embedding at each latent slot, in order.
        latent_positions (`list[torch.LongTensor]`): per row, the column index in `sequences` of each latent slot.
        imagery_blocks (`torch.LongTensor` of shape `(batch,)`): number of imagery blocks opened per row.
    """

    latents: list[torch.Tensor] | None = None
    latent_positions: list[torch.Tensor] | None = None
    imagery_blocks: torch.Tensor | None = None


def latent_token_ids(config) -> tuple[int, int, int, int]:
    """`(latent_start_id, latent_pad_id, latent_end_id, latent_size)` read from a model config, with a clear error."""
    start = getattr(config, "latent_start_id", None)
    pad = getattr(config, "latent_pad_id", None)
    end = getattr(config, "latent_end_id", None)
    k = getattr(config, "latent_size", None)
    if start is None or pad is None or end is None:
        raise ValueError(
            "The model config has no latent token ids (latent_start_id / latent_pad_id / latent_end_id). Convert the "
            "checkpoint first: `model, processor = thinker4d.from_base(model_or_id, processor)`."
        )
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"config.latent_size must be an integer >= 1, got {k!r}.")
    return int(start), int(pad), int(end), int(k)


def scale_latents(vectors: torch.Tensor, latent_norm: float | None) -> torch.Tensor:
    """`vectors` (`(..., hidden)`) scaled to L2 norm `latent_norm` along the last axis (in fp32); unchanged when
    `latent_norm` is `None`. Idempotent, so vectors recorded after scaling can be placed again."""
    if latent_norm is None:
        return vectors
    return (torch.nn.functional.normalize(vectors.float(), dim=-1) * latent_norm).to(vectors.dtype)


def apply_sampling_masks(
    scores: torch.Tensor,
    config,
    blocks_opened: torch.Tensor | None = None,
    max_imagery_blocks: int | None = None,
    suppress_tokens=None,
    fill_value: float = -float("inf"),
) -> torch.Tensor:
    """Write `fill_value`, in place, at the scores of every token the latent decoder never samples, and return `scores`.

    The one rule the decoder samples under and the RL recompute scores under: `<|latent_pad|>` and `<|latent_end|>`
    are never sampled (the decoder writes them itself), `<|latent_start|>` is masked where a row has opened
    `max_imagery_blocks` blocks, and the `suppress_tokens` of the generation config (trl suppresses `<|image_pad|>`,
    the 4DRL trainer `<|video_pad|>`) are masked everywhere.

    Args:
        scores (`torch.Tensor` of shape `(..., vocab)`): logits, or a bias vector of shape `(vocab,)`.
        config: the model config carrying the latent token ids.
        blocks_opened (`torch.LongTensor` of shape `scores.shape[:-1]`, *optional*): imagery blocks opened before
            each position; with `max_imagery_blocks`, `<|latent_start|>` is masked where it reaches the limit.
        max_imagery_blocks (`int`, *optional*): the block limit; `None` means no limit.
        suppress_tokens (`list[int]`, *optional*): further token ids that are never sampled.
        fill_value (`float`, *optional*, defaults to `-inf`): the masked score (a finite one keeps a bias usable after
            a division by the temperature).
    """
    start_id, pad_id, end_id, _ = latent_token_ids(config)
    # Ids past the vocabulary are ignored, as transformers' SuppressTokensLogitsProcessor ignores them.
    suppressed = [t for t in suppress_tokens or [] if 0 <= t < scores.shape[-1]]
    scores[..., [pad_id, end_id, *suppressed]] = fill_value
    if max_imagery_blocks is not None and blocks_opened is not None:
        at_limit = (blocks_opened >= max_imagery_blocks).to(scores.device)
        scores[..., start_id] = scores[..., start_id].masked_fill(at_limit, fill_value)
    return scores


@contextlib.contextmanager
def capture_lm_head_input(model):
    """Yield a dict whose `"hidden"` holds, after each forward of `model`, the input of its output layer: the last
    layer's post-norm hidden state (sliced like the logits when `logits_to_keep` is set). A forward pre-hook reads it,
    so this works on stock-class models too."""
    captured: dict[str, torch.Tensor] = {}
    handle = model.get_output_embeddings().register_forward_pre_hook(
        lambda module, args: captured.update(hidden=args[0])
    )
    try:
        yield captured
    finally:
        handle.remove()


class ImageryLimitError(RuntimeError):
    """Raised when a row tries to open more imagery blocks than `max_imagery_blocks` with `on_imagery_limit="error"`."""


def latent_sample(
    model,
    input_ids: torch.LongTensor,
    logits_processor,
    stopping_criteria,
    generation_config,
    synced_gpus: bool = False,
    streamer=None,
    max_imagery_blocks: int | None = None,
    on_imagery_limit: str = "suppress",
    **model_kwargs,
):
    """Greedy or multinomial decoding with per-row latent imagery blocks and a KV cache.

    Call it through `model.generate(...)` (thinker4d classes do so by default) or
    `GenerationMixin.generate(model, ..., custom_generate=latent_sample)` for any Qwen-VL model whose config carries
    the latent fields. Arguments are those of transformers' `_sample`, plus:

    Args:
        max_imagery_blocks (`int`, *optional*):
            The most imagery blocks one sequence may open. `None` means no limit.
        on_imagery_limit (`str`, *optional*, defaults to `"suppress"`):
            What happens when a row samples `<|latent_start|>` past the limit. `"suppress"`: the token is masked once
            the limit is reached, so the row goes on in text. `"error"`: raise [`ImageryLimitError`].

    Returns:
        `torch.LongTensor` of shape `(batch, seq)`, or a [`LatentGenerateOutput`] when `return_dict_in_generate=True`.
    """
    start_id, pad_id, end_id, k = latent_token_ids(model.config)
    latent_norm = getattr(model.config, "latent_norm", None)
    if generation_config.num_beams not in (None, 1):
        raise ValueError(
            "Latent decoding supports greedy search and sampling only; set num_beams=1 (beam search cannot carry "
            "per-beam fed-back hidden states)."
        )
    if on_imagery_limit not in ("suppress", "error"):
        raise ValueError(f"on_imagery_limit must be 'suppress' or 'error', got {on_imagery_limit!r}.")
    if max_imagery_blocks is not None and max_imagery_blocks < 0:
        raise ValueError(f"max_imagery_blocks must be >= 0 or None, got {max_imagery_blocks}.")

    pad_token_id = generation_config._pad_token_tensor
    return_dict = generation_config.return_dict_in_generate
    output_scores = return_dict and generation_config.output_scores
    output_logits = return_dict and generation_config.output_logits
    has_eos_stopping_criteria = any(hasattr(c, "eos_token_id") for c in stopping_criteria)
    do_sample = generation_config.do_sample
    scores = () if output_scores else None
    raw_logits = () if output_logits else None

    batch_size = input_ids.shape[0]
    device = input_ids.device
    if pad_token_id is not None:
        pad_token_id = pad_token_id.to(device)
    unfinished = torch.ones(batch_size, dtype=torch.long, device=device)
    # Per-row state: slots_left > 0 means the next input of the row is its own last hidden state.
    slots_left = torch.zeros(batch_size, dtype=torch.long, device=device)
    force_end = torch.zeros(batch_size, dtype=torch.bool, device=device)
    blocks = torch.zeros(batch_size, dtype=torch.long, device=device)
    feed_hidden = torch.zeros(batch_size, dtype=torch.bool, device=device)
    latent_steps: list[tuple[torch.Tensor, torch.Tensor, int]] = []  # (rows mask, vectors, column)

    def mask_latent_tokens(next_scores: torch.Tensor) -> None:
        limit = max_imagery_blocks if on_imagery_limit == "suppress" else None
        apply_sampling_masks(next_scores, model.config, blocks, limit, generation_config.suppress_tokens)

    embed = model.get_input_embeddings()
    # The hidden state to feed back is the input of lm_head (last layer, post-norm), read by a forward pre-hook, so
    # the loop also runs on stock-class models whose config carries the latent fields (the Hub custom_generate path).
    with capture_lm_head_input(model) as captured:
        outputs = model._prefill(input_ids, generation_config, model_kwargs, is_first_iteration=True)
        prefill_consumed = False
        this_peer_finished = False
        last_hidden = None
        while model._has_unfinished_sequences(this_peer_finished, synced_gpus, device=device):
            if prefill_consumed:
                model_inputs = model.prepare_inputs_for_generation(input_ids, next_sequence_length=1, **model_kwargs)
                step_embeds = embed(model_inputs["input_ids"].to(embed.weight.device))
                step_embeds = torch.where(
                    feed_hidden[:, None, None].to(step_embeds.device),
                    last_hidden[:, None, :].to(step_embeds),
                    step_embeds,
                )
                # Qwen3-VL accepts ids or embeddings, not both; positions come from the generation kwargs.
                model_inputs["input_ids"] = None
                model_inputs["inputs_embeds"] = step_embeds
                outputs = model(**model_inputs, return_dict=True)
            prefill_consumed = True
            model_kwargs = model._update_model_kwargs_for_generation(outputs, model_kwargs, is_encoder_decoder=False)
            if synced_gpus and this_peer_finished:
                continue

            last_hidden = scale_latents(captured["hidden"][:, -1].detach(), latent_norm)
            next_token_logits = outputs.logits[:, -1].to(copy=True, dtype=torch.float32, device=device)
            if output_logits:  # the model's own distribution, before the latent masks and logits processors
                raw_logits += (next_token_logits.clone(),)
            # Latent slots are never text, a block cannot be closed before it was opened, and rows at their block limit
            # cannot open another one. The masks go on before the user's processors, so that top-k / top-p choose among
            # tokens that can be sampled (a top-p set holding only `<|latent_end|>` would otherwise leave the row with
            # nothing), and again after them, so that no processor brings a masked token back.
            mask_latent_tokens(next_token_logits)
            next_token_scores = logits_processor(input_ids, next_token_logits)
            mask_latent_tokens(next_token_scores)
            in_slots = slots_left > 0
            # Rows inside a block, at a forced `<|latent_end|>` or finished throw their sampled token away below.
            discarded = in_slots | force_end | ~unfinished.bool()
            # A row whose processors left only masked tokens (one that forces `<|latent_start|>` past the block limit,
            # say) goes on in text with the model's own choice among the tokens it may produce.
            stuck = ~discarded & torch.isneginf(next_token_scores).all(dim=-1)
            if bool(stuck.any()):  # rare: rebuild the model's masked scores (processors may have edited them in place)
                allowed = outputs.logits[:, -1].to(copy=True, dtype=torch.float32, device=device)
                mask_latent_tokens(allowed)
                next_token_scores = torch.where(stuck[:, None], allowed, next_token_scores)
            if output_scores:
                scores += (next_token_scores,)
            # Discarded rows sample from finite scores, so what a processor left them cannot break the batch's sampling.
            next_token_scores = torch.where(discarded[:, None], torch.zeros_like(next_token_scores), next_token_scores)
            if do_sample:
                probs = torch.nn.functional.softmax(next_token_scores, dim=-1)
                sampled = torch.multinomial(probs, num_samples=1).squeeze(1)
            else:
                sampled = torch.argmax(next_token_scores, dim=-1)

            # Rows inside a block: the sampled token is discarded; a slot (fed with this step's hidden) or the forced end.
            next_tokens = torch.where(in_slots, torch.full_like(sampled, pad_id), sampled)
            next_tokens = torch.where(force_end, torch.full_like(sampled, end_id), next_tokens)
            opens = (~in_slots) & (~force_end) & (sampled == start_id) & unfinished.bool()
            if max_imagery_blocks is not None and on_imagery_limit == "error":
                over = opens & (blocks >= max_imagery_blocks)
                if bool(over.any()):
                    rows = over.nonzero().flatten().tolist()
                    raise ImageryLimitError(
                        f"Row(s) {rows} tried to open imagery block {max_imagery_blocks + 1} but max_imagery_blocks="
                        f"{max_imagery_blocks}. Raise max_imagery_blocks, or pass on_imagery_limit='suppress' to keep "
                        "decoding in text once the limit is reached."
                    )
            if has_eos_stopping_criteria:
                next_tokens = next_tokens * unfinished + pad_token_id * (1 - unfinished)

            # State for the next step. A row that just produced a slot feeds `last_hidden` (hidden at the previous
            # position) as the input embedding of that slot.
            alive = unfinished.bool()
            feed_hidden = in_slots & alive
            if return_dict and bool(feed_hidden.any()):
                latent_steps.append((feed_hidden.clone(), last_hidden.clone(), input_ids.shape[1]))
            new_slots_left = torch.where(in_slots, slots_left - 1, slots_left)
            force_end = in_slots & (new_slots_left == 0) & alive
            new_slots_left = torch.where(opens, torch.full_like(slots_left, k), new_slots_left)
            slots_left = torch.where(alive, new_slots_left, torch.zeros_like(new_slots_left))
            blocks = blocks + opens.long()

            input_ids = torch.cat([input_ids, next_tokens[:, None]], dim=-1)
            if streamer is not None:
                streamer.put(next_tokens.cpu())
            unfinished = unfinished & ~stopping_criteria(input_ids, scores)
            this_peer_finished = not bool(unfinished.any())
            del outputs

        if streamer is not None:
            streamer.end()
        if not return_dict:
            return input_ids

        hidden = last_hidden.shape[-1]
        latents = [last_hidden.new_zeros((0, hidden)) for _ in range(batch_size)]
        positions = [torch.zeros(0, dtype=torch.long, device=device) for _ in range(batch_size)]
        if latent_steps:
            rows_mask = torch.stack([m for m, _, _ in latent_steps], dim=1)  # (batch, steps)
            vectors = torch.stack([v for _, v, _ in latent_steps], dim=1)  # (batch, steps, hidden)
            cols = torch.tensor([c for _, _, c in latent_steps], device=device)
            for row in range(batch_size):
                sel = rows_mask[row]
                latents[row] = vectors[row][sel]
                positions[row] = cols[sel]
        cache = model_kwargs.get("past_key_values")
        return LatentGenerateOutput(
            sequences=input_ids,
            scores=scores,
            logits=raw_logits,
            past_key_values=cache,
            latents=latents,
            latent_positions=positions,
            imagery_blocks=blocks,
        )
