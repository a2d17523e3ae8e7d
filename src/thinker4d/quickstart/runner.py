"""[`run_quickstart`]: every stage in order, reusing the finished ones, then `summary.json` and the report.

The terminal gets one line per stage, one progress bar per training stage (its log dicts go to
`train_<model>/log_history.jsonl`, [`thinker4d.trainers.TrainingProgressCallback`]) and the evaluation bars; the
progress bars of datasets and transformers (every `.map`, loading and writing weights) are off during the run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from .config import CACHE_DIR, LABELS, QuickstartConfig
from .evaluation import (
    answer_text_accuracy,
    chance_accuracy,
    control_results,
    interventions,
    reasoning_trace,
    stage_eval,
)
from .report import write_report
from .stages import (
    Stage,
    _drop_map_caches,
    _load_train,
    _settings_guard,
    _token_budget,
    stage_data,
    stage_init,
    stage_synthdsr,
)
from .training import stage_grpo, stage_train


logger = logging.getLogger(__name__)


@contextmanager
def _library_bars_off():
    """Turn the progress bars of datasets and transformers off, and back to how they were afterwards."""
    import datasets
    from transformers.utils import logging as hf_logging

    datasets_on, transformers_on = datasets.is_progress_bar_enabled(), hf_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if datasets_on:
            datasets.enable_progress_bars()
        if transformers_on:
            hf_logging.enable_progress_bar()


def _stage_plan(cfg: QuickstartConfig) -> dict[str, str]:
    """Every stage this run goes through, in order, with what it does (one terminal line each)."""
    trained = ["warmup"] * (cfg.warmup_steps > 0) + ["raw_qa", "text_cot", "dift"]
    plan = {
        "data": f"4D CoT synthesis from {cfg.train_clips} synthetic clips",
        "synthdsr": f"{cfg.eval_questions} held-out SynthDSR questions",
        "init": "tiny Qwen2.5-VL and its BPE tokenizer",
    }
    for name in trained:
        steps = cfg.warmup_steps if name == "warmup" else cfg.sft_steps
        plan[f"train_{name}"] = f"{LABELS[name]}, {steps} steps"
    if cfg.grpo_steps > 0:
        plan["train_dift_grpo"] = f"{LABELS['dift_grpo']}, {cfg.grpo_steps} steps"
    for name in ["untrained", "raw_qa", "text_cot", "dift"] + ["dift_grpo"] * (cfg.grpo_steps > 0):
        controls = ", ".join(["blind", *interventions(name, cfg)])
        plan[f"eval_{name}"] = f"{LABELS[name]} on SynthDSR, then the controls ({controls})"
    return plan


def run_quickstart(
    cfg: QuickstartConfig | None = None, output_dir: str | os.PathLike = "thinker4d_quickstart"
) -> dict:
    """Run (or resume) the whole quickstart; returns `summary.json`'s content."""
    cfg = cfg or QuickstartConfig()
    root = Path(output_dir)
    _settings_guard(root, cfg)
    with _library_bars_off():
        return _run(cfg, root)


def _run(cfg: QuickstartConfig, root: Path) -> dict:
    import torch

    torch.manual_seed(cfg.seed)
    timings: dict[str, float | None] = {}
    reused: list[str] = []
    plan = _stage_plan(cfg)
    print(f"thinker4d quickstart: {len(plan)} stages into {root} (the same command resumes an interrupted run)")

    def timed(name, fn, *a):
        # A reused stage keeps the time recorded when it ran (None for a marker written without one).
        stage = Stage(root, name)
        number = f"[{list(plan).index(name) + 1}/{len(plan)}] {name}"
        print(f"{number}: reused from an earlier run" if stage.done else f"{number}: {plan[name]}", flush=True)
        if stage.done:
            out = fn(*a)
            timings[name] = stage.info().get("seconds")
            reused.append(name)
            return out
        t0 = time.time()
        out = fn(*a)
        timings[name] = round(time.time() - t0, 1)
        stage.record_seconds(timings[name])
        return out

    data_dir = timed("data", stage_data, root, cfg)
    bench_dir = timed("synthdsr", stage_synthdsr, root, cfg)
    # The Arrow copy of the training data and the caches of every `.map` on it (pre-encoded videos: about 0.7 GB per
    # trained model) live in the output folder, not in the user's datasets cache, and go when they are no longer needed.
    cache_dir = root / CACHE_DIR
    train = _load_train(data_dir, cache_dir)
    init_dir = timed("init", stage_init, root, cfg, train)
    from transformers import AutoProcessor

    budget = _token_budget(train, AutoProcessor.from_pretrained(str(init_dir)), cfg)
    if cfg.warmup_steps > 0:
        init_dir = timed("train_warmup", stage_train, root, cfg, "warmup", init_dir, train)
        _drop_map_caches(train)
    models = {"untrained": init_dir}
    for name in ("raw_qa", "text_cot", "dift"):
        models[name] = timed(f"train_{name}", stage_train, root, cfg, name, init_dir, train)
        _drop_map_caches(train)
    if cfg.grpo_steps > 0:
        models["dift_grpo"] = timed("train_dift_grpo", stage_grpo, root, cfg, models["dift"], train, budget)
        _drop_map_caches(train)

    results = {"chance": chance_accuracy(bench_dir)}
    summaries, named, controls = {}, {}, {}
    for name, model_dir in models.items():
        summary = timed(f"eval_{name}", stage_eval, root, cfg, name, model_dir, bench_dir, budget)
        summaries[name] = summary
        results[name] = dict(summary["subtask_accuracy"], all=summary["accuracy"])
        named[name] = answer_text_accuracy(root / f"eval_{name}" / "run", bench_dir)
        controls[name] = control_results(root, name)
    trace = None
    final = models.get("dift_grpo", models["dift"])
    try:
        trace = reasoning_trace(root, final, train, budget)
    except StopIteration:
        logger.warning("No camera-motion training row to show as a reasoning trace.")
    summary = dict(results)
    summary["settings"] = dataclasses.asdict(cfg)
    summary["eval_errors"] = {n: s.get("errors", 0) for n, s in summaries.items()}
    summary["answer_text_accuracy"] = named
    summary["ci95"] = {n: c["ci95"] for n, c in controls.items()}
    summary["blind"] = {n: c["blind"] for n, c in controls.items()}
    summary["interventions"] = {n: c["interventions"] for n, c in controls.items() if c["interventions"]}
    summary["timings_s"] = timings
    summary["reused_stages"] = reused
    tmp = root / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, root / "summary.json")
    write_report(root, cfg, results, trace, timings, named)
    shutil.rmtree(cache_dir, ignore_errors=True)
    return summary
