"""DIFTTrainer, its collator and config: training, the exact loss, sequence layout, ablation modes, bad rows, resume."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import thinker4d
from thinker4d.tiny import build_tiny_model, build_tiny_processor
from thinker4d.trainers import DIFTConfig, DIFTDataCollator, DIFTTrainer, InvalidRowError
from thinker4d.trainers.dift_trainer import causal_ce


datasets = pytest.importorskip("datasets")

QUESTION = "How does the camera move?"
OPTIONS = ["A. Pan Left", "B. Pan Right", "C. Tilt Up"]


def image(seed, h=56, w=56):
    return Image.fromarray((np.random.default_rng(seed).random((h, w, 3)) * 255).astype("uint8"))


def make_row(i, n_imagery=1, n_frames=4, **overrides):
    cot = "<think>The view shifts" + " <imagery> and then" * n_imagery + " right.</think><answer>B. Pan Right</answer>"
    row = {
        "id": f"clip{i}/camera_motion/0",
        "clip_id": f"clip{i}",
        "frames": [image(100 * i + j) for j in range(n_frames)],
        "fps": 2.0,
        "task": "camera_motion",
        "question": QUESTION,
        "options": list(OPTIONS),
        "answer": "B",
        "cot": cot,
        "imagery": [image(10_000 + 100 * i + k) for k in range(n_imagery)],
        "label_source": "geometry",
        "meta": "{}",
    }
    row.update(overrides)
    return row


def make_dataset(n=4, imagery=(1, 2, 1, 1)):
    return datasets.Dataset.from_list([make_row(i, imagery[i % len(imagery)]) for i in range(n)])


def tiny(backbone, latent_size=4):
    processor = build_tiny_processor(backbone)
    model, processor = thinker4d.from_base(build_tiny_model(backbone, processor), processor, latent_size=latent_size)
    return model, processor


def make_args(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path / "out"),
        max_steps=3,
        per_device_train_batch_size=2,
        logging_steps=1,
        learning_rate=1e-3,
        warmup_steps=0,
        report_to="none",
        activation_checkpointing=False,
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    base.update(kw)
    return DIFTConfig(**base)


def logged(trainer, key):
    return [h[key] for h in trainer.state.log_history if key in h]


# ------------------------------------------------------------------------------------------------ config


def test_config_defaults():
    args = DIFTConfig(output_dir="x", use_cpu=True)
    assert (args.ce_weight, args.imagery_weight, args.learning_rate) == (0.1, 1.0, 1e-5)
    assert (args.num_train_epochs, args.warmup_steps, args.weight_decay) == (1, 10, 0.01)
    assert args.mode == "dift" and args.activation_checkpointing is True and args.remove_unused_columns is False
    assert args.bf16 == bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    assert DIFTConfig(output_dir="x", gradient_checkpointing=False).activation_checkpointing is False


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "sft"}, "mode must be one of"),
        ({"ce_weight": -1.0}, "must be >= 0"),
        ({"ce_weight": 0.0, "mode": "text_cot"}, "nothing is trained"),
        ({"latent_size": 0}, "latent_size"),
        ({"imagery_pooling": "max"}, "imagery_pooling"),
        ({"remove_unused_columns": True}, "leave it False"),
        ({"cache_imagery_targets": True, "mode": "raw_qa"}, "only applies to mode='dift'"),
        ({"max_frames": 0}, "max_frames"),
        ({"frame_max_pixels": 10}, "frame_max_pixels"),
        ({"latent_norm": "rms"}, "latent_norm must be a positive number, 'embedding' or None"),
        ({"latent_norm": 0.0}, "latent_norm must be > 0"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DIFTConfig(output_dir="x", **kwargs)


# ------------------------------------------------------------------------------------------------ training


def test_train_three_steps(backbone, tmp_path):
    model, processor = tiny(backbone)
    trainer = DIFTTrainer(
        model=model, args=make_args(tmp_path), train_dataset=make_dataset(), processing_class=processor
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    for key in ("loss", "ce_loss", "imagery_loss", "imagery_cos"):
        values = logged(trainer, key)
        assert len(values) == 3 and all(math.isfinite(v) for v in values), key
    for (name, p), first in zip(trainer.model.named_parameters(), before.values()):
        if ".visual." in name or name.startswith("model.visual"):
            assert not p.requires_grad and torch.equal(p, first), f"vision tower changed: {name}"
        else:
            assert p.requires_grad and not torch.equal(p, first), f"trainable parameter did not change: {name}"
    assert any(".visual." in n or n.startswith("model.visual") for n in before)


def _hand_loss(model, processor, batch, rows, assistants, ce_weight, imagery_weight):
    """The DIFT loss from scratch: label positions found by matching the assistant text at the end of each row."""
    tok = processor.tokenizer
    pad_id = model.config.latent_pad_id
    with torch.no_grad():
        targets = model.get_imagery_targets(batch["imagery_pixel_values"], batch["imagery_grid_thw"])
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        out = model(**inputs, output_last_hidden_state=True)
    nll, n_tok, cos_terms = 0.0, 0, []
    slot = 0
    flat_targets = targets.reshape(-1, targets.shape[-1])
    for r in range(len(rows)):
        length = int(batch["attention_mask"][r].sum())
        ids = batch["input_ids"][r, :length].tolist()
        answer_ids = tok(assistants[r] + "<|im_end|>", add_special_tokens=False)["input_ids"]
        tail = tok("\n", add_special_tokens=False)["input_ids"]
        assert ids[len(ids) - len(tail) - len(answer_ids) : len(ids) - len(tail)] == answer_ids
        start = length - len(tail) - len(answer_ids)
        logp = torch.log_softmax(out.logits[r].double(), -1)
        for t in range(start, length - len(tail)):
            if ids[t] != pad_id:
                nll -= float(logp[t - 1, ids[t]])
                n_tok += 1
        for p in range(length):
            if ids[p] == pad_id:
                h = out.last_hidden_state[r, p - 1].double()
                z = flat_targets[slot].double()
                cos_terms.append(float(h @ z / (h.norm() * z.norm())))
                slot += 1
    assert slot == flat_targets.shape[0]
    ce = nll / n_tok
    img = float(np.mean([1 - c for c in cos_terms]))
    return ce_weight * ce + imagery_weight * img, ce, img


def test_exact_loss(backbone, tmp_path):
    model, processor = tiny(backbone, latent_size=2)
    rows = [make_row(0, n_imagery=1), make_row(1, n_imagery=2, n_frames=2, question="Which way? Be brief.")]
    args = make_args(tmp_path, ce_weight=0.3, imagery_weight=0.7)
    trainer = DIFTTrainer(
        model=model, args=args, train_dataset=datasets.Dataset.from_list(rows), processing_class=processor
    )
    batch = trainer.data_collator(rows)
    model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(batch))
    assistants = [trainer.data_collator.assistant_text(r) for r in rows]
    expected, ce, img = _hand_loss(model, processor, batch, rows, assistants, 0.3, 0.7)
    assert abs(float(loss) - expected) < 1e-5
    assert abs(trainer._metrics["eval"]["ce_loss"][-1] - ce) < 1e-5
    assert abs(trainer._metrics["eval"]["imagery_loss"][-1] - img) < 1e-5


# ------------------------------------------------------------------------------------------------ collator


def test_collator_layout(backbone):
    k = 3
    _, processor = tiny(backbone, latent_size=k)
    tok = processor.tokenizer
    collator = DIFTDataCollator(processor, latent_size=k)
    rows = [make_row(0, n_imagery=2), make_row(1, n_imagery=0, n_frames=2), make_row(2, n_imagery=1)]
    batch = collator(rows)
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    pad_id = tok.convert_tokens_to_ids("<|latent_pad|>")
    block = "<|latent_start|>" + "<|latent_pad|>" * k + "<|latent_end|>"
    for r, row in enumerate(rows):
        text = tok.decode(ids[r][mask[r].bool()])
        assistant = text.split("<|im_start|>assistant\n")[-1]
        assert assistant == row["cot"].replace("<imagery>", block) + "<|im_end|>\n"
        assert int((ids[r] == pad_id).sum()) == k * len(row["imagery"])
        assert "<|video_pad|>" in text.split("<|im_start|>assistant")[0]
        # labels: exactly the assistant content through <|im_end|>, without the latent slots
        target = tok.decode(labels[r][labels[r] != -100])
        assert target == row["cot"].replace("<imagery>", "<|latent_start|><|latent_end|>") + "<|im_end|>"
        assert bool((labels[r][ids[r] == pad_id] == -100).all())
        assert bool((labels[r][~mask[r].bool()] == -100).all())
        labelled = (labels[r] != -100).nonzero().flatten()
        assert int(labelled[-1]) + 1 < int(mask[r].sum())  # the trailing "\n" after <|im_end|> is not a target
    assert not mask[1].all()  # the short row is right-padded
    # video for every row, one overlay grid per marker, in order
    assert batch["video_grid_thw"].shape[0] == 3
    n_patches = batch["video_grid_thw"].prod(-1).sum()
    assert batch["pixel_values_videos"].shape[0] == n_patches
    assert batch["imagery_grid_thw"].shape[0] == 3
    assert batch["imagery_pixel_values"].shape[0] == batch["imagery_grid_thw"].prod(-1).sum()
    single = processor.image_processor(images=[rows[0]["imagery"][1]], return_tensors="pt")
    n0 = int(batch["imagery_grid_thw"][0].prod())
    assert torch.equal(
        batch["imagery_pixel_values"][n0 : n0 + single["pixel_values"].shape[0]], single["pixel_values"]
    )


def test_collator_reaches_model(tmp_path):
    """Video and overlays change the forward: different frames or overlays give different logits."""
    model, processor = tiny("qwen2_5_vl")
    collator = DIFTDataCollator(processor, latent_size=4)
    a = collator([make_row(0)])
    b = collator([make_row(0, frames=[image(999 + j) for j in range(4)])])
    c = collator([make_row(0, imagery=[image(4242)])])
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["input_ids"], c["input_ids"])
    with torch.no_grad():
        la, lb, lc = (model(**{k: v for k, v in x.items() if k != "labels"}).logits for x in (a, b, c))
    first_pad = int((a["input_ids"][0] == model.config.latent_pad_id).nonzero()[0])
    assert not torch.allclose(la, lb)
    assert torch.allclose(la[:, :first_pad], lc[:, :first_pad], atol=1e-6)  # overlays only act from their slots on
    assert not torch.allclose(la[:, first_pad:], lc[:, first_pad:])


def test_max_frames_and_pixels():
    _, processor = tiny("qwen2_5_vl")
    collator = DIFTDataCollator(processor, max_frames=4, frame_max_pixels=28 * 28 * 4)
    video, fps = collator._frames(make_row(0, n_frames=10, frames=[image(j, 112, 112) for j in range(10)]))
    assert video.shape[0] == 4 and video.shape[1] * video.shape[2] <= 28 * 28 * 4
    assert fps == pytest.approx(2.0 * 3 / 9)  # same time span, fewer frames


# ------------------------------------------------------------------------------------------------ ablation modes


def test_ablation_modes(tmp_path):
    _, processor = tiny("qwen3_vl")
    tok = processor.tokenizer
    row = make_row(0, n_imagery=2)
    latent = {tok.convert_tokens_to_ids(t) for t in thinker4d.models.LATENT_TOKENS}

    def assistant_labels(mode):
        batch = DIFTDataCollator(processor, mode=mode)([row])
        return batch, tok.decode(batch["labels"][0][batch["labels"][0] != -100])

    batch, text = assistant_labels("raw_qa")
    assert text == "<answer>B. Pan Right</answer><|im_end|>"
    assert not latent & set(batch["input_ids"].flatten().tolist()) and "imagery_pixel_values" not in batch
    batch, text = assistant_labels("text_cot")
    assert text == "<think>The view shifts and then and then right.</think><answer>B. Pan Right</answer><|im_end|>"
    assert not latent & set(batch["input_ids"].flatten().tolist()) and "imagery_pixel_values" not in batch
    batch, text = assistant_labels("dift")
    assert text.count("<|latent_start|><|latent_end|>") == 2 and batch["imagery_grid_thw"].shape[0] == 2


@pytest.mark.parametrize("mode", ["raw_qa", "text_cot"])
def test_ablation_modes_train_ce_only(mode, tmp_path):
    model, processor = tiny("qwen2_5_vl")
    args = make_args(tmp_path, mode=mode, max_steps=2)
    trainer = DIFTTrainer(model=model, args=args, train_dataset=make_dataset(), processing_class=processor)
    trainer.train()
    assert len(logged(trainer, "ce_loss")) == 2 and not logged(trainer, "imagery_loss")
    assert logged(trainer, "loss")[0] == pytest.approx(0.1 * logged(trainer, "ce_loss")[0], rel=1e-4)


def test_latent_size_from_config(tmp_path):
    model, processor = tiny("qwen2_5_vl", latent_size=4)
    trainer = DIFTTrainer(
        model=model, args=make_args(tmp_path, latent_size=2), train_dataset=make_dataset(), processing_class=processor
    )
    assert trainer.model.config.latent_size == 2 and trainer.data_collator.latent_size == 2
    batch = trainer.data_collator([make_row(0, n_imagery=3)])
    assert int((batch["input_ids"] == model.config.latent_pad_id).sum()) == 6
    with torch.no_grad():
        assert torch.isfinite(trainer.compute_loss(trainer.model, dict(batch)))


def test_latent_norm_embedding_is_written_to_the_config_and_scales_the_slots(tmp_path):
    model, processor = tiny("qwen2_5_vl", latent_size=2)
    expected = float(model.get_input_embeddings().weight.detach().norm(dim=-1).mean())
    trainer = DIFTTrainer(
        model=model,
        args=make_args(tmp_path, latent_norm="embedding"),
        train_dataset=make_dataset(),
        processing_class=processor,
    )
    assert trainer.model.config.latent_norm == pytest.approx(expected)
    batch = dict(trainer.data_collator([make_row(0, n_imagery=2)]))
    batch.pop("labels")
    with torch.no_grad():
        out = trainer.model(**batch, output_last_hidden_state=True)
    norms = out.latent_embeds.norm(dim=-1)
    torch.testing.assert_close(norms, torch.full_like(norms, expected), atol=1e-4, rtol=1e-4)
    assert DIFTConfig(output_dir="x", latent_norm="2.5").latent_norm == 2.5


def test_rows_without_imagery_train_on_ce(tmp_path):
    model, processor = tiny("qwen2_5_vl")
    trainer = DIFTTrainer(
        model=model,
        args=make_args(tmp_path, max_steps=1),
        train_dataset=make_dataset(imagery=(0,)),
        processing_class=processor,
    )
    trainer.train()
    assert logged(trainer, "ce_loss") and not logged(trainer, "imagery_loss")


# ------------------------------------------------------------------------------------------------ bad rows


BAD_ROWS = [
    (
        {"cot": "<think><imagery></think><answer>B. Pan Right</answer>", "imagery": []},
        "1 `<imagery>` markers but `imagery` has 0",
    ),
    ({"cot": "<think>no answer</think>"}, "has no <answer>"),
    ({"answer": "E"}, "answer 'E' is not among the options"),
    ({"cot": "<think><imagery></think><answer>A. Pan Left</answer>"}, "the CoT answers 'A' but `answer` is 'B'"),
    ({"frames": []}, "`frames` is empty"),
    ({"cot": "<think><output_image></think><answer>B. Pan Right</answer>"}, "paper's `<output_image>` marker"),
]


@pytest.mark.parametrize("overrides, match", BAD_ROWS)
def test_invalid_rows_raise_with_id(overrides, match, tmp_path):
    _, processor = tiny("qwen2_5_vl")
    bad = make_row(7, id="bad/row/7", **overrides)
    with pytest.raises(InvalidRowError, match=r"Row 'bad/row/7': .*" + match.replace("(", r"\(").replace("*", r"\*")):
        DIFTDataCollator(processor)([bad])


def test_invalid_rows_in_trainer_and_skip(tmp_path):
    model, processor = tiny("qwen2_5_vl")
    rows = [make_row(i) for i in range(4)]
    rows[1] = make_row(1, id="bad/1", answer="D", options=["A. x", "B. y"])
    rows[2] = make_row(2, id="bad/2", frames=[])
    ds = datasets.Dataset.from_list(rows)
    with pytest.raises(InvalidRowError, match=r"2 of 4 train rows are invalid; the first: Row 'bad/1': answer 'D'"):
        DIFTTrainer(model=model, args=make_args(tmp_path), train_dataset=ds, processing_class=processor)
    args = make_args(tmp_path, skip_invalid_rows=True, max_steps=1)
    trainer = DIFTTrainer(model=model, args=args, train_dataset=ds, processing_class=processor)
    assert len(trainer.train_dataset) == 2 and trainer.num_invalid_rows == 2
    trainer.train()
    assert logged(trainer, "skipped_rows") == [2]


def test_unreadable_image(tmp_path):
    model, processor = tiny("qwen2_5_vl")
    rows = [make_row(0), make_row(1), make_row(2, id="broken/2")]
    ds = datasets.Dataset.from_list(rows)
    feats = ds.features.copy()
    ds = ds.cast_column("imagery", datasets.List(datasets.Image(decode=False)))
    ds = ds.map(
        lambda r: {"imagery": [{"bytes": b"not a png", "path": None}] if r["id"] == "broken/2" else r["imagery"]}
    )
    assert feats["imagery"] is not None
    trainer = DIFTTrainer(model=model, args=make_args(tmp_path), train_dataset=ds, processing_class=processor)
    with pytest.raises(InvalidRowError, match=r"Row 'broken/2': overlay 0 cannot be read"):
        trainer.data_collator([trainer.train_dataset[2]])
    collator = DIFTDataCollator(processor, skip_invalid_rows=True)
    batch = collator([trainer.train_dataset[i] for i in range(3)])
    assert collator.num_skipped == 1 and batch["input_ids"].shape[0] == 2
    with pytest.raises(InvalidRowError, match="Every row of this batch was invalid"):
        collator([trainer.train_dataset[2]])


# ------------------------------------------------------------------------------------------------ caching, pre-encoding


def test_cached_targets_give_the_same_loss(tmp_path):
    model, processor = tiny("qwen3_vl")
    ds = make_dataset(n=2)
    args = make_args(tmp_path, cache_imagery_targets=True)
    cached = DIFTTrainer(model=model, args=args, train_dataset=ds, processing_class=processor)
    assert "imagery_targets" in cached.train_dataset.column_names
    row = cached.train_dataset[0]
    assert np.asarray(row["imagery_targets"]).shape == (4, model.config.text_config.hidden_size)
    plain = DIFTTrainer(model=model, args=make_args(tmp_path), train_dataset=ds, processing_class=processor)
    b_cached = cached.data_collator([cached.train_dataset[i] for i in range(2)])
    b_plain = plain.data_collator([plain.train_dataset[i] for i in range(2)])
    assert "latent_embeds" in b_cached and "imagery_pixel_values" in b_plain
    model.eval()
    with torch.no_grad():
        a = cached.compute_loss(model, dict(b_cached))
        b = plain.compute_loss(model, dict(b_plain))
    assert abs(float(a) - float(b)) < 1e-5


def test_pre_encode_matches_lazy(tmp_path):
    model, processor = tiny("qwen2_5_vl")
    ds = make_dataset(n=3, imagery=(1, 0, 2))
    pre = DIFTTrainer(
        model=model, args=make_args(tmp_path, pre_encode=True), train_dataset=ds, processing_class=processor
    )
    lazy = DIFTTrainer(model=model, args=make_args(tmp_path), train_dataset=ds, processing_class=processor)
    a = pre.data_collator([pre.train_dataset[i] for i in range(3)])
    b = lazy.data_collator([lazy.train_dataset[i] for i in range(3)])
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float()), key


# ------------------------------------------------------------------------------------------------ integrations


def test_resume_gives_the_same_losses(tmp_path):
    def run(out, resume=None):
        model, processor = tiny("qwen2_5_vl")
        args = make_args(
            tmp_path,
            output_dir=str(out),
            max_steps=4,
            save_strategy="steps",
            save_steps=2,
            per_device_train_batch_size=1,
        )
        trainer = DIFTTrainer(model=model, args=args, train_dataset=make_dataset(n=4), processing_class=processor)
        trainer.train(resume_from_checkpoint=resume)
        first = 3 if resume else 1  # a resumed run's log_history starts with the checkpoint's entries
        steps = [h for h in trainer.state.log_history if "loss" in h and h["step"] >= first]
        return [h["loss"] for h in steps], [h["imagery_loss"] for h in steps]

    full, full_img = run(tmp_path / "full")
    resumed, resumed_img = run(tmp_path / "resumed", resume=str(tmp_path / "full" / "checkpoint-2"))
    assert len(full) == 4 and len(resumed) == 2
    np.testing.assert_allclose(resumed, full[2:], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(resumed_img, full_img[2:], rtol=1e-5, atol=1e-6)


def test_peft_lora_with_activation_checkpointing(tmp_path):
    peft = pytest.importorskip("peft")
    model, processor = tiny("qwen2_5_vl")
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    args = make_args(tmp_path, max_steps=2, activation_checkpointing=True)
    trainer = DIFTTrainer(
        model=model, args=args, train_dataset=make_dataset(), processing_class=processor, peft_config=config
    )
    assert config.trainable_token_indices is None  # the caller's config is not modified
    embed = trainer.model.get_input_embeddings()
    ids = torch.arange(embed.weight.shape[0] if hasattr(embed, "weight") else model.config.text_config.vocab_size)
    rows_before = embed(ids).detach().clone()
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "trainable_tokens" in n for n in trainable)
    assert any("trainable_tokens" in n for n in trainable)
    for name, p in trainer.model.named_parameters():
        if name.endswith("lora_B.default.weight"):
            assert not torch.equal(p, before[name]), name
        elif "lora_" not in name and "trainable_tokens" not in name:
            assert torch.equal(p, before[name]), name
    # the latent start/end rows were trained, every other row is untouched
    changed = (embed(ids).detach() - rows_before).abs().amax(-1) > 0
    latent = {model.config.latent_start_id, model.config.latent_end_id}
    assert set(changed.nonzero().flatten().tolist()) == latent
    assert logged(trainer, "imagery_loss")


def test_model_from_path_and_default_args(tmp_path, monkeypatch):
    processor = build_tiny_processor("qwen3_vl")
    path = tmp_path / "tiny-qwen3-vl"
    build_tiny_model("qwen3_vl", processor).save_pretrained(path)
    processor.save_pretrained(path)
    monkeypatch.chdir(tmp_path)
    trainer = DIFTTrainer(model=str(path), train_dataset=make_dataset(n=2))
    assert type(trainer.model).__name__ == "Thinker4DQwen3VLForConditionalGeneration"
    assert trainer.args.output_dir.endswith("tiny-qwen3-vl-DIFT")
    assert (
        trainer.processing_class.tokenizer.convert_tokens_to_ids("<|latent_pad|>")
        == trainer.model.config.latent_pad_id
    )
    assert not any(p.requires_grad for p in trainer.model.model.visual.parameters())


# ------------------------------------------------------------------------------------------------ Trainer arguments


def test_compute_metrics_and_preprocess_logits_at_evaluate(tmp_path):
    """Trainer's metric hooks: predictions are the model's logits, the metric is logged with the eval_ prefix."""
    model, processor = tiny("qwen2_5_vl")
    # a row without imagery next to rows with it: the predictions keep one shape across eval batches
    eval_rows = datasets.Dataset.from_list([make_row(0, 1), make_row(1, 0), make_row(2, 2)])
    seen = {}

    def preprocess_logits_for_metrics(logits, labels):
        seen.setdefault("logits", []).append(tuple(logits.shape))
        return logits.argmax(-1)

    def compute_metrics(pred):
        preds, labels = pred.predictions[:, :-1], pred.label_ids[:, 1:]
        mask = labels != -100
        seen["label_tokens"] = int(mask.sum())
        return {"token_accuracy": float((preds[mask] == labels[mask]).mean())}

    trainer = DIFTTrainer(
        model=model,
        args=make_args(tmp_path, per_device_eval_batch_size=1),
        train_dataset=make_dataset(n=2),
        eval_dataset=eval_rows,
        processing_class=processor,
        compute_metrics=compute_metrics,
        preprocess_logits_for_metrics=preprocess_logits_for_metrics,
    )
    metrics = trainer.evaluate()
    vocab = model.config.text_config.vocab_size
    assert len(seen["logits"]) == 3 and all(shape[0] == 1 and shape[-1] == vocab for shape in seen["logits"])
    labels = [trainer.data_collator([row])["labels"] for row in eval_rows]
    assert seen["label_tokens"] == sum(int((lab[:, 1:] != -100).sum()) for lab in labels)
    assert 0.0 <= metrics["eval_token_accuracy"] <= 1.0
    assert trainer.state.log_history[-1]["eval_token_accuracy"] == metrics["eval_token_accuracy"]
    assert "eval_imagery_loss" in metrics  # DIFT's own terms are still logged


def test_optimizer_cls_and_kwargs_is_used(tmp_path):
    model, processor = tiny("qwen2_5_vl")
    trainer = DIFTTrainer(
        model=model,
        args=make_args(tmp_path, max_steps=1),
        train_dataset=make_dataset(n=2),
        processing_class=processor,
        optimizer_cls_and_kwargs=(torch.optim.SGD, {"lr": 0.5, "momentum": 0.9}),
    )
    before = trainer.model.lm_head.weight.detach().clone()
    trainer.train()
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate's wrapper
    assert type(optimizer) is torch.optim.SGD and optimizer.defaults["momentum"] == 0.9
    assert "momentum_buffer" in optimizer.state[trainer.model.lm_head.weight]
    assert not torch.equal(before, trainer.model.lm_head.weight)


def test_compute_loss_func_replaces_the_text_term(tmp_path):
    """`compute_loss_func(outputs, labels, num_items_in_batch)` replaces the CE term; the imagery term stays."""
    model, processor = tiny("qwen2_5_vl")
    rows = [make_row(0, n_imagery=1), make_row(1, n_imagery=2)]
    calls = []

    def text_loss(outputs, labels, num_items_in_batch=None):
        calls.append(int(num_items_in_batch))
        return 2.0 * causal_ce(outputs.logits, labels) + 1.0

    args = make_args(tmp_path, ce_weight=0.3, imagery_weight=0.7)
    plain = DIFTTrainer(model=model, args=args, train_dataset=make_dataset(n=2), processing_class=processor)
    custom = DIFTTrainer(
        model=model,
        args=args,
        train_dataset=make_dataset(n=2),
        processing_class=processor,
        compute_loss_func=text_loss,
    )
    batch = plain.data_collator(rows)
    model.eval()
    with torch.no_grad():
        base = float(plain.compute_loss(model, dict(batch)))
        loss = float(custom.compute_loss(model, dict(batch)))
    ce, img = plain._metrics["eval"]["ce_loss"][-1], plain._metrics["eval"]["imagery_loss"][-1]
    assert calls == [int((batch["labels"][:, 1:] != -100).sum())]  # the micro-batch's label tokens
    assert abs(base - (0.3 * ce + 0.7 * img)) < 1e-5
    assert abs(loss - (0.3 * (2.0 * ce + 1.0) + 0.7 * img)) < 1e-5
    assert abs(custom._metrics["eval"]["ce_loss"][-1] - (2.0 * ce + 1.0)) < 1e-5


def test_model_init_builds_a_converted_model_per_train(tmp_path):
    processor = build_tiny_processor("qwen2_5_vl")
    built = []

    def model_init():
        built.append(build_tiny_model("qwen2_5_vl", processor))  # a stock model: converted by the trainer
        return built[-1]

    trainer = DIFTTrainer(
        model_init=model_init,
        args=make_args(tmp_path, max_steps=1),
        train_dataset=make_dataset(n=2),
        processing_class=processor,
    )
    assert len(built) == 1 and type(trainer.model).__name__ == "Thinker4DQwen2_5_VLForConditionalGeneration"
    first = trainer.model
    trainer.train()
    assert len(built) == 2 and trainer.model is not first  # Trainer calls model_init again at train()
    assert not any(p.requires_grad for p in trainer.model.model.visual.parameters())
    assert logged(trainer, "imagery_loss")
    # every model gets the latent rows from_base gives a fresh conversion: the mean of the old vocabulary's rows
    fresh = trainer.call_model_init()
    config, weight = fresh.config, fresh.get_input_embeddings().weight.detach()
    n_old = min(config.latent_start_id, config.latent_pad_id, config.latent_end_id)
    torch.testing.assert_close(weight[config.latent_start_id], weight[:n_old].mean(0))


def test_model_and_model_init_errors(tmp_path):
    model, processor = tiny("qwen2_5_vl")
    with pytest.raises(ValueError, match=r"Pass either `model` or `model_init`"):
        DIFTTrainer(model=model, model_init=lambda: model, args=make_args(tmp_path), processing_class=processor)
    with pytest.raises(ValueError, match=r"Pass either `model` or `model_init`"):
        DIFTTrainer(args=make_args(tmp_path), processing_class=processor)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"pass `optimizer_cls_and_kwargs=\(cls, kwargs\)` instead"):
        DIFTTrainer(model_init=lambda: model, args=make_args(tmp_path), processing_class=processor,
                    optimizers=(optimizer, None))  # fmt: skip


# ------------------------------------------------------------------------------------------------ paper JSONL


def test_paper_jsonl_round_trip(tmp_path):
    from thinker4d.data.paper_jsonl import dift_row_to_paper, load_paper_jsonl

    for name in ("f0.png", "f1.png", "o0.png"):
        image(len(name)).save(tmp_path / name)
    paper = {
        "id": "vid001_camera",
        "text_input": "How does the camera move?\nA. Pan Left\nB. Pan Right",
        "text_output": "<think>Look <output_image> here.</think><answer>B. Pan Right</answer>",
        "image_input": [str(tmp_path / "f0.png"), str(tmp_path / "f1.png")],
        "image_output": [str(tmp_path / "o0.png")],
    }
    (tmp_path / "data.jsonl").write_text(json.dumps(paper) + "\n")
    ds = load_paper_jsonl(str(tmp_path / "data.jsonl"))
    row = ds[0]
    assert (row["question"], row["options"], row["answer"]) == (QUESTION, ["A. Pan Left", "B. Pan Right"], "B")
    assert row["cot"] == "<think>Look <imagery> here.</think><answer>B. Pan Right</answer>"
    assert (row["clip_id"], row["task"]) == ("vid001", "camera")
    assert dift_row_to_paper(row) == paper
    _, processor = tiny("qwen2_5_vl")
    batch = DIFTDataCollator(processor)([row])
    assert batch["imagery_grid_thw"].shape[0] == 1 and batch["video_grid_thw"].shape[0] == 1


def test_paper_layout_dataset_is_converted_by_the_trainer(tmp_path):
    from thinker4d.data.paper_jsonl import split_question

    assert split_question("Which way? A. left B. right C. up") == ("Which way?", ["A. left", "B. right", "C. up"])
    for name in ("f0.png", "o0.png"):
        image(3).save(tmp_path / name)
    paper = {
        "id": "vid002_object",
        "text_input": "Where does it go?\nA. Left\nB. Right",
        "text_output": "<think><output_image></think><answer>A. Left</answer>",
        "image_input": [str(tmp_path / "f0.png")],
        "image_output": [str(tmp_path / "o0.png")],
    }
    model, processor = tiny("qwen2_5_vl")
    trainer = DIFTTrainer(
        model=model,
        args=make_args(tmp_path),
        train_dataset=datasets.Dataset.from_list([paper]),
        processing_class=processor,
    )
    assert trainer.train_dataset[0]["cot"] == "<think><imagery></think><answer>A. Left</answer>"


def test_cli_trains_lora_from_saved_dataset(tmp_path):
    pytest.importorskip("peft")
    from thinker4d.commands.dift import main

    processor = build_tiny_processor("qwen2_5_vl")
    build_tiny_model("qwen2_5_vl", processor).save_pretrained(tmp_path / "base")
    processor.save_pretrained(tmp_path / "base")
    make_dataset(n=2).save_to_disk(str(tmp_path / "data"))
    (tmp_path / "cfg.yaml").write_text("max_steps: 1\nlogging_steps: 1\n")
    rc = main(
        [
            "--model_name_or_path",
            str(tmp_path / "base"),
            "--dataset_name",
            str(tmp_path / "data"),
            "--output_dir",
            str(tmp_path / "out"),
            "--config",
            str(tmp_path / "cfg.yaml"),
            "--use_peft",
            "--lora_target_modules",
            "q_proj,v_proj",
            "--activation_checkpointing",
            "false",
            "--use_cpu",
            "--report_to",
            "none",
            "--save_strategy",
            "no",
        ]
    )
    assert rc == 0
    assert (tmp_path / "out" / "adapter_config.json").is_file()
    assert "<|latent_pad|>" in (tmp_path / "out" / "tokenizer_config.json").read_text() or (
        "<|latent_pad|>" in (tmp_path / "out" / "tokenizer.json").read_text()
    )


def test_cli_config_with_an_unknown_key_names_it(tmp_path):
    from thinker4d.commands import dift as dift_cmd

    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: x\ndataset: y\nlerning_rate: 1.0e-5\n")
    with pytest.raises(ValueError, match=r"unknown settings \['lerning_rate'\]"):
        dift_cmd._parse(["--config", str(cfg), "--output_dir", str(tmp_path / "o")])


def _cli_base(tmp_path):
    processor = build_tiny_processor("qwen2_5_vl")
    build_tiny_model("qwen2_5_vl", processor).save_pretrained(tmp_path / "base")
    processor.save_pretrained(tmp_path / "base")
    make_dataset(n=4).save_to_disk(str(tmp_path / "data"))
    return [
        "--model_name_or_path", str(tmp_path / "base"), "--dataset_name", str(tmp_path / "data"), "--output_dir", str(tmp_path / "out"),
        "--per_device_train_batch_size", "1", "--logging_steps", "1", "--save_strategy", "steps", "--save_steps", "1",
        "--activation_checkpointing", "false", "--use_cpu", "--report_to", "none", "--disable_tqdm", "true",
    ]  # fmt: skip


def test_cli_resume_skips_incomplete_checkpoints(tmp_path, monkeypatch, caplog, capsys):
    """A run killed while writing checkpoint-N leaves a partial folder; `--resume_from_checkpoint true` (or the output
    folder) warns about it and resumes from the newest complete checkpoint; naming the partial one is a user error."""
    import shutil

    from thinker4d import cli
    from thinker4d.commands.dift import main

    steps = []
    original_log = DIFTTrainer.log

    def record(self, logs, *args, **kwargs):
        if "loss" in logs:
            steps.append(self.state.global_step)
        return original_log(self, logs, *args, **kwargs)

    monkeypatch.setattr(DIFTTrainer, "log", record)
    base = _cli_base(tmp_path)
    assert main([*base, "--max_steps", "2"]) == 0
    out = tmp_path / "out"
    # killed while writing checkpoint-3 (weights only) and checkpoint-4 (trainer_state.json cut short)
    (out / "checkpoint-3").mkdir()
    shutil.copy(out / "checkpoint-2" / "model.safetensors", out / "checkpoint-3")
    shutil.copytree(out / "checkpoint-2", out / "checkpoint-4")
    state = out / "checkpoint-4" / "trainer_state.json"
    state.write_text(state.read_text()[:40])

    rc = cli.main(["dift", *base, "--max_steps", "5", "--resume_from_checkpoint", str(out / "checkpoint-4")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "checkpoint-4 is an incomplete checkpoint (trainer_state.json cannot be read" in err
    assert f"pass {out / 'checkpoint-2'} (the newest complete one)" in err and "Traceback" not in err

    steps.clear()
    with caplog.at_level("WARNING", logger="thinker4d.trainers.checkpointing"):
        assert main([*base, "--max_steps", "3", "--resume_from_checkpoint", "true"]) == 0
    assert steps == [3]  # continued after step 2, not from step 0
    skipped = [r.getMessage() for r in caplog.records if "Skipping incomplete checkpoint" in r.getMessage()]
    assert len(skipped) == 2 and "checkpoint-4" in skipped[0] and "no trainer_state.json" in skipped[1]
    assert json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())["global_step"] == 3


def test_resume_checkpoint_resolution(tmp_path):
    from thinker4d.errors import UserError
    from thinker4d.trainers.checkpointing import checkpoint_problem, resolve_resume_checkpoint

    run = tmp_path / "run"
    for step in (1, 2):
        ckpt = run / f"checkpoint-{step}"
        ckpt.mkdir(parents=True)
        for name in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "optimizer.pt"):
            (ckpt / name).write_bytes(b"x")
        index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
        (ckpt / "model.safetensors.index.json").write_text(json.dumps(index))
        (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (run / "checkpoint-2" / "model-00002-of-00002.safetensors").unlink()
    assert checkpoint_problem(run / "checkpoint-1") is None
    assert "weight shards ['model-00002-of-00002.safetensors'] are missing" in checkpoint_problem(run / "checkpoint-2")
    (run / "checkpoint-1" / "optimizer.pt").unlink()
    assert checkpoint_problem(run / "checkpoint-1") == "no optimizer state (optimizer.pt)"
    (run / "checkpoint-1" / "optimizer.pt").write_bytes(b"x")

    assert resolve_resume_checkpoint(str(run)) == str(run / "checkpoint-1")
    assert resolve_resume_checkpoint("True", str(run)) == str(run / "checkpoint-1")
    assert resolve_resume_checkpoint(True, str(run)) == str(run / "checkpoint-1")
    assert resolve_resume_checkpoint(None) is None and resolve_resume_checkpoint("false") is None
    with pytest.raises(UserError, match=r"--resume_from_checkpoint: .*nope is not a folder; pass a checkpoint-N"):
        resolve_resume_checkpoint(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"empty holds no complete checkpoint-N folder; drop the flag"):
        resolve_resume_checkpoint("true", str(tmp_path / "empty"))
