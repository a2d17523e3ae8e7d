"""The files of an evaluation run folder, written so that a run can resume and a partial run is never mistaken for a
complete one: `run.json` (the settings, checked on resume), `parts/rank<k>.jsonl` (each process's finished rows,
appended and flushed), and `results.jsonl` + `summary.json`, written atomically once every row has a result.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .metrics import read_results, score_records


RESULTS = "results.jsonl"
SUMMARY = "summary.json"
RUN = "run.json"
PARTS = "parts"
LATENT_MEAN = "latent_mean.pt"


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder, so a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_done(out: Path, retry_errors: bool) -> dict[tuple[int, int], dict]:
    """The finished rows of the run in `out`, by `(index, sample)`, from `results.jsonl` and every process's part file;
    with `retry_errors`, rows that failed in generation count as not finished."""
    done: dict[tuple[int, int], dict] = {}
    files = ([out / RESULTS] if (out / RESULTS).is_file() else []) + sorted((out / PARTS).glob("rank*.jsonl"))
    for f in files:
        for r in read_results(f):
            key = (int(r["index"]), int(r.get("sample", 0)))
            # A later record wins, except that an error never replaces a success (a retried row may sit in
            # another process's file after a resume with a different number of processes).
            if key not in done or not r.get("error") or done[key].get("error"):
                done[key] = r
    if retry_errors:
        done = {k: r for k, r in done.items() if (r.get("error") or "").split(":")[0] != "generation_error"}
    return done


def check_run(out: Path, run: dict) -> None:
    """Raise when `out` holds a run with other settings than `run` (resuming would mix the two)."""
    path = out / RUN
    if path.is_file():
        old = json.loads(path.read_text())
        diff = {k: (old.get(k), run[k]) for k in run if old.get(k) != run[k]}
        if diff:
            from ..errors import UserValueError

            raise UserValueError(
                f"{out} holds a run with different settings ({diff}); resuming would mix them. "
                "Use another --output_dir folder, or delete this one to start over."
            )


def write_results(
    out: Path, task, examples, config, run: dict, elapsed: float, version: str, controls: dict | None = None
) -> dict:
    """Check that every `(question, sample)` has a result, then write `results.jsonl` and `summary.json` atomically
    (and only then), and return the summary. `controls` (`blind`, `latent_intervention`, ...) go into the summary
    with the total latent slots fed and replaced."""
    done = load_done(out, retry_errors=False)
    expected = [(ex.index, s) for ex in examples for s in range(config.num_samples)]
    missing = [k for k in expected if k not in done]
    if missing:
        raise RuntimeError(
            f"{len(missing)} of {len(expected)} rows have no result (first: index {missing[0][0]}, sample "
            f"{missing[0][1]}); a process may have died. Rerun the same command to resume; no summary was written."
        )
    records = [done[k] for k in expected]
    slots = [r for r in records if r.get("latent_slots") is not None]
    latent = {
        "latent_slots": sum(r["latent_slots"] for r in slots) if slots else None,
        "intervened_slots": sum(r["intervened_slots"] for r in slots) if slots else None,
    }
    atomic_write(out / RESULTS, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    summary = {
        **score_records(records, task.subtasks, config.num_samples),
        "generation": config.generation(),
        **(controls or config.controls()),
        **latent,
        "model": run["model"],
        "benchmark": task.name,
        "data": run["data"],
        "limit": config.limit,
        "thinker4d_version": version,
        "last_run_seconds": round(elapsed, 3),
    }
    atomic_write(out / SUMMARY, json.dumps(summary, indent=2, ensure_ascii=False))
    return summary


__all__ = ["atomic_write", "check_run", "load_done", "write_results"]
