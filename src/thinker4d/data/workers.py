"""Worker processes of a synthesis run with `num_proc > 1` (https://huggingface.co/papers/2605.05997, §3.1).

`_map_in_workers` shares the clips still to do between `num_proc` processes through `datasets.Dataset.map(...,
batched=True, with_rank=True, num_proc=N)`; each worker (`_MapWorker`) builds its own teacher and segmenter, runs the
per-clip stages (`thinker4d.data.stages`) batch by batch and writes each finished clip's file itself, so the rows do
not depend on `num_proc`.

Worker processes must not outlive the run: after a SIGKILL of the run, the pool's workers would go on writing clip
files (and then wait forever) while a resumed run works on the same folder. So while `_map_in_workers` maps over its
workers, every process it forks (the pool's workers and the queue manager that `datasets` starts) asks the kernel for
SIGKILL when its parent dies (Linux `PR_SET_PDEATHSIG`; elsewhere this is skipped). The fork hook that does this is
registered by the first `_map_in_workers` call of a process, not when the module is imported.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import uuid
from collections import Counter
from pathlib import Path

from .config import SynthesisConfig
from .ingest import Source
from .stages import _json_default, _pipeline_info, _process_and_write, build_segmenter, build_teacher


_FORK_PARENT: int | None = None  # set only while `_map_in_workers` forks its workers: the pid of the run
_PR_SET_PDEATHSIG = 1
_FORK_HOOK_REGISTERED = False


def _die_with_parent() -> None:
    global _FORK_PARENT
    parent, _FORK_PARENT = _FORK_PARENT, None  # only the run's direct children, not their own children
    if parent is None or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no usable libc: the workers may outlive a killed run
        return
    if os.getppid() != parent:  # the run died before prctl took effect
        os._exit(1)


def _register_fork_hook() -> None:
    """Makes every later fork of this process run `_die_with_parent` in the child (once per process; forked children
    inherit the hook). `os.register_at_fork` cannot be undone, so the hook does nothing while `_FORK_PARENT` is unset,
    that is outside `_map_in_workers`; registering it twice (two threads at once) is harmless for the same reason."""
    global _FORK_HOOK_REGISTERED
    if not _FORK_HOOK_REGISTERED and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_die_with_parent)
        _FORK_HOOK_REGISTERED = True


class _MapWorker:
    """What `datasets.Dataset.map(..., batched=True, with_rank=True, num_proc=N)` calls in each worker process: one
    batch of sources (columns `index`, `kind`, `ref`) -> its clip result files, and one summary row (clips, timings,
    the worker's cumulative teacher usage, the pipeline info). The teacher and segmenter are built once per process,
    on the first batch; `gemini_concurrency` is split between the `num_proc` workers, so the requests in flight stay
    within the configured total."""

    def __init__(self, config: dict, clips_dir: str, cache_dir: str, num_proc: int, teacher=None, segmenter=None):
        self.config, self.clips_dir, self.cache_dir, self.num_proc = config, clips_dir, cache_dir, num_proc
        self.teacher, self.segmenter = teacher, segmenter
        self._state = None  # (config, teacher, segmenter, pipeline info) of this process

    def _setup(self, rank: int):
        cfg = SynthesisConfig(**self.config)
        total = cfg.gemini_concurrency
        share = max(1, total // self.num_proc + (rank % self.num_proc < total % self.num_proc))
        cfg = dataclasses.replace(cfg, gemini_concurrency=share)
        teacher = self.teacher or build_teacher(cfg, cache_dir=self.cache_dir)
        segmenter = self.segmenter or build_segmenter(cfg)
        if "torch" in sys.modules:  # e.g. SAM2: the workers share the cores instead of each taking all of them
            sys.modules["torch"].set_num_threads(max(1, (os.cpu_count() or 1) // self.num_proc))
        return cfg, teacher, segmenter, json.dumps(_pipeline_info(cfg, teacher, segmenter), default=_json_default)

    def __call__(self, batch: dict, rank: int) -> dict:
        if self._state is None:
            self._state = self._setup(rank or 0)
        cfg, teacher, segmenter, info = self._state
        sources = [Source(int(i), k, r) for i, k, r in zip(batch["index"], batch["kind"], batch["ref"])]
        timings: Counter = Counter()
        works = _process_and_write(sources, cfg, teacher, segmenter, Path(self.clips_dir), timings=timings)
        return {
            "rank": [rank or 0],
            "clips": [len(works)],
            "timings": [json.dumps(timings)],
            "teacher_usage": [json.dumps(teacher.stats(), default=str)],
            "pipeline": [info],
        }


def _sum_usage(per_worker: list[dict]) -> dict:
    """Teacher usage of several workers: numbers summed, other fields (teacher, model) from the first."""
    out: dict = {}
    for usage in per_worker:
        for k, v in usage.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[k] = out.get(k, 0) + v
            else:
                out.setdefault(k, v)
    if "estimated_cost_usd" in out:
        out["estimated_cost_usd"] = round(out["estimated_cost_usd"], 6)
    return {**out, "workers": len(per_worker)}


def _map_in_workers(todo, config, clips_dir, cache_dir, num_proc, teacher, segmenter, progress, timings) -> tuple:
    """Process `todo` in `num_proc` worker processes through `datasets.Dataset.map`; returns (teacher usage summed
    over the workers, pipeline info)."""
    import pickle

    import datasets

    global _FORK_PARENT
    for name, obj in (("teacher", teacher), ("segmenter", segmenter)):
        if obj is not None:
            try:
                pickle.dumps(obj)
            except Exception as e:
                raise ValueError(
                    f"num_proc={num_proc} sends the {name} you passed ({type(obj).__name__}) to each worker process, "
                    f"but it cannot be pickled ({type(e).__name__}: {e}); pass num_proc=1, or leave {name}=None so "
                    "each worker builds its own from the config."
                ) from e
    table = datasets.Dataset.from_dict(
        {"index": [s.index for s in todo], "kind": [s.kind for s in todo], "ref": [s.ref for s in todo]}
    )
    worker = _MapWorker(config.to_dict(), str(clips_dir), cache_dir, num_proc, teacher, segmenter)
    bars_were_on = datasets.is_progress_bar_enabled()
    (datasets.enable_progress_bars if progress else datasets.disable_progress_bars)()
    _register_fork_hook()
    _FORK_PARENT = os.getpid()
    try:
        result = table.map(
            worker,
            batched=True,
            batch_size=config.batch_size,
            with_rank=True,
            num_proc=num_proc,
            remove_columns=table.column_names,
            keep_in_memory=True,
            load_from_cache_file=False,
            new_fingerprint=uuid.uuid4().hex,  # never reuse a cached map: the clip files are the real output
            desc="synthesize clips",
        )
    finally:
        _FORK_PARENT = None
        (datasets.enable_progress_bars if bars_were_on else datasets.disable_progress_bars)()
    last_usage: dict = {}
    for row in result:
        for k, v in json.loads(row["timings"]).items():
            timings[k] += v
        last_usage[row["rank"]] = json.loads(row["teacher_usage"])  # cumulative per worker: keep its last
    return _sum_usage([last_usage[r] for r in sorted(last_usage)]), json.loads(result[0]["pipeline"])
