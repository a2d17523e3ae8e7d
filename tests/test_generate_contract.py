"""`generate` of the thinker4d classes keeps transformers' contract: with no imagery block in play it is the stock class's
`generate` (same weights, same arguments, same outputs, cache types and errors); with blocks in play every argument
works or raises a clear error."""

import inspect
import warnings

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList
from transformers.cache_utils import DynamicCache, StaticCache
from transformers.generation.streamers import BaseStreamer

import thinker4d
from _latent_helpers import ForceImageryAt
from test_models import image_inputs, latent_ids, video_inputs


def stock_twin(model):
    """The stock transformers class with the same config values and weights."""
    stock_cls = type(model).__mro__[2]  # (thinker4d class, mixin, stock class, ...)
    assert stock_cls.__module__.startswith("transformers.")
    config = stock_cls.config_class(**{k: v for k, v in model.config.to_dict().items() if k != "model_type"})
    config._attn_implementation = model.config._attn_implementation
    stock = stock_cls(config).eval()
    stock.load_state_dict(model.state_dict())
    stock.generation_config = model.generation_config
    return stock


@pytest.fixture
def pair(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    return model, stock_twin(model), processor


def no_latent_tokens(model, sequences):
    return not torch.isin(sequences, torch.tensor(latent_ids(model))).any()


class ForceStartAtLength(LogitsProcessor):
    """Force `<|latent_start|>` when the sequence is `length` long, whatever the call (so a continuation sees it too)."""

    def __init__(self, start_id, length):
        self.start_id, self.length = start_id, length

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] == self.length:
            scores = torch.full_like(scores, -float("inf"))
            scores[:, self.start_id] = 0.0
        return scores


def continuation_inputs(inputs, out):
    """Inputs that go on from `out` (a dict output with its cache): the vision inputs are in the cache already."""
    n_new = out.sequences.shape[1] - inputs["input_ids"].shape[1]
    cont = {"input_ids": out.sequences}
    cont["attention_mask"] = torch.nn.functional.pad(inputs["attention_mask"], (0, n_new), value=1)
    cont["mm_token_type_ids"] = torch.nn.functional.pad(inputs["mm_token_type_ids"], (0, n_new), value=0)
    return cont


def assert_caches_equal(a, b):
    assert type(a) is type(b)
    assert a.get_seq_length() == b.get_seq_length() > 0
    for layer_a, layer_b in zip(a.layers, b.layers, strict=True):
        torch.testing.assert_close(layer_a.keys, layer_b.keys)
        torch.testing.assert_close(layer_a.values, layer_b.values)


# ----------------------------------------------------------------------------------------------------- cache
@pytest.mark.parametrize("cache_implementation", [None, "static"])
def test_returned_cache_is_the_stock_one_and_continues(pair, cache_implementation):
    model, stock, processor = pair
    inputs = image_inputs(processor, 2)
    kw = dict(do_sample=False, return_dict_in_generate=True, cache_implementation=cache_implementation)
    ref = stock.generate(**inputs, max_new_tokens=6, **kw)
    out = model.generate(**inputs, max_new_tokens=6, **kw)
    assert no_latent_tokens(model, ref.sequences) and torch.equal(out.sequences, ref.sequences)
    assert isinstance(out.cache, StaticCache if cache_implementation else DynamicCache)
    assert_caches_equal(out.cache, ref.cache)
    if cache_implementation == "static":  # sized for its own call: nothing to go on with
        return
    # go on from a shorter call's cache: the same tokens as one longer call
    part = model.generate(**inputs, max_new_tokens=4, **kw)
    cont = model.generate(**continuation_inputs(inputs, part), cache=part.cache, max_new_tokens=2, **kw)
    assert torch.equal(cont.sequences, ref.sequences)


def test_continuation_through_imagery_blocks(tiny_model_and_processor):
    """Going on from a cache: a block opened in the first call is decoded in the second; a sequence that ends inside a
    block (its fed-back latents are not in input_ids) is refused with the reason."""
    model, processor = tiny_model_and_processor
    start, pad, end = latent_ids(model)
    k = model.config.latent_size
    inputs = video_inputs(processor, 1)
    at = inputs["input_ids"].shape[1] + 2  # the third generated token is <|latent_start|>
    kw = dict(do_sample=False, return_dict_in_generate=True)

    def force():
        return LogitsProcessorList([ForceStartAtLength(start, at)])

    full = model.generate(**inputs, max_new_tokens=12, logits_processor=force(), **kw)
    new = full.sequences[0, inputs["input_ids"].shape[1] :].tolist()
    assert new[2 : 2 + k + 2] == [start] + [pad] * k + [end]
    # stop right after the start token (the next call decodes the block), and right after the block
    for first in (3, 2 + k + 2):
        part = model.generate(**inputs, max_new_tokens=first, logits_processor=force(), **kw)
        cont = model.generate(
            **continuation_inputs(inputs, part),
            cache=part.cache,
            max_new_tokens=12 - first,
            logits_processor=force(),
            **kw,
        )
        assert torch.equal(cont.sequences, full.sequences), f"continuation after {first} tokens differs"
        assert cont.imagery_blocks.tolist() == [1]  # the block in the input counts
        latents = torch.cat([part.latents[0], cont.latents[0]])
        torch.testing.assert_close(latents, full.latents[0], atol=1e-5, rtol=1e-4)
    part = model.generate(**inputs, max_new_tokens=5, logits_processor=force(), **kw)  # ends on the second slot
    with pytest.raises(ValueError, match="<\\|latent_pad\\|> slot at column .* that the cache does not hold"):
        model.generate(**continuation_inputs(inputs, part), cache=part.cache, max_new_tokens=4, **kw)


