"""lmms-eval runs the model `thinker4d` (found through its `lmms_eval.models` entry point) on the thinker4d tasks (found
through `--include_path`), end to end on a tiny checkpoint and small local sets, and gives what `thinker4d eval`
gives on the same data: the same completion, record and error reason per question, and the same scores."""

import json
import os
import subprocess
import sys

import pytest
import torch
from lmms_eval.evaluator import simple_evaluate
from lmms_eval.tasks import TaskManager

from thinker4d.commands.eval import main as thinker4d_eval
from thinker4d.eval import EvalConfig, load_task
from thinker4d.eval.runner import evaluate_model
from thinker4d.lmms import TASKS_DIR
from thinker4d.lmms.model import Thinker4DLMM
from thinker4d.lmms.task import data_env


MAX_NEW_TOKENS = 12
# What `thinker4d eval` records per row that lmms-eval has no way to report (the latent decoder's slot counts).
LATENT_FIELDS = {"latent_slots", "intervened_slots"}


@pytest.fixture(scope="module")
def task_manager():
    return TaskManager(include_path=str(TASKS_DIR))


def run_lmms(model, task_manager, benchmark, batch_size, **kwargs):
    """`lmms-eval --model thinker4d --tasks thinker4d_<benchmark> --include_path ...` in-process; returns
    `(metrics, {doc_id: sample})`."""
    task = f"thinker4d_{benchmark}"
    out = simple_evaluate(
        model=model,
        tasks=[task],
        batch_size=batch_size,
        gen_kwargs=f"max_new_tokens={MAX_NEW_TOKENS}",
        log_samples=True,
        task_manager=task_manager,
        **kwargs,
    )
    return out["results"][task], {s["doc_id"]: s for s in out["samples"][task]}


def read_results(folder):
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]


def assert_same(metrics, samples, summary, records):
    assert metrics["accuracy,none"] == pytest.approx(summary["accuracy"])
    assert metrics["macro_accuracy,none"] == pytest.approx(summary["macro_accuracy"])
    assert metrics["accuracy_lenient,none"] == pytest.approx(summary["lenient"]["accuracy"])
    assert sorted(samples) == [r["index"] for r in records]
    for r in records:
        lmms_record = samples[r["index"]]["accuracy"]
        assert {k: v for k, v in lmms_record.items() if k not in LATENT_FIELDS} == {
            k: v for k, v in r.items() if k not in LATENT_FIELDS
        }, r["index"]
        if not r["error"]:
            assert samples[r["index"]]["resps"][0][0] == r["raw"]


@pytest.mark.parametrize("benchmark", ["synthdsr", "dsr_bench", "dyn_bench", "vlm4d"])
def test_same_completions_and_scores_as_thinker4d_eval(benchmark, checkpoint, benchmark_data, task_manager, tmp_path):
    data = benchmark_data(benchmark)
    args = ["--model_name_or_path", str(checkpoint), "--benchmark", benchmark, "--dataset_name", str(data)]
    args += ["--output_dir", str(tmp_path / "t")]
    assert thinker4d_eval(args + ["--max-new-tokens", str(MAX_NEW_TOKENS), "--batch-size", "2"]) == 0
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    records = read_results(tmp_path / "t")

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(data_env(benchmark), str(data))
        metrics, samples = run_lmms("thinker4d", task_manager, benchmark, 2, model_args=f"pretrained={checkpoint}")
    assert_same(metrics, samples, summary, records)
    assert summary["total"] == len(records) >= 2
    if benchmark != "synthdsr":  # the hand-made sets carry a broken row or a missing video
        assert summary["errors"] >= 1


class AnswerFromInputs(torch.nn.Module):
    """The real model's latent decoding, then `<answer>X</answer>` with X picked by a checksum of the prompt ids and
    the video pixels: the scores are not all zero, and they agree only where both harnesses send the same inputs."""

    def __init__(self, model, tokenizer):
        super().__init__()
        self.model, self.tok = model, tokenizer

    @property
    def device(self):
        return self.model.device

    @property
    def generation_config(self):
        return self.model.generation_config

    @property
    def config(self):
        return self.model.config

    def generate(self, input_ids, **kwargs):
        assert input_ids.shape[0] == 1, "the checksum is per batch: run with batch size 1"
        out = self.model.generate(input_ids=input_ids, **kwargs)
        sequences = out.sequences if hasattr(out, "sequences") else out
        pixels = kwargs["pixel_values_videos"].double()
        checksum = int(input_ids.sum()) + int((pixels * 1000).sum().abs())
        answer = self.tok.encode(f"<answer>{'ABC'[checksum % 3]}</answer>") + [self.tok.eos_token_id]
        return torch.cat([sequences.cpu(), torch.tensor([answer])], dim=1)


def test_scored_answers_give_the_same_nonzero_accuracy(checkpoint, benchmark_data, task_manager, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import thinker4d.models  # noqa: F401  (registers the thinker4d auto classes)

    data = benchmark_data("synthdsr")
    task = load_task("synthdsr")
    processor = AutoProcessor.from_pretrained(checkpoint)
    model = AnswerFromInputs(AutoModelForImageTextToText.from_pretrained(checkpoint).eval(), processor.tokenizer)
    config = EvalConfig(max_new_tokens=MAX_NEW_TOKENS, batch_size=1)
    summary = evaluate_model(model, processor, task, task.load(data), tmp_path / "t", config)
    records = read_results(tmp_path / "t")

    lmms = Thinker4DLMM(pretrained=str(checkpoint), batch_size=1)
    lmms.model = AnswerFromInputs(lmms.model, lmms.processor.tokenizer)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(data_env("synthdsr"), str(data))
        metrics, samples = run_lmms(lmms, task_manager, "synthdsr", 1)
    assert_same(metrics, samples, summary, records)
    assert 0 < summary["accuracy"] and all(r["pred"] for r in records)


def test_loglikelihood_is_refused_with_the_tasks_that_need_it(checkpoint):
    from lmms_eval.api.instance import Instance

    lmms = Thinker4DLMM(pretrained=str(checkpoint))
    request = Instance("loglikelihood", ("ctx", "cont"), 0, {"task": "mme_ll", "doc_id": 0, "repeats": 1})
    with pytest.raises(NotImplementedError, match="These tasks need it.*: mme_ll"):
        lmms.loglikelihood([request])


def test_cli_finds_the_model_and_the_tasks(checkpoint, benchmark_data, tmp_path):
    """The `lmms-eval` command itself, as a user runs it: entry point, `--include_path`, `--limit`."""
    env_var = data_env("dyn_bench")
    cmd = [sys.executable, "-m", "lmms_eval", "--model", "thinker4d", "--model_args", f"pretrained={checkpoint}"]
    cmd += ["--tasks", "thinker4d_dyn_bench", "--include_path", str(TASKS_DIR), "--limit", "2"]
    cmd += ["--gen_kwargs", f"max_new_tokens={MAX_NEW_TOKENS}", "--output_path", str(tmp_path / "o")]
    env = {**os.environ, env_var: str(benchmark_data("dyn_bench"))}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "thinker4d_dyn_bench" in done.stdout and "accuracy" in done.stdout
