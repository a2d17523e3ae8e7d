"""`thinker4d quickstart` at toy scale: every stage runs, the report has the documented fields, reruns reuse finished
stages (also after Ctrl-C), and a different configuration in the same folder is refused."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from thinker4d.datasets_io import load_thinker4d_dataset
from thinker4d.quickstart import MODELS, PROBE_MODELS, QuickstartConfig, option_reading_rows, run_quickstart
from thinker4d.quickstart.runner import _stage_plan


TOY = dict(
    train_clips=10,
    eval_questions=6,
    tasks=["camera_motion", "object_distance"],
    warmup_steps=2,
    sft_steps=2,
    grpo_steps=1,
    batch_size=4,
    num_generations=2,
    hidden_size=32,
    vision_hidden_size=32,
    vocab_size=400,
    max_new_tokens=24,
)


def marker_times(root: Path) -> dict:
    return {p.parent.name: p.stat().st_mtime_ns for p in root.glob("*/DONE.json")}


def expected_scan(texts, k):
    """The option scan written out by hand: `A. <text>? No. B. <text>? Yes` up to option `k`."""
    return " ".join(f"{'ABCD'[i]}. {t}? {'Yes' if i == k else 'No.'}" for i, t in enumerate(texts[: k + 1]))


def test_option_reading_rows_are_valid_and_answerable_from_the_options():
    import numpy as np
    from datasets import Dataset

    from thinker4d.prompting import option_text
    from thinker4d.trainers.dift_collator import row_problem

    frames = [np.zeros((8, 8, 3), np.uint8)] * 2
    train = Dataset.from_list(
        [
            {"id": f"r{i}", "frames": frames, "fps": 2.0, "options": opts, "cot": "x"}
            for i, opts in enumerate(
                [["Pan Left", "Tilt Up", "Pan Right", "Tilt Down"], ["Closer", "Farther", "Same"]] * 20
            )
        ]
    )
    rows = option_reading_rows(train, seed=0)
    assert len(rows) == len(train) and rows.column_names[:4] == ["id", "frames", "fps", "options"]
    vocabulary = {"Pan Left", "Tilt Up", "Pan Right", "Tilt Down", "Closer", "Farther", "Same"}
    letters = set()
    for src, row in zip(train, rows):
        assert row["id"] == src["id"] + "/option-reading" and len(row["options"]) == len(src["options"])
        assert set(row["options"]) <= vocabulary and len(set(row["options"])) == len(row["options"])
        named = row["question"].removeprefix("Which option says ").removesuffix("?")
        assert option_text(row["options"], row["answer"]) == f"{row['answer']}. {named}"
        letter = row["answer"]
        scan = expected_scan(row["options"], "ABCD".index(letter))
        assert row["cot"] == f"<think>It says {named}. {scan} = {letter}.</think><answer>{letter}. {named}</answer>"
        assert row_problem(row, "text_cot") is None
        letters.add(row["answer"])
    assert letters == set("ABCD")  # the answer letter is spread over the options
    assert option_reading_rows(train, seed=0)["cot"] == rows["cot"]
    assert option_reading_rows(train, seed=1)["cot"] != rows["cot"]
    with pytest.raises(ValueError, match="at least 2 distinct option texts"):
        option_reading_rows(Dataset.from_list([{"id": "a", "frames": frames, "fps": 1.0, "options": ["x", "x"]}]))


def test_quickstart_end_to_end_and_resume(tmp_path, capfd):
    cfg = QuickstartConfig(**TOY)
    summary = run_quickstart(cfg, tmp_path)
    # a short terminal: a line per stage, a bar and a summary line per training stage, no log dicts; every log dict is
    # in the stage's log_history.jsonl instead (the same entries as its log_history.json)
    out, err = capfd.readouterr()
    assert (out + err).count("\n") < 60, out + err  # lines on a terminal (a bar redraws its line with "\r")
    assert "{'loss'" not in out + err and "'train_runtime'" not in out + err
    assert [line for line in out.splitlines() if line.startswith("[")] == [
        f"[{i}/13] {name}: {line}" for i, (name, line) in enumerate(_stage_plan(cfg).items(), 1)
    ]
    trained = ("warmup", "raw_qa", "text_cot", "dift", "dift_grpo")
    for name in trained:
        history = json.loads((tmp_path / f"train_{name}" / "log_history.json").read_text())
        logged = [
            json.loads(line) for line in (tmp_path / f"train_{name}" / "log_history.jsonl").read_text().splitlines()
        ]
        assert logged == history and history, name
        assert f"train_{name}: {history[-1]['step']} step" in out
    grpo = json.loads((tmp_path / "train_dift_grpo" / "log_history.json").read_text())
    assert [h["step"] for h in grpo if "reward" in h] == list(range(1, TOY["grpo_steps"] + 1))
    for name in ("chance", *MODELS):
        assert name in summary, name
        accs = summary[name]
        assert set(accs) >= {"camera_motion", "object_distance", "all"}
        assert all(0.0 <= v <= 1.0 for v in accs.values())
    assert summary["chance"]["camera_motion"] == pytest.approx(0.25)
    assert set(summary["answer_text_accuracy"]) == set(MODELS)
    # controls: 95% intervals and the blind baseline for every model, the latent interventions for the DIFT models
    for name in MODELS:
        assert set(summary["ci95"][name]) == set(summary[name]), name
        assert all(low <= summary[name][t] <= high for t, (low, high) in summary["ci95"][name].items()), name
        blind = summary["blind"][name]
        assert set(blind) == set(summary[name])
        for task, effect in blind.items():
            assert effect["difference"] == pytest.approx(effect["accuracy"] - summary[name][task])
            low, high = effect["difference_ci95"]
            assert low <= effect["difference"] <= high
        assert json.loads((tmp_path / f"eval_{name}" / "blind" / "summary.json").read_text())["blind"] is True
    assert set(summary["interventions"]) == {"dift", "dift_grpo"}
    for name in ("dift", "dift_grpo"):
        ran = set(summary["interventions"][name])
        assert {"zero", "gaussian", "shuffle"} <= ran <= {"zero", "gaussian", "shuffle", "mean"}
        # "mean" needs the real run's fed-back vectors: it runs exactly when the model opened an imagery block
        assert ("mean" in ran) == (tmp_path / f"eval_{name}" / "run" / "latent_mean.pt").is_file()
        for intervention in ran:
            run = json.loads((tmp_path / f"eval_{name}" / intervention / "summary.json").read_text())
            assert run["latent_intervention"] == intervention
    assert all(0.0 <= v <= 1.0 for v in summary["answer_text_accuracy"]["dift"].values())
    # every model starts from the option-reading warm-up, which is the "untrained" model of the table
    assert json.loads((tmp_path / "train_warmup" / "DONE.json").read_text())["steps"] == TOY["warmup_steps"]
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["dift"] == summary["dift"]
    html = (tmp_path / "report.html").read_text()
    assert "DIFT + 4DRL" in html and "data:image/png;base64" in html
    # the reasoning trace is the final model's answer to a held-out SynthDSR question, not a training clip
    bench_ids = set(load_thinker4d_dataset(tmp_path / "synthdsr" / "benchmark", split="test")["id"])
    shown = re.search(r"held-out SynthDSR question (\S+)\)", html).group(1)
    assert shown in bench_ids and shown.split("/")[1] == "camera_motion"
    assert shown not in set(load_thinker4d_dataset(tmp_path / "data" / "dataset", split="train")["id"])
    assert (tmp_path / "figures" / "accuracy.png").stat().st_size > 1000
    assert (tmp_path / "figures" / "losses.png").stat().st_size > 1000
    assert not (tmp_path / "datasets_cache").exists()  # its own datasets cache goes when the run finishes
    # every model's evaluation is a complete thinker4d eval run
    for name in MODELS:
        run = json.loads((tmp_path / f"eval_{name}" / "run" / "summary.json").read_text())
        assert run["total"] == cfg.eval_questions and run["parser"]

    # rerun after losing the last evaluation: only that stage runs again
    before = marker_times(tmp_path)
    (tmp_path / "eval_dift_grpo" / "DONE.json").unlink()
    (tmp_path / "summary.json").unlink()
    again = run_quickstart(cfg, tmp_path)
    after = marker_times(tmp_path)
    for stage, mtime in before.items():
        if stage != "eval_dift_grpo":
            assert after[stage] == mtime, f"stage {stage} was redone"
    assert again["dift_grpo"] == summary["dift_grpo"]
    # reused stages keep the times recorded when they ran; the redone one gets its new time
    assert summary["reused_stages"] == []
    assert set(again["reused_stages"]) == set(summary["timings_s"]) - {"eval_dift_grpo"}
    # synthesis and training take well over the 0.1 s the times are rounded to (a fast stage may round to 0.0)
    assert all(summary["timings_s"][s] > 0 for s in ("data", "train_dift")), summary["timings_s"]
    for stage in again["reused_stages"]:
        assert again["timings_s"][stage] == summary["timings_s"][stage], stage
    # the redone evaluation resumes from its finished questions, so its new time may round to 0.0
    assert isinstance(again["timings_s"]["eval_dift_grpo"], float)
    report = (tmp_path / "report.md").read_text()
    assert json.dumps(again["timings_s"], indent=1) in report

    with pytest.raises(ValueError, match="other settings .*sft_steps"):
        run_quickstart(QuickstartConfig(**{**TOY, "sft_steps": 3}), tmp_path)


def test_quickstart_seeds_and_imagery_only_probe(tmp_path, capfd):
    from safetensors.torch import load_file

    from thinker4d.data.cot import IMAGERY_ONLY_BRIDGE

    cfg = QuickstartConfig(**{**TOY, "grpo_steps": 0, "warmup_steps": 0, "seeds": 2, "probe": True})
    summary = run_quickstart(cfg, tmp_path)
    out, _ = capfd.readouterr()
    plan = _stage_plan(cfg)
    assert [line for line in out.splitlines() if line.startswith("[")] == [
        f"[{i}/{len(plan)}] {name}: {line}" for i, (name, line) in enumerate(plan.items(), 1)
    ]
    assert (
        list(plan)[:4] == ["data", "synthdsr", "data_imagery_only", "seed_0/init"] and "seed_1/eval_probe_dift" in plan
    )
    names = ["untrained", "raw_qa", "text_cot", "dift", *PROBE_MODELS]
    assert summary["seeds"] == [0, 1] and [n for n in (*MODELS, *PROBE_MODELS) if n in summary] == names
    # every seed keeps its own numbers; the summary is their mean, with the spread and a pooled interval
    per_seed = {s: json.loads((tmp_path / f"seed_{s}" / "summary.json").read_text()) for s in (0, 1)}
    for s, one in per_seed.items():
        assert one["seed"] == s
        for name in names:
            run = json.loads((tmp_path / f"seed_{s}" / f"eval_{name}" / "run" / "summary.json").read_text())
            assert one[name] == pytest.approx(dict(run["subtask_accuracy"], all=run["accuracy"]))
    for name in names:
        for task, accuracy in summary[name].items():
            values = [per_seed[s][name][task] for s in (0, 1)]
            assert accuracy == pytest.approx(sum(values) / 2)
            spread = summary["spread"][name][task]
            assert spread["per_seed"] == pytest.approx(values)
            assert (spread["min"], spread["max"]) == (min(values), max(values))
            low, high = summary["ci95"][name][task]
            assert low <= accuracy <= high
    assert set(summary["interventions"]) == {"dift", "probe_dift"}
    for name, by_intervention in summary["interventions"].items():
        assert {"zero", "gaussian", "shuffle"} <= set(by_intervention)
        for intervention, effects in by_intervention.items():
            for task, effect in effects.items():
                diffs = [per_seed[s]["interventions"][name][intervention][task]["difference"] for s in (0, 1)]
                assert effect["seed_differences"] == pytest.approx(diffs)
                assert effect["difference"] == pytest.approx(sum(diffs) / 2)
                assert 0 <= effect["seeds_excluding_zero"] <= 2
    assert set(summary["comparisons"]) == {"dift - text_cot", "probe_dift - probe_text_cot", "probe_dift - raw_qa"}
    for task, d in summary["comparisons"]["probe_dift - raw_qa"].items():
        assert d["difference"] == pytest.approx(summary["probe_dift"][task] - summary["raw_qa"][task])
    # the probe: the same rows with CoTs that do not say what the imagery shows; its DIFT model learns the imagery,
    # its text CoT model does not
    compact = load_thinker4d_dataset(tmp_path / "data" / "dataset", split="train").select_columns(
        ["id", "answer", "cot"]
    )
    probe = load_thinker4d_dataset(tmp_path / "data_imagery_only" / "dataset", split="train")
    assert probe["id"] == compact["id"] and probe["answer"] == compact["answer"]
    assert all("<imagery>" in c and IMAGERY_ONLY_BRIDGE in c and " It moves " not in c for c in probe["cot"])
    for s in (0, 1):
        logs = {
            n: json.loads((tmp_path / f"seed_{s}" / f"train_{n}" / "log_history.json").read_text()) for n in names[1:]
        }
        assert any("imagery_loss" in h for h in logs["probe_dift"])
        assert not any("imagery_loss" in h for h in logs["probe_text_cot"])
    # the seeds train different models
    weights = [load_file(tmp_path / f"seed_{s}" / "train_dift" / "model" / "model.safetensors") for s in (0, 1)]
    assert any(not weights[0][k].equal(weights[1][k]) for k in weights[0])
    report = (tmp_path / "report.md").read_text()
    assert "means over 2 training seeds" in report and "Imagery-only probe" in report
    assert "| probe: DIFT | latents: zero |" in report and "Spread over the 2 training seeds" in report

    # a lost evaluation of the second seed is redone, nothing else; a half-written summary is never read back
    before = {p.parent: p.stat().st_mtime_ns for p in tmp_path.rglob("DONE.json")}
    (tmp_path / "seed_1" / "eval_probe_dift" / "DONE.json").unlink()
    (tmp_path / "summary.json").write_text('{"partial')
    again = run_quickstart(cfg, tmp_path)
    after = {p.parent: p.stat().st_mtime_ns for p in tmp_path.rglob("DONE.json")}
    assert {k for k in before if after[k] != before[k]} == {tmp_path / "seed_1" / "eval_probe_dift"}
    assert set(again["reused_stages"]) == set(plan) - {"seed_1/eval_probe_dift"}
    assert {k: again[k] for k in names} == {k: summary[k] for k in names}
    assert json.loads((tmp_path / "summary.json").read_text())["probe_dift"] == summary["probe_dift"]


def test_quickstart_flags_for_seeds_and_probe():
    from thinker4d.commands.quickstart import make_parser

    args = make_parser().parse_args(["--seeds", "3", "--probe"])
    assert (args.seeds, args.probe) == (3, True)
    assert make_parser().parse_args(["--no-probe"]).probe is False
    assert make_parser().parse_args([]).probe is None  # not given: the config's default (off)
    assert QuickstartConfig().probe is False and QuickstartConfig().seeds == 1
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        QuickstartConfig(seeds=0)


def test_settings_guard_reads_a_folder_written_before_a_setting_existed(tmp_path):
    import dataclasses

    from thinker4d.quickstart.stages import _settings_guard

    old = {k: v for k, v in dataclasses.asdict(QuickstartConfig()).items() if k not in ("seeds", "probe")}
    (tmp_path / "quickstart_config.json").write_text(json.dumps(old))
    _settings_guard(tmp_path, QuickstartConfig())  # the settings it lacks were at their defaults: the same run
    with pytest.raises(ValueError, match=r"other settings \(probe, seeds\)"):
        _settings_guard(tmp_path, QuickstartConfig(seeds=3, probe=True))


def test_ctrl_c_inside_a_finalizer_is_raised_again_outside_it(monkeypatch):
    import types

    from thinker4d import cli

    # Python drops an exception raised in __del__; the CLI's handler re-raises the signal outside it instead.
    class Finalized:
        def __del__(self):
            cli._interrupt(signal.SIGINT, sys._getframe())

    seen = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        obj = Finalized()
        del obj  # runs __del__: no exception, the signal is scheduled
        deadline = time.time() + 10
        while not seen and time.time() < deadline:
            time.sleep(0.01)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert seen == [signal.SIGINT]
    with pytest.raises(KeyboardInterrupt):  # anywhere else: Python's own behaviour
        cli._interrupt(signal.SIGINT, sys._getframe())

    # The CLI installs the handler for the verb's run only, and only over Python's default handler.
    during = []
    verb = types.SimpleNamespace(main=lambda rest: during.append(signal.getsignal(signal.SIGINT)) or 0)
    monkeypatch.setattr(cli.importlib, "import_module", lambda name: verb)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert cli.main(["demo"]) == 0
        assert during == [cli._interrupt] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # e.g. a background job: left alone
        assert cli.main(["demo"]) == 0
        assert during[-1] is signal.SIG_IGN and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_quickstart_ctrl_c_then_rerun_reuses_stages(tmp_path):
    out = tmp_path / "qs"
    args = [sys.executable, "-m", "thinker4d.cli", "quickstart", "--output_dir", str(out)]
    for key, value in TOY.items():
        args += ["--" + key.replace("_", "-")] + ([str(v) for v in value] if isinstance(value, list) else [str(value)])
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    # A shell that runs the suite in the background (or without a terminal) may start it with SIGINT ignored, which a
    # child would inherit; give the child the default disposition, as an interactive Ctrl-C sees it.
    proc = subprocess.Popen(
        args,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 600
    while not (out / "init" / "DONE.json").exists():
        assert proc.poll() is None, "quickstart exited before it could be interrupted"
        assert time.time() < deadline
        time.sleep(0.2)
    # One Ctrl-C should do (the CLI re-raises one that lands in a finalizer, test above); pressing it again every half
    # second, as a user would, keeps this test about resuming rather than about where the first signal lands.
    deadline = time.time() + 300
    proc.send_signal(signal.SIGINT)
    while proc.poll() is None:
        assert time.time() < deadline, "quickstart did not stop after Ctrl-C"
        try:
            proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
    assert proc.returncode != 0
    assert not (out / "summary.json").exists()
    done_before = marker_times(out)
    assert {"data", "synthdsr", "init"} <= set(done_before)
    # the training data's Arrow copy is in the output folder, not in the user's datasets cache
    assert any((out / "datasets_cache").rglob("*.arrow"))
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "held-out SynthDSR accuracy" in result.stdout
    done_after = marker_times(out)
    for stage in ("data", "synthdsr", "init"):
        assert done_after[stage] == done_before[stage], f"stage {stage} was redone after Ctrl-C"
    assert json.loads((out / "summary.json").read_text())["dift"]
    assert not (out / "datasets_cache").exists()


def test_quickstart_config_errors():
    with pytest.raises(ValueError, match="multiple of num_generations"):
        QuickstartConfig(batch_size=6, num_generations=4)
    with pytest.raises(ValueError, match="train_clips >= 8"):
        QuickstartConfig(train_clips=2)


def _verdict_sentences(verdict: str) -> list[list[float]]:
    """The numbers in each sentence of a verdict (a sentence ends with ". " or at the end; "4DRL" is a name)."""
    sentences = re.split(r"(?<=\.) (?=[A-Z])", verdict.strip())
    assert all(s.endswith(".") for s in sentences), sentences
    return [[float(x) for x in re.findall(r"(?<![\w.])[+-]?\d+(?:\.\d+)?(?![\w])", s)] for s in sentences]


def test_verdict_reports_chance_and_the_text_baseline_honestly():
    from thinker4d.quickstart.report import _verdict

    good = {"chance": {"camera_motion": 0.25}, "text_cot": {"camera_motion": 0.5}, "dift": {"camera_motion": 0.6}}
    verdict = _verdict(good, {"dift": {"camera_motion": 0.97}})
    # DIFT vs chance with the gap; the text baseline; the diagnostic share of named motions.
    assert _verdict_sentences(verdict) == [[60.0, 25.0, 35.0], [50.0], [97.0]]
    target, baseline, named = re.split(r"(?<=\.) (?=[A-Z])", verdict)
    assert "not" not in baseline.split() and "letter" in named  # DIFT ahead; naming beats letters by 37 points
    bad = {**good, "dift": {"camera_motion": 0.35}, "text_cot": {"camera_motion": 0.55}}
    verdict = _verdict(bad, {"dift": {"camera_motion": 0.4}})
    assert _verdict_sentences(verdict) == [[35.0, 25.0, 10.0], [55.0], [40.0]]
    target, baseline, named = re.split(r"(?<=\.) (?=[A-Z])", verdict)
    assert "not" in baseline.split()  # DIFT behind the text CoT
    assert "letter" not in named  # naming is as poor as the letters: not a letter problem
    assert "4DRL" not in verdict  # no RL phase in these results
    verdict = _verdict({**good, "dift_grpo": {"camera_motion": 0.5}})
    assert _verdict_sentences(verdict) == [[60.0, 25.0, 35.0], [50.0], [50.0, -10.0]]
    assert "4DRL" in verdict.rsplit(". ", 1)[-1]
    # With the interval over questions, the first sentence says where it lies against chance.
    for interval, words in (([0.52, 0.68], "entirely above chance"), ([0.2, 0.7], "which includes chance")):
        first = _verdict({**good, "ci95": {"dift": {"camera_motion": interval}}}).split(". ")[0]
        assert words in first and _verdict_sentences(first + ".")[0][4:] == [interval[0] * 100, interval[1] * 100]


def test_verdict_gives_each_other_task_one_sentence_read_from_its_intervals():
    from thinker4d.quickstart.report import _verdict

    results = {
        "chance": {"camera_motion": 0.25, "object_distance": 1 / 3, "all": 0.29},
        "untrained": {"camera_motion": 0.05, "object_distance": 0.6},  # not trained: never named
        "text_cot": {"camera_motion": 0.8, "object_distance": 0.35},
        "dift": {"camera_motion": 0.6, "object_distance": 0.4},
    }
    last = _verdict(results).rsplit(". ", 1)[-1]
    assert last.startswith("On object_distance, no trained model") and "untrained" not in last
    assert _verdict_sentences(last) == [[33.3, 40.0]]  # the best trained model; no interval in these results
    results["ci95"] = {"text_cot": {"object_distance": [0.25, 0.45]}, "dift": {"object_distance": [0.3, 0.5]}}
    last = _verdict(results).rsplit(". ", 1)[-1]
    assert "no trained model" in last and _verdict_sentences(last) == [[33.3, 40.0, 95.0, 30.0, 50.0]]
    results["ci95"]["dift"]["object_distance"] = [0.34, 0.46]  # DIFT's interval now lies above chance
    last = _verdict(results).rsplit(". ", 1)[-1]
    assert "lie above" in last and "DIFT 40.0%" in last and "text CoT" not in last


def _effect(accuracy, difference, low, high):
    return {"camera_motion": {"accuracy": accuracy, "difference": difference, "difference_ci95": [low, high]}}


def test_verdict_reads_the_controls_intervals_and_the_probe():
    from thinker4d.quickstart.report import _verdict

    accuracies = {
        "chance": {"camera_motion": 0.25},
        "raw_qa": {"camera_motion": 0.4},
        "text_cot": {"camera_motion": 0.5},
        "dift": {"camera_motion": 0.6},
        "probe_text_cot": {"camera_motion": 0.45},
        "probe_dift": {"camera_motion": 0.62},
    }
    uses = {
        **accuracies,
        "seeds": [0, 1, 2],
        "comparisons": {
            "dift - text_cot": _effect(0.6, 0.1, 0.02, 0.18),
            "probe_dift - probe_text_cot": _effect(0.62, 0.17, 0.05, 0.29),
        },
        "blind": {"dift": _effect(0.2, -0.4, -0.5, -0.3)},
        "interventions": {
            "dift": {"zero": _effect(0.4, -0.2, -0.3, -0.1), "shuffle": _effect(0.58, -0.02, -0.08, 0.04)},
            "probe_dift": {"zero": _effect(0.3, -0.32, -0.42, -0.22)},
        },
    }
    sentences = re.split(r"(?<=\.) (?=[A-Z])", _verdict(uses))
    assert _verdict_sentences(_verdict(uses)) == [
        [3.0],
        [60.0, 25.0, 35.0],
        [50.0],
        [10.0, 95.0, 2.0, 18.0, 0.0],
        [20.0, -40.0, 95.0, -50.0, -30.0, 0.0],
        [-20.0, -30.0, -10.0, -2.0, -8.0, 4.0, 95.0, 0.0],
        [-32.0, -42.0, -22.0, 95.0, 0.0],
        [62.0, 45.0, 40.0, 17.0, 95.0, 5.0, 29.0, 0.0],
    ]
    assert "excludes 0" in sentences[3] and "DIFT beats its blind baseline" in sentences[4]
    assert "drop under zero excludes 0, so its answers use the latents" in sentences[5]
    assert "shuffle" not in sentences[5].split(":", 1)[1]  # the shuffle drop's interval includes 0
    assert sentences[7].endswith("the latents carry information the answer uses.")

    # the same accuracies with every interval across 0: nothing is claimed
    silent = {
        **uses,
        "seeds": [0],
        "comparisons": {
            "dift - text_cot": _effect(0.6, 0.1, -0.05, 0.25),
            "probe_dift - probe_text_cot": _effect(0.62, 0.17, -0.02, 0.36),
        },
        "blind": {"dift": _effect(0.55, -0.05, -0.15, 0.05)},
        "interventions": {"dift": {"zero": _effect(0.57, -0.03, -0.1, 0.04)}},
    }
    sentences = re.split(r"(?<=\.) (?=[A-Z])", _verdict(silent))
    assert _verdict_sentences(_verdict(silent)) == [
        [60.0, 25.0, 35.0],
        [50.0],
        [10.0, 95.0, -5.0, 25.0, 0.0],
        [55.0, -5.0, 95.0, -15.0, 5.0, 0.0],
        [-3.0, -10.0, 4.0, 95.0, 0.0],
        [62.0, 45.0, 40.0, 17.0, 95.0, -2.0, 36.0, 0.0],
    ]
    assert "includes 0" in sentences[2] and "DIFT does not beat its blind baseline" in sentences[3]
    assert "do not show that its answers use the latents" in sentences[4]
    assert "does not show that the latents carry information" in sentences[5]
    # a probe whose DIFT model trails the same CoT without imagery says so
    behind = {**silent, "comparisons": {"probe_dift - probe_text_cot": _effect(0.3, -0.15, -0.25, -0.05)}}
    assert "the latents do not help the answer here" in _verdict(behind)


def test_option_order_variants_move_the_letters_with_the_correct_option():
    import numpy as np
    from datasets import Dataset

    from thinker4d.prompting import option_text
    from thinker4d.quickstart import option_order_variants
    from thinker4d.trainers.dift_collator import row_problem

    frames = [np.zeros((8, 8, 3), np.uint8)] * 2
    body = "<think>The static white cube: <imagery> <imagery> It moves left and keeps its size. The camera: "
    rows = [
        {
            "id": f"r{i}",
            "frames": frames,
            "fps": 2.0,
            "question": "How does the camera move?",
            "options": ["A. Tilt Up", "B. Pan Right", "C. Tilt Down", "D. Pan Left"],
            "answer": "B",
            "cot": body + "Pan Right. A. Tilt Up? No. B. Pan Right? Yes = B.</think><answer>B. Pan Right</answer>",
            "imagery": [frames[0], frames[1]],
        }
        for i in range(12)
    ]
    train = Dataset.from_list(rows)
    assert option_order_variants(train, 1) is train
    out = option_order_variants(train, 3, seed=0)
    assert len(out) == 36 and out["id"][:12] == train["id"] and out["id"][12] == "r0/order1"
    assert out.select(range(12))["cot"] == train["cot"]  # the first copy is the row as synthesized
    letters = set()
    for row in out:
        letter = row["answer"]
        assert option_text(row["options"], letter) == f"{letter}. Pan Right"
        texts = [o[3:] for o in row["options"]]
        scan = expected_scan(texts, texts.index("Pan Right"))
        assert row["cot"] == body + f"Pan Right. {scan} = {letter}.</think><answer>{letter}. Pan Right</answer>"
        assert sorted(o[3:] for o in row["options"]) == ["Pan Left", "Pan Right", "Tilt Down", "Tilt Up"]
        assert row_problem(row, "dift") is None
        letters.add(letter)
    assert len(letters) >= 3  # the correct option really moves
    assert option_order_variants(train, 3, seed=0)["cot"] == out["cot"]
    assert option_order_variants(train, 3, seed=1)["cot"] != out["cot"]
    odd_cot = "<think>x <imagery> <imagery></think><answer>B. Pan Right</answer>"
    other = Dataset.from_list([{**rows[0], "id": "odd", "cot": odd_cot}])
    with pytest.raises(ValueError, match="Row 'odd'.*--option-orders 1"):
        option_order_variants(other, 2)
    with pytest.raises(ValueError, match="copies must be >= 1"):
        option_order_variants(train, 0)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"option_orders": 0}, "option_orders must be >= 1"),
        ({"num_heads": 4, "num_kv_heads": 3}, "multiple of num_kv_heads"),
        ({"num_kv_heads": 0}, "multiple of num_kv_heads"),
    ],
)
def test_quickstart_config_rejects_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        QuickstartConfig(**bad)