# ----------------------------------------------------------------------------------------------------- use_cache=False
@pytest.mark.parametrize("kind", ["image", "text"])
def test_use_cache_false_matches_stock(pair, kind):
    model, stock, processor = pair
    if kind == "image":
        inputs = image_inputs(processor, 2)
    else:
        processor.tokenizer.padding_side = "left"
        inputs = processor.tokenizer(["hello there", "how does the camera move?"], return_tensors="pt", padding=True)
    ref = stock.generate(**inputs, max_new_tokens=8, do_sample=False, use_cache=False)
    assert no_latent_tokens(model, ref)
    assert torch.equal(model.generate(**inputs, max_new_tokens=8, do_sample=False, use_cache=False), ref)


def test_use_cache_false_with_imagery_blocks_matches_the_cached_run(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    start, pad, _ = latent_ids(model)
    inputs = video_inputs(processor, 2)
    runs = []
    for use_cache in (True, False):
        force = ForceImageryAt(start, processor.tokenizer.pad_token_id)
        runs.append(
            model.generate(
                **inputs,
                max_new_tokens=18,
                do_sample=False,
                use_cache=use_cache,
                return_dict_in_generate=True,
                logits_processor=LogitsProcessorList([force]),
            )
        )
    cached, uncached = runs
    assert uncached.cache is None
    assert torch.equal(uncached.sequences, cached.sequences)
    assert cached.imagery_blocks.tolist() == [2, 2]
    for row in range(2):
        torch.testing.assert_close(uncached.latents[row], cached.latents[row], atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------------------------------- step outputs
def test_step_outputs_match_stock(pair):
    """Attentions, hidden states and raw logits are the stock ones; the scores too, except `<|latent_pad|>` /
    `<|latent_end|>`, which are masked (never text outside a block)."""
    model, stock, processor = pair
    model.set_attn_implementation("eager")  # attention weights need eager attention, in both classes
    stock.set_attn_implementation("eager")
    inputs = image_inputs(processor, 2)
    kw = dict(
        max_new_tokens=5,
        do_sample=False,
        return_dict_in_generate=True,
        output_attentions=True,
        output_hidden_states=True,
        output_scores=True,
        output_logits=True,
    )
    ref = stock.generate(**inputs, **kw)
    out = model.generate(**inputs, **kw)
    assert no_latent_tokens(model, ref.sequences) and torch.equal(out.sequences, ref.sequences)
    for name in ("attentions", "hidden_states"):
        ours, theirs = getattr(out, name), getattr(ref, name)
        assert ours is not None and len(ours) == len(theirs) == 5, name
        for step_ours, step_theirs in zip(ours, theirs):
            assert len(step_ours) == len(step_theirs)
            for a, b in zip(step_ours, step_theirs):
                assert a.shape == b.shape
                torch.testing.assert_close(a, b)
    assert out.attentions[0][0].shape[-2] == inputs["input_ids"].shape[1] and out.attentions[1][0].shape[-2] == 1
    for a, b in zip(out.logits, ref.logits, strict=True):
        torch.testing.assert_close(a, b)
    _, pad, end = latent_ids(model)
    text = torch.ones(ref.scores[0].shape[-1], dtype=torch.bool)
    text[[pad, end]] = False
    for a, b in zip(out.scores, ref.scores, strict=True):
        torch.testing.assert_close(a[:, text], b[:, text])
        assert torch.isneginf(a[:, ~text]).all()


def test_streamer_and_stop_strings_match_stock(pair):
    model, stock, processor = pair
    inputs = image_inputs(processor, 1)

    class Recorder(BaseStreamer):
        def __init__(self):
            self.puts, self.ended = [], False

        def put(self, value):
            self.puts.append(value.tolist())

        def end(self):
            self.ended = True

    streams = []
    for m in (stock, model):
        streams.append(Recorder())
        m.generate(**inputs, max_new_tokens=5, do_sample=False, streamer=streams[-1])
    assert streams[1].puts == streams[0].puts and len(streams[1].puts) == 6 and streams[1].ended
    ref = stock.generate(**inputs, max_new_tokens=12, do_sample=False)
    texts = [processor.tokenizer.decode(t) for t in ref[0, inputs["input_ids"].shape[1] + 1 :]]
    stop = next(text for text in texts if text.isascii() and text.isprintable() and text.strip())
    kw = dict(max_new_tokens=12, do_sample=False, stop_strings=[stop], tokenizer=processor.tokenizer)
    ref = stock.generate(**inputs, **kw)
    assert ref.shape[1] < inputs["input_ids"].shape[1] + 12, "precondition: the stop string stops the stock run"
    assert torch.equal(model.generate(**inputs, **kw), ref)


# ----------------------------------------------------------------------------------------------------- other modes
def test_assisted_decoding_runs_stock_when_no_block_can_open(pair):
    model, stock, processor = pair
    start = model.config.latent_start_id
    processor.tokenizer.padding_side = "left"
    inputs = processor.tokenizer(["hello there hello there"], return_tensors="pt")
    for assist in (dict(prompt_lookup_num_tokens=2), dict(assistant_model=stock_twin(model))):
        with pytest.raises(ValueError, match=f"Assisted generation cannot .* suppress_tokens=\\[{start}\\]"):
            model.generate(**inputs, max_new_tokens=8, do_sample=False, **assist)
        kw = dict(max_new_tokens=8, do_sample=False, suppress_tokens=[start], return_dict_in_generate=True)
        ref = stock.generate(**inputs, **assist, **kw)
        out = model.generate(**inputs, **assist, **kw)
        assert no_latent_tokens(model, ref.sequences)
        assert torch.equal(out.sequences, ref.sequences)
        assert torch.equal(out.sequences, stock.generate(**inputs, **kw).sequences)  # assisted = greedy, as it should


@pytest.mark.parametrize("do_sample", [False, True])
def test_beam_search_runs_stock_when_no_block_can_open(pair, do_sample):
    model, stock, processor = pair
    start = model.config.latent_start_id
    inputs = image_inputs(processor, 2)
    kw = dict(max_new_tokens=6, num_beams=3, num_return_sequences=2, do_sample=do_sample, return_dict_in_generate=True)
    kw.update(output_scores=True)
    with pytest.raises(ValueError, match="Beam .* \\(num_beams=3\\) cannot decode latent imagery blocks"):
        model.generate(**inputs, **kw)
    with pytest.raises(ValueError, match="num_beams=1"):
        model.generate(**inputs, **kw, max_imagery_blocks=0, on_imagery_limit="error")  # a row could still try
    torch.manual_seed(0)
    ref = stock.generate(**inputs, suppress_tokens=[start], **kw)
    assert no_latent_tokens(model, ref.sequences)
    for unreachable in (dict(suppress_tokens=[start]), dict(bad_words_ids=[[start]]), dict(max_imagery_blocks=0)):
        torch.manual_seed(0)
        out = model.generate(**inputs, **unreachable, **kw)
        assert torch.equal(out.sequences, ref.sequences), unreachable
        torch.testing.assert_close(out.sequences_scores, ref.sequences_scores)
    # the same route on a stock-class model (the Hub custom_generate path)
    torch.manual_seed(0)
    out = thinker4d.latent_generate(stock, **inputs, max_imagery_blocks=0, **kw)
    assert torch.equal(out.sequences, ref.sequences)


def test_other_modes_are_refused_with_the_reason_while_a_block_can_open(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    ids = processor.tokenizer(["hello"], return_tensors="pt")
    with pytest.raises(ValueError, match="Contrastive search cannot decode latent imagery blocks: it runs from a Hub"):
        model.generate(**ids, max_new_tokens=2, penalty_alpha=0.6, top_k=4)
    with pytest.raises(ValueError, match="Continuous batching .* cannot decode latent imagery blocks"):
        model.generate(**ids, max_new_tokens=2, cache_implementation="paged")
    # latent_sample itself, given as custom_generate, says what to call instead
    with pytest.raises(ValueError, match="latent_sample runs greedy search and sampling only, got beam_search"):
        model.generate(**ids, max_new_tokens=2, num_beams=2, custom_generate=thinker4d.latent_sample)


def test_forward_takes_the_cache_under_the_stock_name(pair):
    """The forward names its cache argument as the stock forward does (`cache`, the old `past_key_values` still
    accepted), so `generate` passes it without a deprecation warning at every step, and the latent path sees it."""
    model, stock, processor = pair
    ours = inspect.signature(model.forward).parameters
    assert "cache" in ours and "cache" in inspect.signature(stock.forward).parameters
    assert "past_key_values" not in ours
    inputs = image_inputs(processor, 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert not [w for w in caught if "past_key_values" in str(w.message)]
    ids = processor.tokenizer("a<|latent_start|><|latent_pad|><|latent_end|>", return_tensors="pt")["input_ids"]
    latents = torch.zeros(1, model.config.text_config.hidden_size)
    for name in ("cache", "past_key_values"):
        cache = model(input_ids=ids[:, :1], use_cache=True).cache
        with pytest.raises(ValueError, match="latent_embeds cannot be combined with a non-empty cache"):
            model(input_ids=ids, latent_embeds=latents, **{name: cache})
