"""Evaluation controls: blind frames, latent interventions in the runner, bootstrap intervals and the controls table."""

import json
import math

import numpy as np
import pytest
import torch
from transformers import LogitsProcessorList

from _latent_helpers import ForceImageryAt
from test_eval_runner import bench  # noqa: F401  (fixture: 7 DSR-Bench rows over 3 tiny mp4s)
from thinker4d.eval import EvalConfig, load_task
from thinker4d.eval.metrics import bootstrap_ci, paired_bootstrap_ci, score_records
from thinker4d.eval.report import control_effects, format_controls
from thinker4d.eval.runner import evaluate_model
from thinker4d.tiny import build_tiny_model, build_tiny_processor


# ----------------------------------------------------------------------------------------------------- intervals
def test_bootstrap_ci_known_cases():
    assert bootstrap_ci([1] * 50) == [1.0, 1.0]
    assert bootstrap_ci([0] * 50) == [0.0, 0.0]
    # 400 questions at 50%: the normal approximation gives 0.5 -+ 1.96 * sqrt(0.25 / 400) = [0.451, 0.549]
    hits = [1, 0] * 200
    low, high = bootstrap_ci(hits)
    half = 1.96 * math.sqrt(0.25 / 400)
    assert abs(low - (0.5 - half)) < 0.006 and abs(high - (0.5 + half)) < 0.006
    assert bootstrap_ci(hits) == [low, high]  # seeded: reproducible
    # a narrower level gives a narrower interval
    low90, high90 = bootstrap_ci(hits, level=0.9)
    assert low < low90 < high90 < high
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci([])


def test_paired_bootstrap_ci_known_cases():
    run = [1, 0, 1, 1, 0, 1, 0, 0, 1, 1] * 20
    assert paired_bootstrap_ci(run, run) == (0.0, [0.0, 0.0])
    assert paired_bootstrap_ci([0] * 30, [1] * 30) == (-1.0, [-1.0, -1.0])
    # a control that loses exactly 16 of 200 correct answers (and gains none): the per-question difference is -1 on
    # 16 questions and 0 elsewhere, so the interval is the one of an 8% proportion, negated
    control = [0] * 16 + [1] * 124 + [0] * 60
    reference = [1] * 140 + [0] * 60
    diff, (low, high) = paired_bootstrap_ci(control, reference)
    half = 1.96 * math.sqrt(0.08 * 0.92 / 200)
    assert diff == pytest.approx(-0.08)
    assert abs(low - (-0.08 - half)) < 0.008 and abs(high - (-0.08 + half)) < 0.008
    # pairing matters: the unpaired intervals of the two accuracies overlap, the paired difference excludes 0
    assert high < 0 and bootstrap_ci(control)[1] > bootstrap_ci(reference)[0]
    with pytest.raises(ValueError, match="same questions"):
        paired_bootstrap_ci([1, 0], [1])


def test_summary_has_ci95_per_task():
    records = [{"index": i, "task": "a", "hit": 1, "error": None} for i in range(10)]
    records += [{"index": 10 + i, "task": "b", "hit": i % 2, "error": None} for i in range(10)]
    s = score_records(records)
    assert s["ci95"]["a"] == [1.0, 1.0]
    assert s["ci95"]["b"] == bootstrap_ci([i % 2 for i in range(10)])
    assert s["accuracy_ci95"] == bootstrap_ci([1] * 10 + [i % 2 for i in range(10)])
    assert "bootstrap" in s["ci_method"]


# ----------------------------------------------------------------------------------------------------- blind
class Recorder(torch.nn.Module):
    """Runs the wrapped model's `generate` and keeps its inputs; optionally forces imagery blocks."""

    def __init__(self, model, force_imagery=False, pad_token_id=None):
        super().__init__()
        self.model, self.force, self.pad_token_id, self.calls = model, force_imagery, pad_token_id, []

    @property
    def device(self):
        return self.model.device

    @property
    def config(self):
        return self.model.config

    @property
    def generation_config(self):
        return self.model.generation_config

    def generate(self, **kwargs):
        self.calls.append({k: v.clone() for k, v in kwargs.items() if isinstance(v, torch.Tensor)})
        if self.force:
            force = ForceImageryAt(self.model.config.latent_start_id, self.pad_token_id)
            kwargs["logits_processor"] = LogitsProcessorList([force])
        return self.model.generate(**kwargs)


