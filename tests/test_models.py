"""Model core: conversion, latent decoding (parity, batch independence, feedback correctness), forward re-insertion,
save/load, and bad input."""

import numpy as np
import pytest
import torch
from transformers import AutoModelForImageTextToText, GenerationMixin, LogitsProcessorList

import thinker4d
from _latent_helpers import ForceImageryAt
from conftest import random_frames, random_image
from thinker4d.models import ImageryLimitError, check_latent_tokens, pool_imagery
from thinker4d.prompting import build_messages, video_kwargs
from thinker4d.tiny import build_tiny_model, build_tiny_processor


QUESTIONS = ["How does the camera move?", "Is the red cube getting closer to the camera over time?"]
OPTIONS = ["Pan Left", "Pan Right", "Tilt Up", "Tilt Down"]


def video_inputs(processor, n_rows=1, frames=(4, 4), seeds=(0, 1)):
    processor.tokenizer.padding_side = "left"
    texts, videos = [], []
    for i in range(n_rows):
        msgs = build_messages(QUESTIONS[i % 2] * (1 + i), OPTIONS)  # different lengths -> left padding
        texts.append(processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False))
        videos.append(random_frames(frames[i % 2], 56, 56, seed=seeds[i % 2]))
    return processor(text=texts, return_tensors="pt", padding=True, **video_kwargs(processor, videos, 2.0))


def image_inputs(processor, n_rows=1):
    processor.tokenizer.padding_side = "left"
    texts, images = [], []
    for i in range(n_rows):
        msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where? " * (1 + 2 * i)}]}]
        texts.append(processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False))
        images.append(random_image(56, 56, seed=i))
    return processor(text=texts, images=images, return_tensors="pt", padding=True)


def stock_generate(model, inputs, **kw):
    # transformers' own sampling loop on the same weights (the thinker4d class does not override `_sample`)
    return GenerationMixin.generate(model, **inputs, **kw)


def strip_left_pad(row_ids, attention_row):
    return row_ids[int((attention_row == 0).sum()) :]


def latent_ids(model):
    return model.config.latent_start_id, model.config.latent_pad_id, model.config.latent_end_id


def stock_twin(model):
    """The stock transformers class with the same config (latent fields included) and weights as `model`."""
    stock_cls = type(model).__mro__[2]  # (thinker4d class, mixin, stock class, ...)
    assert stock_cls.__module__.startswith("transformers.")
    config = stock_cls.config_class(**{k: v for k, v in model.config.to_dict().items() if k != "model_type"})
    stock = stock_cls(config).eval()
    stock.load_state_dict(model.state_dict())
    stock.generation_config = model.generation_config
    return stock


