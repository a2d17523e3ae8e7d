"""End to end: the eval runner on a tiny benchmark in the released DSR-Bench layout, with tiny models."""

import json

import pandas as pd
import pytest
import torch

from thinker4d.eval import EvalConfig, load_task
from thinker4d.eval.runner import evaluate_model, shard
from thinker4d.tiny import build_tiny_model, build_tiny_processor


OPTS = ["A. (1) Become larger.", "B. (1) Become smaller.", "C. (1) Keep constant.", "D. (1) Cannot tell."]
RESULT_FIELDS = {"index", "id", "task", "gt", "pred", "raw", "hit", "error"}
SUMMARY_FIELDS = {
    "total", "evaluated", "errors", "correct", "accuracy", "subtask_accuracy", "subtask_total", "macro_accuracy",
    "parser", "generation", "model", "benchmark", "thinker4d_version", "error_counts", "lenient", "micro_accuracy",
}  # fmt: skip


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """7 questions: 5 answerable over 3 tiny mp4s, one missing video, one broken row (answer not a letter)."""
    from test_eval import make_mp4

    root = tmp_path_factory.mktemp("dsr")
    (root / "videos").mkdir()
    for v in ("v0", "v1", "v2"):
        make_mp4(root / "videos" / f"{v}.mp4", n_frames=8, size=32, fps=4)
    rows = [
        ("v0", "abs_dis", "A"),
        ("v1", "abs_dis", "B"),
        ("v2", "rel_dir", "C"),
        ("gone", "rel_dir", "D"),
        ("v0", "non_temp", "Based"),
        ("v1", "non_temp", "A"),
        ("v2", "abs_spd", "B"),
    ]
    pd.DataFrame(
        [
            {"videoID": v, "question": f"Question {i}: how does the distance change?", "options": OPTS, "answer": a,
             "type": t}
            for i, (v, t, a) in enumerate(rows)
        ]
    ).to_parquet(root / "benchmark.parquet")  # fmt: skip
    return root


@pytest.fixture(scope="module")
def tiny():
    processor = build_tiny_processor("qwen2_5_vl")
    return build_tiny_model("qwen2_5_vl", processor), processor


class Scripted(torch.nn.Module):
    """Runs the real tiny model's `generate` (prompt, video and left padding are real), then writes a scripted answer
    for question `i` into the completion; counts calls and can fail on purpose."""

    def __init__(self, model, tokenizer, answers, fail_on_call=None, fail_question=None):
        super().__init__()
        self.model, self.tok, self.answers = model, tokenizer, answers
        self.calls, self.rows, self.fail_on_call, self.fail_question = 0, 0, fail_on_call, fail_question

    @property
    def device(self):
        return self.model.device

    @property
    def generation_config(self):
        return self.model.generation_config

    def generate(self, input_ids, **kwargs):
        self.calls += 1
        if self.fail_on_call == self.calls:
            raise KeyboardInterrupt  # an interrupted run (Ctrl-C / a killed job)
        prompts = self.tok.batch_decode(input_ids)
        if self.fail_question is not None and any(f"Question {self.fail_question}:" in p for p in prompts):
            raise RuntimeError("CUDA out of memory (simulated)")
        self.rows += len(prompts)
        real = self.model.generate(input_ids=input_ids, **kwargs)
        assert real.shape[0] == input_ids.shape[0]
        eos = self.tok.eos_token_id
        outs = []
        for p in prompts:
            i = int(p.split("Question ")[1].split(":")[0])
            outs.append(self.tok.encode(self.answers.get(i, "")) + [eos])
        width = max(len(o) for o in outs)
        pad = self.tok.pad_token_id
        tail = torch.tensor([o + [pad] * (width - len(o)) for o in outs])
        return torch.cat([input_ids.cpu(), tail], dim=1)


