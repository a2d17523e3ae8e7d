"""THE latent decoding loop. `model.generate` of the thinker4d classes and the Hub's `custom_generate/generate.py` both
call [`latent_sample`], which plugs into transformers' `generate(custom_generate=<callable>)`: transformers prepares the
inputs, cache, logits processors and stopping criteria exactly as for its own sampling loop, then runs this loop.

The file is longer than the other modules on purpose: `thinker4d.hub` copies it byte for byte into a Hub repository's
`custom_generate/`, where it must run on its own (it imports only torch and transformers), so the loop and everything
it calls (masks, mode dispatch, the hidden-state hook) live here together.

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
6. `generate` keeps transformers' contract: the loop returns the cache, attentions, hidden states, scores and logits
   as `_sample` does, decodes without a cache when `use_cache=False`, and takes streamers and stop strings. Beam
   search and assisted decoding cannot feed latents back; [`latent_generate`] runs transformers' own loops for them
   when `<|latent_start|>` cannot be produced, and refuses them with the reason otherwise (the paper's code decodes
   greedily or by sampling only).
7. A control the paper does not have: `latent_intervention` replaces every fed-back vector (zero, Gaussian noise of the
   same norm, another row's vector at the same block and slot, or a calibration mean), so an evaluation can measure
   how much the answers depend on the imagery ([`intervene_latents`]).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from dataclasses import dataclass

import torch
from transformers import (
    GenerationMixin,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteriaList,
    StopStringCriteria,
)
from transformers.generation.configuration_utils import GenerationMode
from transformers.generation.utils import GenerateDecoderOnlyOutput


@dataclass
class LatentGenerateOutput(GenerateDecoderOnlyOutput):
    """[`GenerateDecoderOnlyOutput`] plus the latent vectors fed back during decoding.

    Args:
        latents (`list[torch.FloatTensor]`): per row, a tensor of shape `(num_slots_i, hidden)` with the vector fed as
            the input embedding at each latent slot, in order.
        latent_positions (`list[torch.LongTensor]`): per row, the column index in `sequences` of each latent slot.
        imagery_blocks (`torch.LongTensor` of shape `(batch,)`): number of imagery blocks in each row's sequence
            (blocks already in `input_ids` count).
        intervened_slots (`torch.LongTensor` of shape `(batch,)`): number of each row's latent slots whose vector the
            `latent_intervention` replaced (0 with `"none"`; with `"shuffle"`, slots that had no donor row are not
            counted).
    """

    latents: list[torch.Tensor] | None = None
    latent_positions: list[torch.Tensor] | None = None
    imagery_blocks: torch.Tensor | None = None
    intervened_slots: torch.Tensor | None = None


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


LATENT_INTERVENTIONS = ("none", "zero", "gaussian", "shuffle", "mean")


def check_intervention_args(latent_intervention: str, latent_mean, latent_size: int) -> None:
    """Clear errors for bad `latent_intervention` / `latent_mean` values."""
    if latent_intervention not in LATENT_INTERVENTIONS:
        raise ValueError(
            f"latent_intervention must be one of {', '.join(LATENT_INTERVENTIONS)}, got {latent_intervention!r}."
        )
    if latent_intervention == "mean":
        if not isinstance(latent_mean, torch.Tensor) or latent_mean.dim() not in (1, 2):
            raise ValueError(
                "latent_intervention='mean' needs latent_mean: a tensor of shape (hidden,) or (latent_size, hidden), "
                "e.g. `mean_latent([out.latents for out in calibration_outputs], latent_size)`."
            )
        if latent_mean.dim() == 2 and latent_mean.shape[0] != latent_size:
            raise ValueError(
                f"latent_mean of shape {tuple(latent_mean.shape)} has one row per slot, but latent_size is "
                f"{latent_size}: pass a (latent_size, hidden) or a (hidden,) tensor."
            )
    elif latent_mean is not None:
        raise ValueError(f"latent_mean is used only with latent_intervention='mean', got {latent_intervention!r}.")


def mean_latent(latents, latent_size: int, per_slot: bool = True) -> torch.Tensor:
    """The mean fed-back vector of a calibration set, for `latent_intervention="mean"`.

    Args:
        latents: `LatentGenerateOutput.latents` lists (or their rows): tensors of shape `(num_slots_i, hidden)` whose
            slots come in whole blocks of `latent_size`, as decoding records them.
        latent_size (`int`): K, the slots per block.
        per_slot (`bool`, *optional*, defaults to `True`): one mean per slot position, `(latent_size, hidden)`;
            `False`: one mean over every slot, `(hidden,)`.

    Returns:
        `torch.FloatTensor` (fp32) of shape `(latent_size, hidden)` or `(hidden,)`.
    """
    rows = [r for item in latents for r in ([item] if isinstance(item, torch.Tensor) else item)]
    rows = [r for r in rows if r.shape[0]]
    if not rows:
        raise ValueError("mean_latent got no latent vectors: the calibration outputs opened no imagery block.")
    total, count = latent_sums(rows, latent_size)
    return (total / count[:, None]) if per_slot else total.sum(0) / count.sum()


def latent_sums(latents, latent_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(sum, count)`: the fp32 sum of the vectors at each slot position, `(latent_size, hidden)`, and how many were
    summed, `(latent_size,)`, over row tensors of shape `(num_slots_i, hidden)` (whole blocks)."""
    hidden = latents[0].shape[-1]
    total = torch.zeros(latent_size, hidden, dtype=torch.float32)
    count = torch.zeros(latent_size, dtype=torch.long)
    for row in latents:
        if row.shape[0] % latent_size:
            raise ValueError(f"A latents row holds {row.shape[0]} vectors, not whole blocks of {latent_size}.")
        blocks = row.detach().float().cpu().reshape(-1, latent_size, hidden)
        total += blocks.sum(0)
        count += blocks.shape[0]
    return total, count