def assert_same(a, b, path="output"):
    """Element-wise equality of two model outputs: tensors, caches, nested outputs and tuples."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{path} differs"
    elif hasattr(a, "layers"):  # a Cache
        assert len(a.layers) == len(b.layers), path
        for i, (x, y) in enumerate(zip(a.layers, b.layers)):
            assert_same(x.keys, y.keys, f"{path}.layers[{i}].keys")
            assert_same(x.values, y.values, f"{path}.layers[{i}].values")
    elif isinstance(a, dict):  # a ModelOutput
        assert list(a.keys()) == list(b.keys()), f"{path}: fields {list(a.keys())} != {list(b.keys())}"
        for key in a:
            assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


# ----------------------------------------------------------------------------------------------------- conversion
def test_from_base_adds_tokens_and_mean_inits_rows(backbone):
    processor = build_tiny_processor(backbone)
    base = build_tiny_model(backbone, processor)
    n_old = len(processor.tokenizer)
    old_embed = base.get_input_embeddings().weight.detach().clone()
    old_head = base.get_output_embeddings().weight.detach().clone()
    model, processor = thinker4d.from_base(base, processor, latent_size=3)
    assert isinstance(model, thinker4d.models.THINKER4D_CLASSES)
    start, pad, end = latent_ids(model)
    tok = processor.tokenizer
    assert (start, pad, end) == tuple(
        tok.convert_tokens_to_ids(["<|latent_start|>", "<|latent_pad|>", "<|latent_end|>"])
    )
    assert model.config.latent_size == 3
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    assert emb.shape[0] == n_old + 3
    for i in (start, pad, end):
        torch.testing.assert_close(emb[i], old_embed[:n_old].mean(0))
        torch.testing.assert_close(head[i], old_head[:n_old].mean(0))
    torch.testing.assert_close(emb[:n_old], old_embed[:n_old])
    # each latent token is exactly one id in text
    ids = tok("a<|latent_start|><|latent_pad|><|latent_end|>b", add_special_tokens=False)["input_ids"]
    assert ids[1:4] == [start, pad, end]


def test_from_base_does_not_shrink_a_padded_matrix():
    """Qwen pads the embedding past the tokenizer; the new tokens fall inside the padding and must still be mean-init."""
    processor = build_tiny_processor("qwen2_5_vl")
    config_vocab = len(processor.tokenizer) + 13
    base = build_tiny_model("qwen2_5_vl", processor)
    base.resize_token_embeddings(config_vocab, mean_resizing=False)
    with torch.no_grad():  # make the padding rows obviously untrained
        base.get_input_embeddings().weight[len(processor.tokenizer) :] = 100.0
    n_old = len(processor.tokenizer)
    old = base.get_input_embeddings().weight.detach().clone()
    model, processor = thinker4d.from_base(base, processor)
    emb = model.get_input_embeddings().weight
    assert emb.shape[0] == config_vocab  # not shrunk to the tokenizer length
    for i in latent_ids(model):
        assert i < config_vocab
        torch.testing.assert_close(emb[i], old[:n_old].mean(0))


def test_save_and_reload_round_trip(tmp_path, backbone):
    processor = build_tiny_processor(backbone)
    model, processor = thinker4d.from_base(build_tiny_model(backbone, processor), processor, latent_size=2)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path, local_files_only=True).eval()
    assert type(loaded) is type(model)
    assert latent_ids(loaded) == latent_ids(model) and loaded.config.latent_size == 2
    from transformers import AutoProcessor

    proc2 = AutoProcessor.from_pretrained(tmp_path, local_files_only=True)
    check_latent_tokens(proc2.tokenizer, loaded.config)
    inputs = video_inputs(processor)

    def force(m):
        return LogitsProcessorList([ForceImageryAt(m.config.latent_start_id, processor.tokenizer.pad_token_id)])

    a = model.generate(**inputs, max_new_tokens=14, do_sample=False, logits_processor=force(model))
    b = loaded.generate(**inputs, max_new_tokens=14, do_sample=False, logits_processor=force(loaded))
    assert torch.equal(a, b)
    assert (a == model.config.latent_pad_id).sum() == 4  # two blocks of K = 2 were decoded
    # a saved thinker4d folder also goes through from_base unchanged
    again, _ = thinker4d.from_base(str(tmp_path))
    assert latent_ids(again) == latent_ids(model)


# ----------------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("kind", ["video", "image"])
@pytest.mark.parametrize("n_rows", [1, 2])
def test_parity_with_stock_generate_when_no_imagery(tiny_model_and_processor, kind, n_rows):
    model, processor = tiny_model_and_processor
    inputs = video_inputs(processor, n_rows) if kind == "video" else image_inputs(processor, n_rows)
    if n_rows > 1:
        assert (inputs["attention_mask"] == 0).any(), "the batch should be left padded"
    ref = stock_generate(model, inputs, max_new_tokens=16, do_sample=False)
    assert not torch.isin(ref, torch.tensor(latent_ids(model))).any(), "precondition: stock output has no latent ids"
    out = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    assert torch.equal(out, ref)


def test_parity_sampling_same_seed(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    inputs = video_inputs(processor, 2)
    torch.manual_seed(3)
    ref = stock_generate(model, inputs, max_new_tokens=12, do_sample=True, temperature=1.0, top_k=0, top_p=1.0)
    if torch.isin(ref, torch.tensor(latent_ids(model))).any():
        pytest.skip("sampled a latent token; parity only holds without imagery")
    torch.manual_seed(3)
    out = model.generate(**inputs, max_new_tokens=12, do_sample=True, temperature=1.0, top_k=0, top_p=1.0)
    assert torch.equal(out, ref)


def test_eos_stops_rows_independently(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    inputs = video_inputs(processor, 2)
    ref = stock_generate(model, inputs, max_new_tokens=10, do_sample=False)
    # make the first generated token of row 0 the eos: that row must stop, row 1 must go on as before
    eos = processor.tokenizer.eos_token_id
    first = ref[0, inputs["input_ids"].shape[1]].item()
    out = model.generate(**inputs, max_new_tokens=10, do_sample=False, eos_token_id=[eos, first])
    gen = out[:, inputs["input_ids"].shape[1] :]
    assert gen[0, 0].item() == first and (gen[0, 1:] == processor.tokenizer.pad_token_id).all()


# ----------------------------------------------------------------------------------------------------- latents
def test_batch_rows_match_rows_alone(tiny_model_and_processor):
    """Rows open imagery blocks at different steps; the batch returns exactly what each row returns alone."""
    model, processor = tiny_model_and_processor
    start, pad, end = latent_ids(model)
    k = model.config.latent_size
    pad_tok = processor.tokenizer.pad_token_id
    batch = video_inputs(processor, 2)
    kw = dict(max_new_tokens=24, do_sample=False, return_dict_in_generate=True)
    out = model.generate(**batch, logits_processor=LogitsProcessorList([ForceImageryAt(start, pad_tok)]), **kw)
    opened = []
    for row in range(2):
        single = video_inputs(processor, 2)
        single = {
            key: (
                v[row : row + 1][:, (single["attention_mask"][row] == 1)]
                if key in ("input_ids", "attention_mask", "mm_token_type_ids")
                else v
            )
            for key, v in single.items()
        }
        # keep only this row's video
        n_tok = [int(g.prod()) for g in single["video_grid_thw"]]
        offs = [0, n_tok[0], n_tok[0] + n_tok[1]]
        single["pixel_values_videos"] = single["pixel_values_videos"][offs[row] : offs[row + 1]]
        single["video_grid_thw"] = single["video_grid_thw"][row : row + 1]
        if "second_per_grid_ts" in single:
            single["second_per_grid_ts"] = single["second_per_grid_ts"][row : row + 1]
        alone = model.generate(**single, logits_processor=LogitsProcessorList([ForceImageryAt(start, pad_tok)]), **kw)
        batch_row = strip_left_pad(out.sequences[row], batch["attention_mask"][row])
        assert torch.equal(batch_row, alone.sequences[0]), f"row {row} differs between batch and alone"
        torch.testing.assert_close(out.latents[row], alone.latents[0], atol=1e-5, rtol=1e-4)
        shift = int((batch["attention_mask"][row] == 0).sum())
        assert torch.equal(out.latent_positions[row] - shift, alone.latent_positions[0])
        opened.append(alone.sequences[0].tolist().index(start))
    assert opened[0] != opened[1], "precondition: rows open their first block at different steps"
    # every block is start, K pads, end
    for row in range(2):
        seq = out.sequences[row].tolist()
        for i, t in enumerate(seq):
            if t == start:
                assert seq[i + 1 : i + 1 + k] == [pad] * k and seq[i + 1 + k] == end
        assert out.imagery_blocks[row] == 2
        assert torch.equal(out.latent_positions[row], (out.sequences[row] == pad).nonzero().flatten())


def slow_latent_decode(model, inputs, steps, force):
    """Reference: no cache; every step re-runs the whole sequence with the latents decided so far."""
    start, pad, end = latent_ids(model)
    k = model.config.latent_size
    ids = inputs["input_ids"].clone()
    mask = inputs["attention_mask"].clone()
    mm = {key: v for key, v in inputs.items() if key not in ("input_ids", "attention_mask", "mm_token_type_ids")}
    mm_types = inputs["mm_token_type_ids"]
    latents, slots_left, force_end = [], 0, False
    for _ in range(steps):
        mtt = torch.cat([mm_types, mm_types.new_zeros(1, ids.shape[1] - mm_types.shape[1])], 1)
        lat = torch.stack(latents) if latents else torch.zeros(0, model.config.text_config.hidden_size)
        out = model(
            input_ids=ids,
            attention_mask=mask,
            mm_token_type_ids=mtt,
            latent_embeds=lat,
            output_last_hidden_state=True,
            **mm,
        )
        h = out.last_hidden_state[0, -1]
        logits = out.logits[0, -1].clone()
        logits[pad] = logits[end] = -float("inf")
        logits = force(ids, logits[None])[0]
        if slots_left > 0:
            nxt = pad
            latents.append(h)
            slots_left -= 1
            force_end = slots_left == 0
        elif force_end:
            nxt, force_end = end, False
        else:
            nxt = int(logits.argmax())
            if nxt == start:
                slots_left = k
        ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
        mask = torch.cat([mask, torch.ones(1, 1, dtype=mask.dtype)], 1)
    return ids, latents


def test_fed_back_vectors_equal_previous_hidden_state(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    start, pad, _ = latent_ids(model)
    pad_tok = processor.tokenizer.pad_token_id
    inputs = video_inputs(processor, 1)
    fast = model.generate(
        **inputs,
        max_new_tokens=18,
        do_sample=False,
        return_dict_in_generate=True,
        logits_processor=LogitsProcessorList([ForceImageryAt(start, pad_tok)]),
    )
    ref_ids, ref_latents = slow_latent_decode(model, inputs, 18, ForceImageryAt(start, pad_tok))
    assert torch.equal(fast.sequences, ref_ids)
    assert len(ref_latents) == fast.latents[0].shape[0] == 2 * model.config.latent_size
    torch.testing.assert_close(fast.latents[0], torch.stack(ref_latents), atol=1e-5, rtol=1e-4)
    # and the latents are not the pad-token embedding
    pad_emb = model.get_input_embeddings().weight[pad]
    assert (fast.latents[0] - pad_emb).abs().max() > 1e-2


def test_forward_with_rollout_latents_reproduces_decoding_logits(tiny_model_and_processor):
    """Re-inserting the recorded latents gives the logits the rollout sampled from (what RL needs)."""
    model, processor = tiny_model_and_processor
    start, pad, end = latent_ids(model)
    inputs = video_inputs(processor, 2)
    out = model.generate(
        **inputs,
        max_new_tokens=20,
        do_sample=False,
        return_dict_in_generate=True,
        output_logits=True,
        logits_processor=LogitsProcessorList([ForceImageryAt(start, processor.tokenizer.pad_token_id)]),
    )
    seqs = out.sequences
    prompt_len = inputs["input_ids"].shape[1]
    mask = torch.cat([inputs["attention_mask"], torch.ones(2, seqs.shape[1] - prompt_len, dtype=torch.long)], 1)
    mm = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
    mtt = torch.cat(
        [inputs["mm_token_type_ids"], inputs["mm_token_type_ids"].new_zeros(2, seqs.shape[1] - prompt_len)], 1
    )
    with torch.no_grad():
        fwd = model(
            input_ids=seqs, attention_mask=mask, mm_token_type_ids=mtt, latent_embeds=torch.cat(out.latents), **mm
        )
    rollout = torch.stack(out.logits, 1)  # (batch, new_tokens, vocab): logits predicting each generated token
    recomputed = fwd.logits[:, prompt_len - 1 : -1]
    text = ~torch.isin(seqs[:, prompt_len:], torch.tensor([pad]))
    diff = (rollout.log_softmax(-1) - recomputed.float().log_softmax(-1)).abs().amax(-1)
    assert diff[text].max() < 1e-4
    # the paper's RL forward (pad-token embedding at the slots) does not reproduce them
    with torch.no_grad():
        wrong = model(input_ids=seqs, attention_mask=mask, mm_token_type_ids=mtt, **mm)
    diff_wrong = (
        (rollout.log_softmax(-1) - wrong.logits[:, prompt_len - 1 : -1].float().log_softmax(-1)).abs().amax(-1)
    )
    assert diff_wrong[text].max() > 1e-3


def test_latent_norm_scales_every_slot_vector(tiny_model_and_processor):
    """With config.latent_norm the fed-back vectors are scaled in decoding, and a forward with the recorded latents
    (scaled again: the scaling is idempotent) still reproduces the rollout's logits."""
    from thinker4d.models.generation import scale_latents

    model, processor = tiny_model_and_processor
    start, pad, _ = latent_ids(model)
    pad_tok = processor.tokenizer.pad_token_id
    inputs = video_inputs(processor, 1)
    force = LogitsProcessorList([ForceImageryAt(start, pad_tok)])
    kwargs = dict(max_new_tokens=18, do_sample=False, return_dict_in_generate=True, output_logits=True)
    plain = model.generate(**inputs, logits_processor=force, **kwargs)
    model.config.latent_norm = 0.7
    scaled = model.generate(**inputs, logits_processor=force, **kwargs)
    norms = scaled.latents[0].float().norm(dim=-1)
    torch.testing.assert_close(norms, torch.full_like(norms, 0.7), atol=1e-4, rtol=1e-4)
    # the first slot's vector is the (scaled) hidden state before it: the same direction as without scaling
    torch.testing.assert_close(scaled.latents[0][0], scale_latents(plain.latents[0][0], 0.7), atol=1e-5, rtol=1e-4)
    ref_ids, ref_latents = slow_latent_decode(model, inputs, 18, ForceImageryAt(start, pad_tok))
    assert torch.equal(scaled.sequences, ref_ids)
    torch.testing.assert_close(scaled.latents[0], scale_latents(torch.stack(ref_latents), 0.7), atol=1e-5, rtol=1e-4)
    # later slots see scaled inputs, so the vectors differ from the unscaled run
    assert (scale_latents(plain.latents[0][1:], 0.7) - scaled.latents[0][1:]).abs().max() > 1e-3

    seqs, prompt_len = scaled.sequences, inputs["input_ids"].shape[1]
    mask = torch.ones_like(seqs)
    mm = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
    mtt = torch.cat(
        [inputs["mm_token_type_ids"], inputs["mm_token_type_ids"].new_zeros(1, seqs.shape[1] - prompt_len)], 1
    )
    with torch.no_grad():
        fwd = model(input_ids=seqs, attention_mask=mask, mm_token_type_ids=mtt, latent_embeds=scaled.latents[0], **mm)
    rollout = torch.stack(scaled.logits, 1)
    text = seqs[:, prompt_len:] != pad
    diff = (rollout.log_softmax(-1) - fwd.logits[:, prompt_len - 1 : -1].float().log_softmax(-1)).abs().amax(-1)
    assert diff[text].max() < 1e-4


