"""[`run_quickstart`]: every stage in order, reusing the finished ones, then `summary.json` and the report."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from pathlib import Path

from .config import CACHE_DIR, QuickstartConfig
from .evaluation import answer_text_accuracy, chance_accuracy, reasoning_trace, stage_eval
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


def run_quickstart(
    cfg: QuickstartConfig | None = None, output_dir: str | os.PathLike = "thinker4d_quickstart"
) -> dict:
    """Run (or resume) the whole quickstart; returns `summary.json`'s content."""
    import torch

    cfg = cfg or QuickstartConfig()
    root = Path(output_dir)
    _settings_guard(root, cfg)
    torch.manual_seed(cfg.seed)
    timings: dict[str, float | None] = {}
    reused: list[str] = []

    def timed(name, fn, *a):
        # A reused stage keeps the time recorded when it ran (None for a marker written without one).
        stage = Stage(root, name)
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
    summaries, named = {}, {}
    for name, model_dir in models.items():
        summary = timed(f"eval_{name}", stage_eval, root, cfg, name, model_dir, bench_dir, budget)
        summaries[name] = summary
        results[name] = dict(summary["subtask_accuracy"], all=summary["accuracy"])
        named[name] = answer_text_accuracy(root / f"eval_{name}" / "run", bench_dir)
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
    summary["timings_s"] = timings
    summary["reused_stages"] = reused
    tmp = root / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, root / "summary.json")
    write_report(root, cfg, results, trace, timings, named)
    shutil.rmtree(cache_dir, ignore_errors=True)
    return summary