def test_blind_keeps_the_prompt_and_replaces_every_pixel(bench, tmp_path):  # noqa: F811
    processor = build_tiny_processor("qwen2_5_vl")
    model = build_tiny_model("qwen2_5_vl", processor)
    task = load_task("dsr_bench")
    examples = task.load(bench)
    runs = {}
    for blind in (False, True):
        rec = Recorder(model)
        config = EvalConfig(max_new_tokens=2, batch_size=7, blind=blind, cache_dir=str(tmp_path / "c"))
        summary = evaluate_model(rec, processor, task, examples, tmp_path / f"run{blind}", config)
        (call,) = rec.calls
        runs[blind] = call, summary
    (real, s_real), (blind, s_blind) = runs[False], runs[True]
    assert torch.equal(blind["input_ids"], real["input_ids"])  # same tokens, so the same prompt length
    assert torch.equal(blind["attention_mask"], real["attention_mask"])
    assert torch.equal(blind["video_grid_thw"], real["video_grid_thw"])
    assert blind["pixel_values_videos"].shape == real["pixel_values_videos"].shape
    assert not torch.equal(blind["pixel_values_videos"], real["pixel_values_videos"])
    # one grey value per channel after the processor's normalisation, in every frame of every video
    per_channel = blind["pixel_values_videos"].reshape(blind["pixel_values_videos"].shape[0], 3, -1)
    assert torch.allclose(per_channel, per_channel[:1, :, :1].expand_as(per_channel))
    assert s_blind["blind"] is True and s_real["blind"] is False
    assert s_blind["generation"]["blind"] is True and "blind" not in s_real["generation"]
    assert s_blind["latent_intervention"] == "none"
    # a blind rerun on the real run's folder would mix the two: refused
    with pytest.raises(ValueError, match="different settings"):
        evaluate_model(Recorder(model), processor, task, examples, tmp_path / "runFalse", EvalConfig(blind=True))


# ----------------------------------------------------------------------------------------------------- interventions
@pytest.fixture(scope="module")
def latent_runs(bench, tmp_path_factory):  # noqa: F811
    """A thinker4d tiny model that opens two imagery blocks per question, evaluated real and under each control."""
    import thinker4d

    processor = build_tiny_processor("qwen2_5_vl")
    model, processor = thinker4d.from_base(build_tiny_model("qwen2_5_vl", processor), processor, latent_size=2)
    model.eval()
    task = load_task("dsr_bench")
    examples = task.load(bench)
    root = tmp_path_factory.mktemp("controls")
    common = dict(max_new_tokens=16, batch_size=3, cache_dir=str(root / "c"))
    out = {}
    for name, extra in [
        ("real", {}),
        ("zero", {"latent_intervention": "zero"}),
        ("mean", {"latent_intervention": "mean", "latent_mean": str(root / "real")}),
        ("gaussian", {"latent_intervention": "gaussian"}),
        ("shuffle", {"latent_intervention": "shuffle"}),
    ]:
        rec = Recorder(model, force_imagery=True, pad_token_id=processor.tokenizer.pad_token_id)
        evaluate_model(rec, processor, task, examples, root / name, EvalConfig(**common, **extra))
        out[name] = root / name
    return out, model, processor, common


def _rows(folder):
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]


def test_intervention_runs_record_what_they_replaced(latent_runs):
    runs, model, _, _ = latent_runs
    k = model.config.latent_size
    summaries = {name: json.loads((f / "summary.json").read_text()) for name, f in runs.items()}
    real = summaries["real"]
    assert real["latent_intervention"] == "none" and real["intervened_slots"] == 0
    assert real["latent_slots"] == 5 * 2 * k  # 5 answerable questions, two forced blocks each
    mean = torch.load(runs["real"] / "latent_mean.pt", weights_only=True)
    assert mean.shape == (k, model.config.get_text_config().hidden_size) and torch.isfinite(mean).all()
    assert real["latent_mean_file"] == "latent_mean.pt"
    for name in ("zero", "mean", "gaussian"):
        s = summaries[name]
        assert s["latent_intervention"] == name and s["generation"]["latent_intervention"] == name
        assert s["intervened_slots"] == s["latent_slots"] == real["latent_slots"]
        assert all(r["intervened_slots"] == r["latent_slots"] for r in _rows(runs[name]) if not r["error"])
        assert not (runs[name] / "latent_mean.pt").exists()  # only runs without intervention calibrate
    assert summaries["mean"]["latent_mean"] == str(runs["real"])
    shuffle = summaries["shuffle"]
    assert shuffle["generation"]["batch_size"] == 3
    assert 0 < shuffle["intervened_slots"] < shuffle["latent_slots"]  # the first row to reach a slot keeps its own
    for s in summaries.values():
        assert set(s["ci95"]) == set(s["subtask_accuracy"])