ANSWERS = {
    0: "<think>the gap grows<|latent_start|><|latent_pad|><|latent_end|></think><answer>A. Become larger</answer>",
    1: "<answer>(1) Become smaller.</answer>",  # the option text -> B
    2: "<answer>Based on the video</answer> so C",  # strict: no answer; lenient: C
    5: "<answer>b</answer>",  # wrong (gt A)
    6: "<answer>B</answer>",
}


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_end_to_end_results_and_summary(bench, tiny, tmp_path):
    model, processor = tiny
    task = load_task("dsr_bench")
    scripted = Scripted(model, processor.tokenizer, ANSWERS)
    cfg = EvalConfig(batch_size=2, max_new_tokens=4, cache_dir=str(tmp_path / "cache"))
    summary = evaluate_model(scripted, processor, task, task.load(bench), tmp_path / "out", cfg, model_name="tiny")
    recs = _read(tmp_path / "out" / "results.jsonl")
    assert [r["index"] for r in recs] == list(range(7))
    assert all(RESULT_FIELDS <= set(r) for r in recs)
    by = {r["index"]: r for r in recs}
    assert by[0]["pred"] == "A" and by[0]["hit"] == 1 and "<|latent_pad|>" in by[0]["raw"]
    assert by[1]["pred"] == "B" and by[1]["hit"] == 1
    assert by[2]["pred"] is None and by[2]["hit"] == 0 and by[2]["pred_lenient"] == "C" and by[2]["hit_lenient"] == 1
    assert by[3]["error"].startswith("missing_video:") and "gone.mp4" in by[3]["error"] and by[3]["hit"] == 0
    assert by[4]["error"].startswith("bad_row:") and "'Based'" in by[4]["error"]
    assert by[5]["pred"] == "B" and by[5]["hit"] == 0
    assert by[6]["hit"] == 1
    assert "<|im_end|>" not in by[0]["raw"] and "<|endoftext|>" not in by[6]["raw"]  # eos / pad stripped

    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk == summary and SUMMARY_FIELDS <= set(summary)
    assert (summary["total"], summary["evaluated"], summary["errors"], summary["correct"]) == (7, 5, 2, 3)
    assert summary["error_counts"] == {"bad_row": 1, "missing_video": 1}
    assert summary["accuracy"] == pytest.approx(3 / 7)
    assert summary["subtask_total"] == {"abs_dis": 2, "abs_spd": 1, "rel_dir": 2, "non_temp": 2}
    assert summary["subtask_accuracy"] == {"abs_dis": 1.0, "abs_spd": 1.0, "rel_dir": 0.0, "non_temp": 0.0}
    assert summary["macro_accuracy"] == pytest.approx(0.5)
    assert summary["lenient"]["accuracy"] == pytest.approx(4 / 7)
    assert summary["parser"] == "strict" and summary["generation"]["do_sample"] is False
    assert summary["benchmark"] == "dsr_bench" and summary["model"] == "tiny"
    # 5 answerable rows in batches of 2 -> 3 generate calls; broken rows never reach the model
    assert scripted.calls == 3 and scripted.rows == 5
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 3  # each video decoded once

    # a finished run is not redone
    again = evaluate_model(scripted, processor, task, task.load(bench), tmp_path / "out", cfg, model_name="tiny")
    assert again == summary and scripted.calls == 3