def forward_with_latents(model, inputs, out, latents):
    """A forward over `out.sequences` (a batched generation from `inputs`) with `latents` placed at the slots."""
    seqs, prompt_len, n = out.sequences, inputs["input_ids"].shape[1], out.sequences.shape[0]
    new = seqs.shape[1] - prompt_len
    mask = torch.cat([inputs["attention_mask"], torch.ones(n, new, dtype=torch.long)], 1)
    mtt = torch.cat([inputs["mm_token_type_ids"], inputs["mm_token_type_ids"].new_zeros(n, new)], 1)
    mm = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
    with torch.no_grad():
        return model(
            input_ids=seqs,
            attention_mask=mask,
            mm_token_type_ids=mtt,
            latent_embeds=latents,
            output_last_hidden_state=True,
            **mm,
        )


@pytest.mark.parametrize("intervention", ["zero", "mean", "gaussian", "shuffle"])
def test_latent_intervention_equals_manual_replacement_per_row(tiny_model_and_processor, intervention):
    """Each row of a batch decodes as a forward with the replaced vectors placed by hand: the same logits at every
    text position, and the fed vectors are the intervention's (zero / the given mean / noise with the real vector's
    norm / the real vector of the next row, in cyclic order, that reached the same block and slot no later)."""
    from thinker4d.models.generation import scale_latents

    model, processor = tiny_model_and_processor
    start, pad, _ = latent_ids(model)
    k, hidden = model.config.latent_size, model.config.text_config.hidden_size
    inputs = video_inputs(processor, 3)
    schedule = [(1, 9), (3, 12), (1, 15)]  # rows 0 and 2 open their first block together; row 0 leads the second

    def force():
        keys = iter(range(3))
        return LogitsProcessorList(
            [ForceImageryAt(start, processor.tokenizer.pad_token_id, schedule=lambda _: schedule[next(keys)])]
        )

    kw = dict(max_new_tokens=22, do_sample=False, return_dict_in_generate=True, output_logits=True)
    mean = torch.randn(k, hidden, generator=torch.Generator().manual_seed(3)) if intervention == "mean" else None
    torch.manual_seed(0)
    out = model.generate(**inputs, logits_processor=force(), latent_intervention=intervention, latent_mean=mean, **kw)
    assert out.imagery_blocks.tolist() == [2, 2, 2]
    if intervention in ("zero", "mean"):  # by hand from the sequences alone
        slots = [int((row == pad).sum()) for row in out.sequences]
        fill = [torch.zeros(n, hidden) if mean is None else mean.repeat(n // k, 1) for n in slots]
        manual = torch.cat(fill)
        torch.testing.assert_close(torch.cat(out.latents), manual)
    else:
        manual = torch.cat(out.latents)
    fwd = forward_with_latents(model, inputs, out, manual)
    prompt_len = inputs["input_ids"].shape[1]
    rollout = torch.stack(out.logits, 1)
    text = out.sequences[:, prompt_len:] != pad
    diff = (rollout.log_softmax(-1) - fwd.logits[:, prompt_len - 1 : -1].float().log_softmax(-1)).abs().amax(-1)
    assert diff[text].max() < 1e-4
    # the real vector of each slot: the (scaled) hidden state before it, computed from the fed vectors
    real = [
        scale_latents(fwd.last_hidden_state[r, out.latent_positions[r] - 1], model.config.latent_norm)
        for r in range(3)
    ]
    if intervention == "gaussian":
        for r in range(3):
            torch.testing.assert_close(out.latents[r].norm(dim=-1), real[r].norm(dim=-1), atol=1e-4, rtol=1e-4)
            assert torch.nn.functional.cosine_similarity(out.latents[r], real[r], dim=-1).abs().max() < 0.9
        assert out.intervened_slots.tolist() == [2 * k] * 3
    if intervention == "shuffle":
        expected, replaced = [], []
        for r in range(3):
            for i, column in enumerate(out.latent_positions[r].tolist()):
                donors = [
                    d
                    for d in ((r + 1) % 3, (r + 2) % 3)
                    if int(out.latent_positions[d][i]) <= column  # slot i of row d is the same block and slot
                ]
                expected.append(real[donors[0]][i] if donors else real[r][i])
                replaced.append(bool(donors))
        torch.testing.assert_close(torch.cat(out.latents), torch.stack(expected), atol=1e-5, rtol=1e-4)
        per_row = torch.tensor(replaced).reshape(3, 2 * k).sum(1)
        assert out.intervened_slots.tolist() == per_row.tolist()
        assert per_row.tolist() == [k, 2 * k, 2 * k]  # row 0 is the first to reach its second block: no donor


def test_latent_intervention_validation(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    ids = processor.tokenizer(["Which way?"], return_tensors="pt")
    with pytest.raises(ValueError, match="latent_intervention must be one of"):
        model.generate(**ids, max_new_tokens=2, latent_intervention="blur")
    with pytest.raises(ValueError, match="needs latent_mean"):
        model.generate(**ids, max_new_tokens=2, latent_intervention="mean")
    with pytest.raises(ValueError, match="one row per slot"):
        model.generate(**ids, max_new_tokens=2, latent_intervention="mean", latent_mean=torch.zeros(3, 8))


def test_mean_latent_per_slot_and_overall():
    from thinker4d.models.generation import mean_latent

    a = torch.arange(8.0).reshape(4, 2)  # two blocks of K = 2
    b = torch.ones(2, 2)
    torch.testing.assert_close(mean_latent([[a], [b]], 2), torch.tensor([[5 / 3, 7 / 3], [3.0, 11 / 3]]))
    torch.testing.assert_close(mean_latent([a, b], 2, per_slot=False), torch.tensor([7 / 3, 3.0]))
    with pytest.raises(ValueError, match="no latent vectors"):
        mean_latent([torch.zeros(0, 2)], 2)


def test_latent_norm_validation(backbone):
    from thinker4d import Thinker4DQwen2_5_VLConfig, Thinker4DQwen3VLConfig

    cls = Thinker4DQwen2_5_VLConfig if backbone == "qwen2_5_vl" else Thinker4DQwen3VLConfig
    assert cls(latent_norm=0.5).latent_norm == 0.5
    for bad in (0.0, -1.0, True):
        with pytest.raises(ValueError, match="latent_norm must be a positive number"):
            cls(latent_norm=bad)


def test_max_imagery_blocks_suppress_and_error(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    start, pad, _ = latent_ids(model)
    inputs = video_inputs(processor, 1)
    always = ForceImageryAt(start, processor.tokenizer.pad_token_id, schedule=lambda key: range(0, 100))
    out = model.generate(
        **inputs,
        max_new_tokens=20,
        do_sample=False,
        logits_processor=LogitsProcessorList([always]),
        max_imagery_blocks=1,
        return_dict_in_generate=True,
    )
    assert out.imagery_blocks.tolist() == [1]
    assert (out.sequences == start).sum() == 1
    always = ForceImageryAt(start, processor.tokenizer.pad_token_id, schedule=lambda key: range(0, 100))
    with pytest.raises(ImageryLimitError, match="Raise max_imagery_blocks"):
        model.generate(
            **inputs,
            max_new_tokens=20,
            do_sample=False,
            logits_processor=LogitsProcessorList([always]),
            max_imagery_blocks=1,
            on_imagery_limit="error",
        )


def forced_generate(model, inputs, processor, **kw):
    """`generate` with one extra logits processor, no top-k, returning the dict output."""
    return model.generate(
        **inputs, top_k=0, logits_processor=LogitsProcessorList([processor]), return_dict_in_generate=True, **kw
    )


def test_top_p_sampling_when_the_model_prefers_a_masked_latent_token(tiny_model_and_processor):
    # A model that puts almost all its mass on <|latent_end|> (a DIFT model does so at the last slot of a block): top-p
    # 0.9 keeps that token alone, and masking it afterwards left a row with no token (multinomial raised on NaN). The
    # masks now go on before the processors as well, so top-p picks among the tokens a row may produce.
    model, processor = tiny_model_and_processor
    start, pad, end = latent_ids(model)

    def prefer_end(module, args, output):
        output = output.clone()
        output[..., end] += 1e4
        return output

    handle = model.lm_head.register_forward_hook(prefer_end)
    try:
        inputs = video_inputs(processor, 2)
        force = ForceImageryAt(start, processor.tokenizer.pad_token_id)
        torch.manual_seed(0)
        out = forced_generate(model, inputs, force, max_new_tokens=20, do_sample=True, top_p=0.9)
    finally:
        handle.remove()
    new = out.sequences[:, inputs["input_ids"].shape[1] :]
    assert out.imagery_blocks.tolist() == [2, 2]  # the forced blocks opened and closed
    for row in new.tolist():
        for i, token in enumerate(row):
            if token == end:  # <|latent_end|> only where a block of K = 4 slots closes
                assert row[i - 5 : i] == [start, pad, pad, pad, pad]


def test_a_processor_that_leaves_only_masked_tokens_falls_back_to_the_model(tiny_model_and_processor):
    # A processor forcing <|latent_start|> at every step, with the block limit reached: the row goes on in text with the
    # model's own choice (it used to take token 0 when greedy and raise on NaN when sampling).
    model, processor = tiny_model_and_processor
    start, pad, end = latent_ids(model)
    inputs = video_inputs(processor, 1)
    runs = []
    for do_sample in (False, True):
        always = ForceImageryAt(start, processor.tokenizer.pad_token_id, schedule=lambda key: range(0, 100))
        out = forced_generate(
            model, inputs, always, max_new_tokens=12, do_sample=do_sample, max_imagery_blocks=1, output_logits=True
        )
        runs.append((out.sequences[0, inputs["input_ids"].shape[1] :].tolist(), out.logits))
    for tokens, _ in runs:
        assert tokens[:6] == [start, pad, pad, pad, pad, end]  # the one block allowed, then text
        assert not {start, pad, end} & set(tokens[6:])
    tokens, logits = runs[0]
    for step in range(6, 12):  # greedy: the model's best token other than the three latent tokens
        own = logits[step][0].clone()
        own[[start, pad, end]] = -float("inf")
        assert tokens[step] == int(own.argmax())
    assert not {start, pad, end} & set(runs[1][6:])


def test_the_fallback_of_a_row_left_with_only_masked_tokens_keeps_suppress_tokens(tiny_model_and_processor):
    # The fallback chooses among the tokens the sampler may produce, so the generation config's suppress_tokens (trl
    # suppresses <|image_pad|>) stay out of it too.
    model, processor = tiny_model_and_processor
    start, pad, end = latent_ids(model)
    inputs = video_inputs(processor, 1)
    prompt_len = inputs["input_ids"].shape[1]

    def fallback_tokens(**kw):
        always = ForceImageryAt(start, processor.tokenizer.pad_token_id, schedule=lambda key: range(0, 100))
        out = forced_generate(model, inputs, always, max_new_tokens=9, do_sample=False, max_imagery_blocks=1, **kw)
        return out.sequences[0, prompt_len + 6 :].tolist()  # after the one block allowed

    first = fallback_tokens()[0]
    assert first not in (start, pad, end)
    assert first not in fallback_tokens(suppress_tokens=[first])


# ----------------------------------------------------------------------------------------------------- imagery
def test_imagery_targets_and_teacher_forcing(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    k = model.config.latent_size
    overlays = processor.image_processor(
        images=[random_image(56, 56, 5), random_image(56, 56, 6)], return_tensors="pt"
    )
    targets = model.get_imagery_targets(overlays["pixel_values"], overlays["image_grid_thw"])
    assert targets.shape == (2, k, model.config.text_config.hidden_size)
    assert not targets.requires_grad
    feats = model.model.get_image_features(overlays["pixel_values"], overlays["image_grid_thw"]).pooler_output
    n0 = feats[0].shape[0]
    torch.testing.assert_close(targets[0, 0], feats[0][: n0 // k].mean(0))
    # the targets land at the slots when the overlay pixels are given to forward
    text = "hi<|latent_start|>" + "<|latent_pad|>" * k + "<|latent_end|>ok<|latent_start|>" + "<|latent_pad|>" * k
    text += "<|latent_end|>"
    ids = processor.tokenizer(text, return_tensors="pt")["input_ids"]
    out = model(
        input_ids=ids,
        imagery_pixel_values=overlays["pixel_values"],
        imagery_grid_thw=overlays["image_grid_thw"],
        output_last_hidden_state=True,
    )
    torch.testing.assert_close(out.latent_embeds, targets.reshape(-1, targets.shape[-1]))
    assert out.last_hidden_state.shape == (1, ids.shape[1], model.config.text_config.hidden_size)


def test_pool_imagery_raster_and_grid():
    feats = torch.arange(16.0)[:, None].repeat(1, 2)  # a 4x4 merged grid in raster order
    grid = torch.tensor([[1, 8, 8]])
    raster = pool_imagery(feats, grid, 4, mode="raster")[0, :, 0]
    assert raster.tolist() == [1.5, 5.5, 9.5, 13.5]  # horizontal strips
    cells = pool_imagery(feats, grid, 4, mode="grid")[0, :, 0]
    assert cells.tolist() == [2.5, 4.5, 10.5, 12.5]  # 2x2 quadrants: left/right kept apart
    with pytest.raises(ValueError, match="fewer than latent_size=32"):
        pool_imagery(feats, grid, 32)


def test_last_hidden_state_is_post_norm(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    ids = processor.tokenizer("hello there", return_tensors="pt")["input_ids"]
    out = model(input_ids=ids, output_last_hidden_state=True, output_hidden_states=True)
    torch.testing.assert_close(out.last_hidden_state, out.hidden_states[-1])
    torch.testing.assert_close(model.lm_head(out.last_hidden_state), out.logits)


def test_last_hidden_state_keeps_the_positions_of_the_logits(tiny_model_and_processor):
    # The final norm's hook sees every position; the output keeps those the logits keep (lm_head's input).
    model, processor = tiny_model_and_processor
    ids = processor.tokenizer("hello there, how are you", return_tensors="pt")["input_ids"]
    full = model(input_ids=ids, output_last_hidden_state=True).last_hidden_state
    for keep, positions in ((2, [-2, -1]), (torch.tensor([0, 3]), [0, 3])):
        out = model(input_ids=ids, output_last_hidden_state=True, logits_to_keep=keep)
        torch.testing.assert_close(out.last_hidden_state, full[:, positions])
        torch.testing.assert_close(model.lm_head(out.last_hidden_state), out.logits)


# ------------------------------------------------------------------------------------------------------- forward
def test_forward_output_is_the_stock_output(tiny_model_and_processor):
    """Without latent arguments the forward returns what the stock class returns, image encoder outputs included, in
    a subclass of the stock output type."""
    model, processor = tiny_model_and_processor
    stock = stock_twin(model)
    inputs = image_inputs(processor)
    with torch.no_grad():
        ours, theirs = model(**inputs), stock(**inputs)
    assert isinstance(ours, type(theirs))
    assert ours.image_outputs is not None and ours.video_outputs is None
    for key in theirs:
        assert_same(ours[key], theirs[key], key)
    assert ours.last_hidden_state is None and ours.latent_embeds is None


def test_return_dict_false_gives_the_stock_tuple(tiny_model_and_processor):
    model, processor = tiny_model_and_processor
    stock = stock_twin(model)
    inputs = image_inputs(processor)
    with torch.no_grad():
        ours, theirs = model(**inputs, return_dict=False), stock(**inputs, return_dict=False)
    assert isinstance(ours, tuple)
    assert_same(ours, theirs)


def test_forward_with_latent_embeds_keeps_the_stock_tuple(tiny_model_and_processor):
    """On the latent path the stock fields come first and thinker4d's extra fields last, in the output and in the
    `return_dict=False` tuple. With the `<|latent_pad|>` embedding as the latents, the stock fields equal the stock
    model's on the same ids."""
    model, processor = tiny_model_and_processor
    stock = stock_twin(model)
    k = model.config.latent_size
    _, pad, _ = latent_ids(model)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where?"}]}]
    text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    text += "<|latent_start|>" + "<|latent_pad|>" * k + "<|latent_end|>ok"
    inputs = processor(text=[text], images=[random_image(56, 56, seed=3)], return_tensors="pt")
    pad_vectors = model.get_input_embeddings().weight[pad].detach().expand(k, -1)
    with torch.no_grad():
        ours = model(**inputs, latent_embeds=pad_vectors, output_last_hidden_state=True)
        ours_tuple = model(**inputs, latent_embeds=pad_vectors, output_last_hidden_state=True, return_dict=False)
        theirs = stock(**inputs)
    assert isinstance(ours, type(theirs)) and ours.image_outputs is not None
    assert list(ours.keys()) == [*theirs.keys(), "last_hidden_state", "latent_embeds"]
    for key in theirs:
        assert_same(ours[key], theirs[key], key)
    assert_same(ours_tuple, ours.to_tuple())
    assert_same(ours_tuple[: len(theirs)], theirs.to_tuple())
    torch.testing.assert_close(ours_tuple[-1], pad_vectors)


# ----------------------------------------------------------------------------------------------------- bad input
def test_bad_input_errors(backbone):
    processor = build_tiny_processor(backbone)
    base = build_tiny_model(backbone, processor)
    with pytest.raises(ValueError, match="latent_size must be an integer >= 1"):
        thinker4d.from_base(base, processor, latent_size=0)
    with pytest.raises(ValueError, match="latent_size .* must be an integer >= 1"):
        thinker4d.Thinker4DQwen2_5_VLConfig(latent_size=0)
    with pytest.raises(ValueError, match="Pass the processor"):
        thinker4d.from_base(base)
    # a model without latent ids cannot decode latents, and says how to fix it
    with pytest.raises(ValueError, match="thinker4d.from_base"):
        GenerationMixin.generate(
            base, input_ids=torch.tensor([[1, 2]]), max_new_tokens=2, custom_generate=thinker4d.latent_sample
        )
    model, processor = thinker4d.from_base(base, processor)
    fresh = build_tiny_processor(backbone)
    with pytest.raises(ValueError, match="has no '<\\|latent_start\\|>' token"):
        check_latent_tokens(fresh.tokenizer, model.config)
    ids = processor.tokenizer("a<|latent_start|><|latent_pad|><|latent_end|>", return_tensors="pt")["input_ids"]
    with pytest.raises(ValueError, match="1 latent slots .* but 2 latent vectors"):
        model(input_ids=ids, latent_embeds=torch.zeros(2, model.config.text_config.hidden_size))
    with pytest.raises(ValueError, match="num_beams=1"):
        model.generate(input_ids=ids, max_new_tokens=2, num_beams=2)


def test_unsupported_base_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=300,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    )
    with pytest.raises(ValueError, match="supports Qwen2.5-VL and Qwen3-VL .* got a LlamaForCausalLM"):
        thinker4d.from_base(llama, build_tiny_processor("qwen2_5_vl"))


def test_from_base_of_a_saved_stock_folder(tmp_path):
    processor = build_tiny_processor("qwen2_5_vl")
    base = build_tiny_model("qwen2_5_vl", processor)
    base.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    model, proc2 = thinker4d.from_base(str(tmp_path), latent_size=4)
    assert type(model).__name__ == "Thinker4DQwen2_5_VLForConditionalGeneration"
    check_latent_tokens(proc2.tokenizer, model.config)
    ref = base.generate(**video_inputs(processor), max_new_tokens=6, do_sample=False)
    assert np.array_equal(model.generate(**video_inputs(processor), max_new_tokens=6, do_sample=False), ref)


def test_latent_sample_on_a_stock_class_model(tiny_model_and_processor):
    """`generate(custom_generate=thinker4d.latent_sample)` works on a stock Qwen-VL class carrying the latent fields."""
    model, processor = tiny_model_and_processor
    stock = stock_twin(model)
    for key in ("latent_start_id", "latent_pad_id", "latent_end_id", "latent_size"):
        assert getattr(stock.config, key) == getattr(model.config, key)
    inputs = video_inputs(processor, 2)
    force = ForceImageryAt(model.config.latent_start_id, processor.tokenizer.pad_token_id)
    ours = model.generate(**inputs, max_new_tokens=16, do_sample=False, logits_processor=LogitsProcessorList([force]))
    force = ForceImageryAt(model.config.latent_start_id, processor.tokenizer.pad_token_id)
    theirs = GenerationMixin.generate(
        stock,
        **inputs,
        max_new_tokens=16,
        do_sample=False,
        logits_processor=LogitsProcessorList([force]),
        custom_generate=thinker4d.latent_sample,
    )
    assert torch.equal(ours, theirs)
    assert (ours == model.config.latent_pad_id).sum() >= 2 * model.config.latent_size


def test_last_hidden_state_capture_finds_the_final_norm_of_a_text_only_lm():
    """The capture hook sits on `get_decoder().norm`: Qwen-VL's language model, or a causal LM's `model.model` (the
    vLLM job's reference decodes a text-only Qwen2 through the same loop)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from thinker4d.models.generation import capture_last_hidden_state

    torch.manual_seed(0)
    lm = Qwen2ForCausalLM(
        Qwen2Config(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            vocab_size=50,
        )
    ).eval()
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad(), capture_last_hidden_state(lm) as captured:
        out = lm(input_ids=ids, logits_to_keep=1)
    assert captured["hidden"].shape == (1, 4, 32)
    with torch.no_grad():
        expected = lm.model(input_ids=ids).last_hidden_state
    torch.testing.assert_close(captured["hidden"], expected)
    torch.testing.assert_close(out.logits[:, -1], lm.lm_head(expected[:, -1]))
