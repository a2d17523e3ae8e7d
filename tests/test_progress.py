"""The training progress callback: one bar with the loss in its postfix, one summary line, every log dict in a JSON-lines
file (also across a resume), Trainer's printing callbacks swapped out and the other callbacks left as they were."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from thinker4d.trainers import TrainingProgressCallback, use_training_progress


class Regression(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, x, labels):
        return {"loss": torch.nn.functional.mse_loss(self.linear(x).squeeze(-1), labels)}


class Rows(torch.utils.data.Dataset):
    def __init__(self, n=32):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x.sum(-1)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


class Recorder(TrainerCallback):
    """Stands in for a `report_to` tracker: keeps a copy of every log dict it is given."""

    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs))


def _trainer(out, max_steps, **kwargs):
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=max_steps,
        per_device_train_batch_size=4,
        learning_rate=0.05,
        lr_scheduler_type="constant",  # the same schedule for runs of different lengths (the resume test)
        logging_steps=1,
        save_steps=2,
        report_to="none",
        use_cpu=True,
        remove_unused_columns=False,
        seed=0,
        **kwargs,
    )
    recorder = Recorder()
    torch.manual_seed(0)  # the same initial weights in every run (the resume test compares two runs)
    return Trainer(model=Regression(), args=args, train_dataset=Rows(), callbacks=[recorder]), recorder


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_progress_bar_summary_and_log_file(tmp_path, capfd):
    trainer, recorder = _trainer(tmp_path / "run", 6)
    others = [cb for cb in trainer.callback_handler.callbacks if not isinstance(cb, ProgressCallback)]
    callback = use_training_progress(trainer, description="toy")
    assert isinstance(callback, TrainingProgressCallback)
    assert trainer.callback_handler.callbacks == [*others, callback]  # only the printing callback was swapped
    trainer.train()
    out, err = capfd.readouterr()

    # one JSON line per log call, each the matching entry of trainer.state.log_history
    logged = _lines(tmp_path / "run" / "log_history.jsonl")
    assert len(logged) == len(recorder.logs) == 7  # six steps and the end-of-training metrics
    assert logged == json.loads(json.dumps(trainer.state.log_history))
    assert [h["step"] for h in logged if "loss" in h] == [1, 2, 3, 4, 5, 6]
    # the other callbacks get the log dicts whole (ProgressCallback and PrinterCallback pop `total_flos`)
    assert "total_flos" in recorder.logs[-1] and "train_loss" in recorder.logs[-1]

    # no log dict on the screen; the bar's postfix carries the latest loss; one summary line on stdout
    assert "{'loss'" not in out + err and "'grad_norm'" not in out + err
    last_loss = f"{logged[-2]['loss']:.4g}"
    assert f"loss={last_loss}" in err
    assert "toy: " in err and "6/6" in err
    assert out.splitlines() == [out.strip()]
    summary = out.strip()
    assert summary.startswith("toy: 6 steps in ")
    assert f"loss {logged[0]['loss']:.4g} -> {last_loss}" in summary
    assert summary.endswith(f"log dicts in {tmp_path / 'run' / 'log_history.jsonl'}")


def test_resumed_run_log_file_holds_every_step_once(tmp_path, capfd):
    full, _ = _trainer(tmp_path / "full", 4)
    use_training_progress(full)
    full.train()
    part, _ = _trainer(tmp_path / "part", 3)
    use_training_progress(part)
    part.train()  # saves checkpoint-2 and logs step 3, which the resumed run logs again
    resumed, _ = _trainer(tmp_path / "part", 4)
    use_training_progress(resumed, log_file=tmp_path / "part" / "log_history.jsonl")
    resumed.train(resume_from_checkpoint=str(tmp_path / "part" / "checkpoint-2"))
    out = capfd.readouterr().out

    logged = _lines(tmp_path / "part" / "log_history.jsonl")
    assert logged == json.loads(json.dumps(resumed.state.log_history))
    assert [h["step"] for h in logged if "loss" in h] == [1, 2, 3, 4]
    want = [h["loss"] for h in _lines(tmp_path / "full" / "log_history.jsonl") if "loss" in h]
    assert [h["loss"] for h in logged if "loss" in h] == pytest.approx(want, rel=1e-5)
    assert "part: 2 steps in " in out and "(resumed at step 2)" in out


def test_disable_tqdm_swaps_the_printer_and_keeps_the_summary(tmp_path, capfd):
    trainer, recorder = _trainer(tmp_path / "run", 3, disable_tqdm=True)
    assert any(isinstance(cb, PrinterCallback) for cb in trainer.callback_handler.callbacks)
    use_training_progress(trainer, log_file=tmp_path / "logs" / "train.jsonl")
    assert not any(isinstance(cb, (PrinterCallback, ProgressCallback)) for cb in trainer.callback_handler.callbacks)
    trainer.train()
    out, err = capfd.readouterr()
    assert "{'loss'" not in out + err and out.count("\n") == 1 and out.startswith("run: 3 steps in ")
    assert len(_lines(tmp_path / "logs" / "train.jsonl")) == len(recorder.logs) == 4


def _without(argv, flag):
    i = argv.index(flag)
    return argv[:i] + argv[i + 2 :]


@pytest.mark.parametrize("verb", ["dift", "grpo"])
def test_training_verbs_show_a_bar_and_write_every_log_dict(verb, tmp_path):
    if verb == "dift":
        from test_dift import _cli_base

        argv = _without(_cli_base(tmp_path), "--disable_tqdm") + ["--max_steps", "3"]
    else:
        from test_grpo import _grpo_cli_inputs

        argv = _without(_grpo_cli_inputs(tmp_path), "--disable_tqdm") + ["--max_steps", "3"]
        argv += ["--output_dir", str(tmp_path / "out")]
    # In a process of its own, as a user runs it: pytest would catch the warnings that reach the terminal.
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    run = subprocess.run(
        [sys.executable, "-m", "thinker4d.cli", verb, *argv], env=env, capture_output=True, text=True, timeout=600
    )
    out, err = run.stdout, run.stderr
    assert run.returncode == 0, err[-3000:]
    logged = _lines(tmp_path / "out" / "log_history.jsonl")
    state = json.loads((tmp_path / "out" / "checkpoint-3" / "trainer_state.json").read_text())
    assert logged[:-1] == state["log_history"] and "train_runtime" in logged[-1]
    assert [h["step"] for h in logged if "loss" in h] == [1, 2, 3]
    assert "{'loss'" not in out + err and "'grad_norm'" not in out + err
    assert f"{verb}: 3 steps in " in out
    assert f"{verb}: 100%" in err and "loss=" in err and ("reward=" in err) == (verb == "grpo")
    # warnings nobody can act on stay out of the terminal
    training = err.split(f"{verb}: ", 1)[1]  # trl's calls around every rollout (the config's one comes before)
    assert not re.search(r"gradient_checkpointing\w*` is deprecated", training), training
    assert "Passing `generation_config` together with" not in err