def test_interrupted_run_resumes_without_regenerating(bench, tiny, tmp_path):
    model, processor = tiny
    task = load_task("dsr_bench")
    cfg = EvalConfig(batch_size=2, max_new_tokens=4, cache_dir=str(tmp_path / "cache"))
    out = tmp_path / "out"
    first = Scripted(model, processor.tokenizer, ANSWERS, fail_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        evaluate_model(first, processor, task, task.load(bench), out, cfg, model_name="tiny")
    assert not (out / "summary.json").exists() and not (out / "results.jsonl").exists()
    partial = _read(out / "parts" / "rank0.jsonl")
    # error rows are written first, then the first batch (questions 0, 1)
    assert sorted(r["index"] for r in partial) == [0, 1, 3, 4]

    second = Scripted(model, processor.tokenizer, ANSWERS)
    summary = evaluate_model(second, processor, task, task.load(bench), out, cfg, model_name="tiny")
    assert second.rows == 3 and second.calls == 2  # only questions 2, 5, 6
    assert summary["correct"] == 3 and summary["total"] == 7
    assert [r["index"] for r in _read(out / "results.jsonl")] == list(range(7))

    with pytest.raises(ValueError, match="holds a run with different settings.*max_new_tokens"):
        evaluate_model(second, processor, task, task.load(bench), out, EvalConfig(max_new_tokens=5), model_name="tiny")


def test_generation_error_is_recorded_per_row(bench, tiny, tmp_path):
    model, processor = tiny
    task = load_task("dsr_bench")
    scripted = Scripted(model, processor.tokenizer, ANSWERS, fail_question=1)
    cfg = EvalConfig(batch_size=4, max_new_tokens=4, cache_dir=str(tmp_path / "cache"))
    summary = evaluate_model(scripted, processor, task, task.load(bench), tmp_path / "o", cfg, model_name="tiny")
    by = {r["index"]: r for r in _read(tmp_path / "o" / "results.jsonl")}
    assert by[1]["error"] == "generation_error: RuntimeError: CUDA out of memory (simulated)"
    assert by[0]["hit"] == 1 and by[2]["error"] is None  # batch neighbours retried one by one
    assert summary["error_counts"] == {"bad_row": 1, "generation_error": 1, "missing_video": 1}
    assert summary["correct"] == 2

    scripted.fail_question = None  # --retry-errors redoes only the failed generation
    calls = scripted.calls
    cfg.retry_errors = True
    (tmp_path / "o" / "summary.json").unlink()
    summary = evaluate_model(scripted, processor, task, task.load(bench), tmp_path / "o", cfg, model_name="tiny")
    assert (
        scripted.calls == calls + 1 and summary["correct"] == 3 and "generation_error" not in summary["error_counts"]
    )


class FakeState:
    def __init__(self, index, num):
        self.process_index, self.num_processes, self.is_main_process = index, num, index == 0

    def wait_for_everyone(self):
        pass


def test_two_process_sharding(bench, tiny, tmp_path):
    model, processor = tiny
    task = load_task("dsr_bench")
    cfg = EvalConfig(batch_size=2, max_new_tokens=4, cache_dir=str(tmp_path / "cache"))
    out = tmp_path / "out"
    scripted = Scripted(model, processor.tokenizer, ANSWERS)
    # the main process alone cannot finish: rank 1's rows are missing, so no summary is written
    with pytest.raises(RuntimeError, match=r"3 of 7 rows have no result .*Rerun the same command"):
        evaluate_model(scripted, processor, task, task.load(bench), tmp_path / "lonely", cfg, state=FakeState(0, 2))
    assert not (tmp_path / "lonely" / "summary.json").exists()

    assert evaluate_model(scripted, processor, task, task.load(bench), out, cfg, state=FakeState(1, 2)) is None
    rank1 = sorted(r["index"] for r in _read(out / "parts" / "rank1.jsonl"))
    summary = evaluate_model(scripted, processor, task, task.load(bench), out, cfg, state=FakeState(0, 2))
    rank0 = sorted(r["index"] for r in _read(out / "parts" / "rank0.jsonl"))
    assert rank1 == [4, 5, 6] and rank0 == [0, 1, 2, 3] and summary["correct"] == 3
    assert [r["index"] for r in _read(out / "results.jsonl")] == list(range(7))


@pytest.mark.parametrize("n", [0, 1, 5, 7, 8])
def test_shard_matches_split_between_processes(n):
    from accelerate import PartialState

    items = list(range(n))
    parts = [shard(items, i, 3) for i in range(3)]
    assert sum(parts, []) == items
    for i in range(3):  # the same slice accelerate gives process i of 3
        with PartialState.split_between_processes(FakeState(i, 3), items) as got:
            assert got == parts[i]


def test_batched_equals_one_by_one_and_samples(bench, tiny, tmp_path):
    model, processor = tiny
    task = load_task("dsr_bench")
    examples = task.load(bench, limit=3)
    raws = {}
    for bs in (1, 3):
        cfg = EvalConfig(batch_size=bs, max_new_tokens=6, cache_dir=str(tmp_path / "cache"))
        evaluate_model(model, processor, task, examples, tmp_path / f"b{bs}", cfg)
        raws[bs] = [r["raw"] for r in _read(tmp_path / f"b{bs}" / "results.jsonl")]
    assert raws[1] == raws[3] and all(len(r) > 0 for r in raws[1])

    cfg = EvalConfig(batch_size=3, max_new_tokens=6, num_samples=2, seed=3, cache_dir=str(tmp_path / "cache"))
    s = evaluate_model(model, processor, task, examples, tmp_path / "s", cfg)
    recs = _read(tmp_path / "s" / "results.jsonl")
    assert [(r["index"], r["sample"]) for r in recs] == [(i, j) for i in range(3) for j in range(2)]
    assert s["num_samples"] == 2 and s["records"] == 6 and len(s["sample_accuracy"]) == 2
    assert s["generation"]["do_sample"] and s["generation"]["seed"] == 3
    evaluate_model(model, processor, task, examples, tmp_path / "s2", cfg)
    assert [r["raw"] for r in _read(tmp_path / "s2" / "results.jsonl")] == [r["raw"] for r in recs]
    with pytest.raises(ValueError, match="num_samples > 1 with do_sample=False"):
        EvalConfig(num_samples=2, do_sample=False)


def test_synthdsr_end_to_end(tiny, tmp_path):
    import datasets

    from test_eval import _synthdsr_rows

    model, processor = tiny
    datasets.Dataset.from_dict(_synthdsr_rows()).save_to_disk(tmp_path / "synth")
    task = load_task("synthdsr")
    s = evaluate_model(
        model, processor, task, task.load(tmp_path / "synth"), tmp_path / "o", EvalConfig(max_new_tokens=3)
    )
    assert s["total"] == 3 and s["evaluated"] == 2 and s["error_counts"] == {"bad_row": 1}
    assert s["subtask_names"]["camera_motion"] == "Camera Motion"


def test_thinker4d_model_and_cli(bench, tmp_path, capsys):
    import thinker4d
    from thinker4d.commands.eval import main

    processor = build_tiny_processor("qwen3_vl")
    model, processor = thinker4d.from_base(build_tiny_model("qwen3_vl", processor), processor, latent_size=2)
    model.save_pretrained(tmp_path / "ckpt")
    processor.save_pretrained(tmp_path / "ckpt")
    args = [
        "--model_name_or_path",
        str(tmp_path / "ckpt"),
        "--benchmark",
        "dsr_bench",
        "--dataset_name",
        str(bench),
        "--output_dir",
    ]
    args += [str(tmp_path / "run"), "--max-new-tokens", "5", "--batch-size", "3", "--cache-dir", str(tmp_path / "c")]
    assert main(args + ["--plot", str(tmp_path / "p.png")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["total"] == 7 and summary["evaluated"] == 5 and summary["model"] == str(tmp_path / "ckpt")
    assert (tmp_path / "p.png").is_file()
    out = capsys.readouterr().out
    assert "Abs Dis" in out and "errors (counted wrong)" in out
    assert main(["--compare", str(tmp_path / "run"), str(tmp_path / "run")]) == 0
    with pytest.raises(SystemExit):
        main(["--model_name_or_path", "x"])
    assert "missing --benchmark, --dataset_name, --output_dir" in capsys.readouterr().err