def intervene_latents(
    vectors: torch.Tensor,
    rows: torch.Tensor,
    block: torch.Tensor,
    slot: torch.Tensor,
    latent_intervention: str,
    latent_mean: torch.Tensor | None,
    bank: dict,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The vectors fed at one decoding step under `latent_intervention`, and which rows were replaced.

    Args:
        vectors (`torch.Tensor` of shape `(batch, hidden)`): each row's real fed-back vector at this step.
        rows (`torch.BoolTensor` of shape `(batch,)`): the rows that feed a latent slot at this step.
        block, slot (`torch.LongTensor` of shape `(batch,)`): each row's imagery block (counted in its sequence, from
            0) and slot in that block (0 to K - 1).
        latent_intervention (`str`): `"zero"`, `"gaussian"`, `"shuffle"` or `"mean"` (see [`latent_sample`]).
        latent_mean (`torch.Tensor`, *optional*): `(hidden,)` or `(K, hidden)`, for `"mean"`.
        bank (`dict`): the real vectors seen so far, `{(block, slot): {row: vector}}`; `"shuffle"` reads and fills it.

    Returns:
        `(fed, replaced)`: `(batch, hidden)` vectors (the real ones where not replaced) and a `(batch,)` bool mask.
    """
    replaced = rows.clone()
    if latent_intervention == "zero":
        new = torch.zeros_like(vectors)
    elif latent_intervention == "gaussian":
        # drawn from torch's default generator, as the sampling is, so `torch.manual_seed` fixes it
        noise = torch.randn(vectors.shape, dtype=torch.float32, device=vectors.device)
        norm = vectors.float().norm(dim=-1, keepdim=True)
        new = (torch.nn.functional.normalize(noise, dim=-1) * norm).to(vectors.dtype)
    elif latent_intervention == "mean":
        mean = latent_mean.to(device=vectors.device, dtype=vectors.dtype)
        new = mean[slot.clamp(max=mean.shape[0] - 1)] if mean.dim() == 2 else mean.expand_as(vectors)
    else:  # shuffle
        batch = vectors.shape[0]
        active = rows.nonzero().flatten().tolist()
        for r in active:  # every row at this step is a possible donor for the others
            bank.setdefault((int(block[r]), int(slot[r])), {})[r] = vectors[r]
        new = vectors.clone()
        for r in active:
            donors = bank[(int(block[r]), int(slot[r]))]
            donor = next((d % batch for d in range(r + 1, r + batch) if d % batch in donors), None)
            if donor is None:
                replaced[r] = False
            else:
                new[r] = donors[donor]
    return torch.where(replaced[:, None], new, vectors), replaced


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
def capture_last_hidden_state(model):
    """Yield a dict whose `"hidden"` holds, after each forward of `model`, the output of its final norm: the last
    layer's post-norm hidden state at every position, `(batch, seq, hidden)`, whatever `logits_to_keep` is (the output
    layer's input is a slice of it). One forward hook on the decoder's final norm (`model.get_decoder().norm`: the
    language model of a Qwen-VL class, the `model.model` of a text-only causal LM), so the decoding loop, the forward's
    `output_last_hidden_state` and the RL log-prob recompute read the same tensor, on stock classes too.
    """
    get_decoder = getattr(model, "get_decoder", None)
    norm = getattr(get_decoder(), "norm", None) if callable(get_decoder) else None
    if norm is None:
        raise ValueError(f"Cannot find the final norm (model.get_decoder().norm) of {type(model).__name__}.")
    captured: dict[str, torch.Tensor] = {}
    handle = norm.register_forward_hook(lambda module, args, output: captured.update(hidden=output))
    try:
        yield captured
    finally:
        handle.remove()


class ImageryLimitError(RuntimeError):
    """Raised when a row tries to open more imagery blocks than `max_imagery_blocks` with `on_imagery_limit="error"`."""


# The modes `latent_sample` decodes; the others run transformers' own loops, which never feed latents back.
LATENT_GENERATION_MODES = (GenerationMode.GREEDY_SEARCH, GenerationMode.SAMPLE)
_LATENT_ARGS = ("max_imagery_blocks", "on_imagery_limit", "latent_intervention", "latent_mean")
_BEAMS = "several hypotheses per row are kept and reordered, and a block's fed-back hidden states cannot follow them"
_MODE_REASONS = {
    GenerationMode.BEAM_SEARCH: _BEAMS,
    GenerationMode.BEAM_SAMPLE: _BEAMS,
    GenerationMode.GROUP_BEAM_SEARCH: _BEAMS,
    GenerationMode.CONSTRAINED_BEAM_SEARCH: _BEAMS,
    GenerationMode.ASSISTED_GENERATION: (
        "drafted tokens are verified several at a time, while a block's latents are only known one step at a time"
    ),
    GenerationMode.CONTRASTIVE_SEARCH: "it runs from a Hub custom_generate repository that never feeds latents back",
    GenerationMode.DOLA_GENERATION: "it runs from a Hub custom_generate repository that never feeds latents back",
}


def check_imagery_args(max_imagery_blocks: int | None, on_imagery_limit: str) -> None:
    """Clear errors for bad `max_imagery_blocks` / `on_imagery_limit` values."""
    if on_imagery_limit not in ("suppress", "error"):
        raise ValueError(f"on_imagery_limit must be 'suppress' or 'error', got {on_imagery_limit!r}.")
    if max_imagery_blocks is not None and max_imagery_blocks < 0:
        raise ValueError(f"max_imagery_blocks must be >= 0 or None, got {max_imagery_blocks}.")


def prompt_block_state(input_ids: torch.Tensor, model_kwargs: dict, start_id: int, pad_id: int, end_id: int):
    """`(batch,)` long tensor: 1 for the rows whose input ends with `<|latent_start|>` (their next K inputs are latent
    slots), else 0. Raises a clear error for input that the loop would decode wrongly: a `<|latent_pad|>` slot that the
    cache does not hold (its latent vector is not in `input_ids`), or a block left open before its end."""
    cache = model_kwargs.get("cache", model_kwargs.get("past_key_values"))
    cached = cache.get_seq_length() if cache is not None else 0
    cached = cached if cached < input_ids.shape[1] else 0  # more cached than ids: the ids are the new tokens only
    uncached_slots = (input_ids[:, cached:] == pad_id).nonzero()
    if len(uncached_slots):
        row, column = uncached_slots[0].tolist()
        raise ValueError(
            f"input_ids row {row} has a <|latent_pad|> slot at column {cached + column} that the cache does not hold: "
            "generate would embed the <|latent_pad|> token there instead of the slot's latent vector. To go on from a "
            "previous output, pass its cache (`cache=out.cache`, with `return_dict_in_generate=True`) and a sequence "
            "that does not end inside a block; to score a sequence with latents, call the model with "
            "`latent_embeds=torch.cat(out.latents)`."
        )
    columns = torch.arange(input_ids.shape[1], device=input_ids.device)
    last_start = torch.where(input_ids == start_id, columns, -1).amax(dim=1)
    last_end = torch.where(input_ids == end_id, columns, -1).amax(dim=1)
    opens_now = input_ids[:, -1] == start_id
    left_open = (last_start > last_end) & ~opens_now
    if bool(left_open.any()):
        row = int(left_open.nonzero()[0])
        raise ValueError(
            f"input_ids row {row} has a <|latent_start|> at column {int(last_start[row])} with no <|latent_end|> after "
            "it, and other tokens in between: an imagery block is K latent slots right after its start. End the "
            "input with the <|latent_start|> itself (generate then decodes the block) or close the block."
        )
    return opens_now.long()


class LatentTokenMask(LogitsProcessor):
    """Sets the scores of `token_ids` to `-inf`. Given to transformers' own decoding loops, which never open an imagery
    block, so that they do not produce `<|latent_pad|>` / `<|latent_end|>` as text (nor `<|latent_start|>` when no
    block may open), as [`latent_sample`] does not."""

    def __init__(self, token_ids):
        self.token_ids = torch.tensor(sorted(set(token_ids)), dtype=torch.long)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        return scores.index_fill(-1, self.token_ids.to(scores.device), -float("inf"))


def _start_is_reachable(start_id: int, generation_config, max_imagery_blocks, on_imagery_limit) -> bool:
    if max_imagery_blocks == 0 and on_imagery_limit == "suppress":
        return False
    if start_id in (generation_config.suppress_tokens or []):
        return False
    return not any(list(words) == [start_id] for words in generation_config.bad_words_ids or [])


def latent_generate(model, *args, **kwargs):
    """What `generate` of the thinker4d classes and the Hub's `custom_generate/generate.py` run.

    Takes the arguments of `GenerationMixin.generate`, plus `max_imagery_blocks`, `on_imagery_limit`,
    `latent_intervention` and `latent_mean` (see [`latent_sample`]). Greedy search and sampling run [`latent_sample`], with `streamer`, `synced_gpus` and stop
    strings (`stop_strings` + `tokenizer`) handled as transformers handles them for its own loop. The other modes
    (beam search, assisted decoding, contrastive search, DoLa, continuous batching) cannot feed latents back: they run
    transformers' own loop, with `<|latent_pad|>` / `<|latent_end|>` masked, when `<|latent_start|>` cannot be
    produced (it is in `suppress_tokens` or `bad_words_ids`, or `max_imagery_blocks=0`), and raise a `ValueError`
    that says so otherwise.

    Example (the same call decodes with latent feedback on a stock-class model whose config carries the latent fields):

    ```python
    >>> import thinker4d
    >>> from thinker4d.tiny import build_tiny_model, build_tiny_processor
    >>> processor = build_tiny_processor("qwen2_5_vl")
    >>> model, processor = thinker4d.from_base(build_tiny_model("qwen2_5_vl", processor), processor)
    >>> ids = processor.tokenizer(["Which way?"], return_tensors="pt")
    >>> thinker4d.latent_generate(model, **ids, max_new_tokens=4, do_sample=False).shape
    torch.Size([1, 14])
    ```
    """
    start_id, pad_id, end_id, _ = latent_token_ids(model.config)
    call = inspect.signature(GenerationMixin.generate).bind(model, *args, **kwargs).arguments
    call.pop("self")
    call.update(call.pop("kwargs", {}))
    max_imagery_blocks = call.get("max_imagery_blocks")
    on_imagery_limit = call.get("on_imagery_limit", "suppress")
    check_imagery_args(max_imagery_blocks, on_imagery_limit)
    check_intervention_args(
        call.get("latent_intervention", "none"), call.get("latent_mean"), latent_token_ids(model.config)[3]
    )
    named = inspect.signature(GenerationMixin.generate).parameters
    extra = {key: value for key, value in call.items() if key not in named and key not in _LATENT_ARGS}
    generation_config, _ = model._prepare_generation_config(call.get("generation_config"), **extra)
    paged = call.get("cache_implementation") == "paged"
    mode = generation_config.get_generation_mode(call.get("assistant_model"))
    if not paged and mode in LATENT_GENERATION_MODES:
        if generation_config.stop_strings is not None and call.get("tokenizer") is not None:
            # transformers gives `tokenizer` (which stop strings need) to its own loops only: pass them as a criterion
            stop = StopStringCriteria(stop_strings=generation_config.stop_strings, tokenizer=call.pop("tokenizer"))
            call["stopping_criteria"] = StoppingCriteriaList([*(call.get("stopping_criteria") or []), stop])
            call["stop_strings"] = None
        # A callable `custom_generate` gets none of `streamer` / `synced_gpus` from transformers: bind its own values.
        own = model._extract_generation_mode_kwargs(None, {}, call.get("synced_gpus"), None, call.get("streamer"))
        loop = functools.partial(latent_sample, synced_gpus=own["synced_gpus"], streamer=call.get("streamer"))
        return GenerationMixin.generate(model, **call, custom_generate=loop)

    if _start_is_reachable(start_id, generation_config, max_imagery_blocks, on_imagery_limit):
        what = "continuous batching (cache_implementation='paged')" if paged else mode.value.replace("_", " ")
        if mode in _MODE_REASONS and _MODE_REASONS[mode] is _BEAMS and not paged:
            what = f"{what} (num_beams={generation_config.num_beams})"
        reason = "it never feeds latents back" if paged else _MODE_REASONS.get(mode, "it never feeds latents back")
        raise ValueError(
            f"{what.capitalize()} cannot decode latent imagery blocks: {reason}. It runs as in transformers when "
            f"<|latent_start|> (id {start_id}) cannot be produced: pass suppress_tokens=[{start_id}] (or "
            f"bad_words_ids=[[{start_id}]], or max_imagery_blocks=0). To decode imagery blocks, use greedy search or "
            "sampling: num_beams=1, no assistant_model / prompt_lookup_num_tokens."
        )
    masked = [pad_id, end_id] + ([start_id] if max_imagery_blocks == 0 else [])
    call = {key: value for key, value in call.items() if key not in _LATENT_ARGS}
    call["logits_processor"] = LogitsProcessorList([*(call.get("logits_processor") or []), LatentTokenMask(masked)])
    return GenerationMixin.generate(model, **call)


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
    latent_intervention: str = "none",
    latent_mean: torch.Tensor | None = None,
    **model_kwargs,
):
    """Greedy or multinomial decoding with per-row latent imagery blocks, with or without a KV cache.

    `model.generate(...)` of the thinker4d classes runs it for greedy search and sampling (see [`latent_generate`] for
    the other modes); `GenerationMixin.generate(model, ..., custom_generate=latent_sample)` runs it on any Qwen-VL
    model whose config carries the latent fields. Arguments are those of transformers' `_sample`, plus:

    Args:
        max_imagery_blocks (`int`, *optional*):
            The most imagery blocks one sequence may open (blocks already in `input_ids` count). `None`: no limit.
        on_imagery_limit (`str`, *optional*, defaults to `"suppress"`):
            What happens when a row samples `<|latent_start|>` past the limit. `"suppress"`: the token is masked once
            the limit is reached, so the row goes on in text. `"error"`: raise [`ImageryLimitError`].
        latent_intervention (`str`, *optional*, defaults to `"none"`):
            A control that replaces every vector fed back inside an imagery block, to measure how much the answer
            depends on the imagery. `"none"`: the row's own hidden state (normal decoding). `"zero"`: the zero
            vector. `"gaussian"`: Gaussian noise scaled to the norm of the real vector, drawn from torch's default
            generator (as the sampling is: `torch.manual_seed` fixes both). `"shuffle"`: the real vector of another
            row of the batch at the same block and slot (blocks counted per sequence from 0, input blocks included):
            the next such row after this one in cyclic batch order among the rows that reached that block and slot
            at this step or earlier (decoding is causal: a vector a row will feed later is not known yet). A slot with
            no such row (the first row to reach it, or a batch of one) keeps its own vector and is not counted in
            `intervened_slots`. `"mean"`: `latent_mean`. The replaced vector is what the model sees, so the next
            slot's hidden state is computed from it. Vectors are fed as given: `latent_norm` scales the real vector
            (and so the Gaussian's norm), not the zero or mean vector.
        latent_mean (`torch.Tensor` of shape `(hidden,)` or `(latent_size, hidden)`, *optional*):
            The calibration mean for `latent_intervention="mean"` (one vector, or one per slot position); see
            [`mean_latent`].

    Returns:
        `torch.LongTensor` of shape `(batch, seq)`, or a [`LatentGenerateOutput`] when `return_dict_in_generate=True`
        (with `scores`, `logits`, `attentions`, `hidden_states` and `cache` as transformers' `_sample` returns them).
        Its `latents` are the vectors actually fed at the slots (after the intervention), so a forward with
        `latent_embeds=torch.cat(out.latents)` reproduces the decoding's logits.
    """
    start_id, pad_id, end_id, k = latent_token_ids(model.config)
    latent_norm = getattr(model.config, "latent_norm", None)
    mode = generation_config.get_generation_mode()
    if mode not in LATENT_GENERATION_MODES:
        raise ValueError(
            f"latent_sample runs greedy search and sampling only, got {mode.value} ({_MODE_REASONS.get(mode, '')}). "
            "Call `model.generate` of a thinker4d class, or `latent_generate(model, ...)`: they run transformers' own "
            "loop for this mode when no imagery block can open."
        )
    check_imagery_args(max_imagery_blocks, on_imagery_limit)
    check_intervention_args(latent_intervention, latent_mean, k)

    pad_token_id = generation_config._pad_token_tensor
    return_dict = generation_config.return_dict_in_generate
    output_scores = return_dict and generation_config.output_scores
    output_logits = return_dict and generation_config.output_logits
    output_attentions = return_dict and generation_config.output_attentions
    output_hidden_states = return_dict and generation_config.output_hidden_states
    has_eos_stopping_criteria = any(hasattr(c, "eos_token_id") for c in stopping_criteria)
    do_sample = generation_config.do_sample
    # Without a cache every step re-runs the whole sequence (as transformers' `_sample` does), with the latents fed
    # so far written back at their slots.
    use_cache = model_kwargs.get("use_cache", True)
    scores = () if output_scores else None
    raw_logits = () if output_logits else None
    attentions = () if output_attentions else None
    hidden_states = () if output_hidden_states else None

    batch_size = input_ids.shape[0]
    device = input_ids.device
    if pad_token_id is not None:
        pad_token_id = pad_token_id.to(device)
    unfinished = torch.ones(batch_size, dtype=torch.long, device=device)
    # Per-row state: slots_left > 0 means the next input of the row is its own last hidden state. A row whose input
    # ends with `<|latent_start|>` (a continuation stopped right after opening a block) starts with its K slots.
    slots_left = prompt_block_state(input_ids, model_kwargs, start_id, pad_id, end_id) * k
    force_end = torch.zeros(batch_size, dtype=torch.bool, device=device)
    blocks = (input_ids == start_id).sum(dim=1)
    feed_hidden = torch.zeros(batch_size, dtype=torch.bool, device=device)
    latent_steps: list[tuple[torch.Tensor, torch.Tensor, int]] = []  # (rows mask, vectors, column)
    intervened = torch.zeros(batch_size, dtype=torch.long, device=device)
    shuffle_bank: dict = {}  # (block, slot) -> {row: real vector}, for latent_intervention="shuffle"

    def mask_latent_tokens(next_scores: torch.Tensor) -> None:
        limit = max_imagery_blocks if on_imagery_limit == "suppress" else None
        apply_sampling_masks(next_scores, model.config, blocks, limit, generation_config.suppress_tokens)

    embed = model.get_input_embeddings()
    # The hidden state to feed back is the last layer's post-norm output, read by a hook, so the loop also runs on
    # stock-class models whose config carries the latent fields (the Hub custom_generate path).
    with capture_last_hidden_state(model) as captured:
        outputs = model._prefill(
            input_ids, generation_config, model_kwargs, is_first_iteration=not generation_config.is_assistant
        )
        prefill_consumed = False
        this_peer_finished = False
        last_hidden = None
        while model._has_unfinished_sequences(this_peer_finished, synced_gpus, device=device):
            if prefill_consumed:
                model_inputs = model.prepare_inputs_for_generation(
                    input_ids, next_sequence_length=1 if use_cache else None, **model_kwargs
                )
                step_embeds = embed(model_inputs["input_ids"].to(embed.weight.device))
                if use_cache:
                    step_embeds = torch.where(
                        feed_hidden[:, None, None].to(step_embeds.device),
                        last_hidden[:, None, :].to(step_embeds),
                        step_embeds,
                    )
                else:
                    for rows, vectors, column in latent_steps:
                        step_embeds[:, column] = torch.where(
                            rows[:, None].to(step_embeds.device), vectors.to(step_embeds), step_embeds[:, column]
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
            if output_attentions:
                attentions += (outputs.attentions,)
            if output_hidden_states:
                hidden_states += (outputs.hidden_states,)
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
            if latent_intervention != "none" and bool(feed_hidden.any()):
                last_hidden, replaced = intervene_latents(
                    last_hidden,
                    feed_hidden,
                    blocks - 1,
                    k - slots_left,
                    latent_intervention,
                    latent_mean,
                    shuffle_bank,
                )
                intervened += replaced.long()
            if (return_dict or not use_cache) and bool(feed_hidden.any()):
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
        return LatentGenerateOutput(
            sequences=input_ids,
            scores=scores,
            logits=raw_logits,
            attentions=attentions,
            hidden_states=hidden_states,
            cache=model_kwargs.get("cache", model_kwargs.get("past_key_values")),
            latents=latents,
            latent_positions=positions,
            imagery_blocks=blocks,
            intervened_slots=intervened,
        )