def test_latent_mean_of_a_resumed_run_counts_every_row_once(latent_runs, bench, tmp_path):  # noqa: F811
    """A run that stopped after saving a batch's latent sums but before writing its rows regenerates those rows on
    resume; the calibration mean still counts each row once."""
    import shutil

    runs, model, processor, common = latent_runs
    task = load_task("dsr_bench")
    out = tmp_path / "resumed"
    shutil.copytree(runs["real"], out)
    for name in ("summary.json", "results.jsonl", "latent_mean.pt"):
        (out / name).unlink()
    part = out / "parts" / "rank0.jsonl"
    lines = part.read_text().splitlines(keepends=True)
    part.write_text("".join(lines[:3]))  # the later rows are lost, their vectors are already in the sums
    rec = Recorder(model, force_imagery=True, pad_token_id=processor.tokenizer.pad_token_id)
    summary = evaluate_model(rec, processor, task, task.load(bench), out, EvalConfig(**common))
    assert rec.calls  # rows were generated again
    assert summary["latent_slots"] == json.loads((runs["real"] / "summary.json").read_text())["latent_slots"]
    torch.testing.assert_close(
        torch.load(out / "latent_mean.pt", weights_only=True),
        torch.load(runs["real"] / "latent_mean.pt", weights_only=True),
    )


def test_controls_table_pairs_runs_with_the_real_one(latent_runs, bench, tmp_path):  # noqa: F811
    runs, *_ = latent_runs
    table = format_controls([runs["real"], runs["zero"], runs["shuffle"]])
    assert "real (real)" in table and "zero (zero)" in table and "shuffle (shuffle)" in table
    assert "Abs Dis" in table and "All (micro)" in table
    same = format_controls([runs["real"], runs["real"]])
    assert "+0.0 [+0.0, +0.0]" in same
    real_summary = json.loads((runs["real"] / "summary.json").read_text())
    effects = control_effects(runs["real"], runs["real"])
    assert set(effects) == {*real_summary["subtask_accuracy"], "all"}
    assert effects["all"] == {"accuracy": real_summary["accuracy"], "difference": 0.0, "difference_ci95": [0.0, 0.0]}
    from thinker4d.commands.eval import main

    assert main(["--compare", str(runs["real"]), str(runs["zero"]), str(runs["mean"])]) == 0


def test_controls_refused_with_the_reason(bench, tmp_path):  # noqa: F811
    from thinker4d.errors import UserError

    with pytest.raises(ValueError, match="needs latent_mean"):
        EvalConfig(latent_intervention="mean")
    with pytest.raises(ValueError, match="batch_size >= 2"):
        EvalConfig(latent_intervention="shuffle", batch_size=1)
    with pytest.raises(ValueError, match="must be one of"):
        EvalConfig(latent_intervention="blur")
    processor = build_tiny_processor("qwen2_5_vl")
    stock = build_tiny_model("qwen2_5_vl", processor)
    task = load_task("dsr_bench")
    with pytest.raises(UserError, match="needs a thinker4d model"):
        evaluate_model(
            stock, processor, task, task.load(bench), tmp_path / "o", EvalConfig(latent_intervention="zero")
        )
    import thinker4d

    model, processor = thinker4d.from_base(stock, processor, latent_size=2)
    config = EvalConfig(latent_intervention="mean", latent_mean=str(tmp_path / "nothing"))
    with pytest.raises(UserError, match="not found"):
        evaluate_model(model, processor, task, task.load(bench), tmp_path / "o2", config)
    torch.save(torch.zeros(3, 5), tmp_path / "mean.pt")  # neither the hidden size nor K rows
    config = EvalConfig(latent_intervention="mean", latent_mean=str(tmp_path / "mean.pt"))
    with pytest.raises(UserError, match="hidden size"):
        evaluate_model(model, processor, task, task.load(bench), tmp_path / "o3", config)


def test_blind_frames_are_mid_grey():
    from thinker4d.eval.runner import blind_frames

    frames = np.random.default_rng(0).integers(0, 255, (5, 8, 6, 3), dtype=np.uint8)
    grey = blind_frames(frames)
    assert grey.shape == frames.shape and grey.dtype == np.uint8 and (grey == 128).all()
