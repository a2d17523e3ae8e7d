"""[`run_quickstart`]: every stage in order, reusing the finished ones, then `summary.json` and the report.

With `seeds > 1` every training seed's stages (`init` to the evaluations) go into `seed_<s>/`, which also gets that
seed's `summary.json`; the data and SynthDSR are shared. With one seed they sit in the output folder itself.

The terminal gets one line per stage, one progress bar per training stage (its log dicts go to
`train_<model>/log_history.jsonl`, [`thinker4d.trainers.TrainingProgressCallback`]) and the evaluation bars; the
progress bars of datasets and transformers (every `.map`, loading and writing weights) are off during the run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from .aggregate import summarize
from .config import CACHE_DIR, LABELS, PROBE_MODELS, QuickstartConfig
from .evaluation import answer_text_accuracy, chance_accuracy, interventions, reasoning_trace, stage_eval
from .report import write_report
from .stages import (
    Stage,
    _check_same_rows,
    _drop_map_caches,
    _load_train,
    _settings_guard,
    _token_budget,
    stage_data,
    stage_init,
    stage_synthdsr,
)
from .training import stage_grpo, stage_train


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


def training_seeds(cfg: QuickstartConfig) -> list[int]:
    return [cfg.seed + i for i in range(cfg.seeds)]


def _prefix(cfg: QuickstartConfig, seed: int) -> str:
    """Where one training seed's stages go, relative to the output folder."""
    return "" if cfg.seeds == 1 else f"seed_{seed}/"


def _trained(cfg: QuickstartConfig) -> list[str]:
    """The supervised models, in training order (after the warm-up, which they start from)."""
    return ["raw_qa", "text_cot", "dift", *PROBE_MODELS * cfg.probe]


def _evaluated(cfg: QuickstartConfig) -> list[str]:
    return [
        "untrained",
        "raw_qa",
        "text_cot",
        "dift",
        *["dift_grpo"] * (cfg.grpo_steps > 0),
        *PROBE_MODELS * cfg.probe,
    ]


def _stage_plan(cfg: QuickstartConfig) -> dict[str, str]:
    """Every stage this run goes through, in order, with what it does (one terminal line each)."""
    plan = {
        "data": f"4D CoT synthesis from {cfg.train_clips} synthetic clips",
        "synthdsr": f"{cfg.eval_questions} held-out SynthDSR questions",
    }
    if cfg.probe:
        plan["data_imagery_only"] = f"imagery-only CoTs of the same {cfg.train_clips} clips (the probe's data)"
    for seed in training_seeds(cfg):
        pre = _prefix(cfg, seed)
        of_seed = f" (training seed {seed})" if pre else ""
        plan[pre + "init"] = "tiny Qwen2.5-VL and its BPE tokenizer" + of_seed
        for name in ["warmup"] * (cfg.warmup_steps > 0) + _trained(cfg):
            steps = cfg.warmup_steps if name == "warmup" else cfg.sft_steps
            plan[f"{pre}train_{name}"] = f"{LABELS[name]}, {steps} steps"
        if cfg.grpo_steps > 0:
            plan[f"{pre}train_dift_grpo"] = f"{LABELS['dift_grpo']}, {cfg.grpo_steps} steps"
        for name in _evaluated(cfg):
            controls = ", ".join(["blind", *interventions(name, cfg)])
            plan[f"{pre}eval_{name}"] = f"{LABELS[name]} on SynthDSR, then the controls ({controls})"
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


def _write_json(path: Path, content: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(content, indent=2))
    os.replace(tmp, path)


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
    train = {"compact": _load_train(data_dir, cache_dir)}
    if cfg.probe:
        probe_dir = timed("data_imagery_only", stage_data, root, cfg, "imagery_only")
        train["imagery_only"] = _load_train(probe_dir, cache_dir)
        _check_same_rows(train["compact"], train["imagery_only"], probe_dir)
    chance = chance_accuracy(bench_dir)
    budget, seed_roots, named = None, [], {}
    for seed in training_seeds(cfg):
        pre, seed_cfg = _prefix(cfg, seed), dataclasses.replace(cfg, seed=seed)
        seed_root = root / pre if pre else root
        init_dir = timed(pre + "init", stage_init, seed_root, seed_cfg, train["compact"])
        if budget is None:  # the same tokenizer for every seed (learned from the same texts)
            from transformers import AutoProcessor

            budget = _token_budget(train["compact"], AutoProcessor.from_pretrained(str(init_dir)), cfg)
        if cfg.warmup_steps > 0:
            init_dir = timed(
                pre + "train_warmup", stage_train, seed_root, seed_cfg, "warmup", init_dir, train["compact"]
            )
            _drop_map_caches(train["compact"])
        models = {"untrained": init_dir}
        for name in _trained(cfg):
            rows = train["imagery_only" if name in PROBE_MODELS else "compact"]
            models[name] = timed(f"{pre}train_{name}", stage_train, seed_root, seed_cfg, name, init_dir, rows)
            _drop_map_caches(rows)
        if cfg.grpo_steps > 0:
            models["dift_grpo"] = timed(
                pre + "train_dift_grpo", stage_grpo, seed_root, seed_cfg, models["dift"], train["compact"], budget
            )
            _drop_map_caches(train["compact"])
        for name in _evaluated(cfg):
            timed(f"{pre}eval_{name}", stage_eval, seed_root, seed_cfg, name, models[name], bench_dir, budget)
            named.setdefault(name, []).append(answer_text_accuracy(seed_root / f"eval_{name}" / "run", bench_dir))
        if pre:  # this seed's own numbers, kept beside its stages
            one = summarize([seed_root], _evaluated(cfg), chance, {n: v[-1:] for n, v in named.items()})
            _write_json(seed_root / "summary.json", dict(one, seed=seed))
        seed_roots.append(seed_root)
    summary = summarize(seed_roots, _evaluated(cfg), chance, named)
    final = "dift_grpo" if cfg.grpo_steps > 0 else "dift"
    trace = reasoning_trace(seed_roots[0], final, bench_dir)
    summary["seeds"] = training_seeds(cfg)
    summary["settings"] = dataclasses.asdict(cfg)
    summary["timings_s"] = timings
    summary["reused_stages"] = reused
    _write_json(root / "summary.json", summary)
    write_report(root, cfg, summary, trace, timings, seed_roots[0])
    shutil.rmtree(cache_dir, ignore_errors=True)
    return summary
