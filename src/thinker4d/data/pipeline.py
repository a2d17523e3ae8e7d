"""The synthesis runner: clips -> landmarks -> masks -> questions -> overlays -> CoT -> validation -> rows
(https://huggingface.co/papers/2605.05997, §3.1).

```python
>>> from thinker4d.data.pipeline import SynthesisConfig, run_synthesis
>>> report = run_synthesis(SynthesisConfig(world_num_clips=8), "out/cot", resume=True)  # doctest: +SKIP
>>> report["kept"], report["complete"]                                                 # doctest: +SKIP
```

What differs from the paper (docs/paper_differences.md, section 10):

1. One resumable runner instead of a shell loop restarting a 100-video script: clips are processed in batches, each
   finished clip is written atomically (see `thinker4d.data.writer`), a resumed run skips finished clips, and shards of
   a job array (`num_shards`, `shard_index`) are combined with `merge_outputs`. On one machine, `num_proc` worker
   processes share the clips through `datasets.Dataset.map(..., num_proc=N)` (`thinker4d.data.workers`).
2. Every clip ends as rows or as recorded rejections with a reason (never a silent empty result); per-clip errors
   (bad video, missing annotation, wrong mask size, teacher failures) are listed in the report and the run continues.
   The settings are checked as a whole before anything is written (`thinker4d.data.config`); a run that keeps no row
   raises `SynthesisFailed` instead of marking an empty dataset complete, and a resumed run retries the candidates
   rejected for transient teacher failures (timeouts, 429, 5xx, transport errors).
3. Labels come from geometry wherever the clip has it, and from the teacher only for plain videos (see
   `thinker4d.data.stages`, which holds the per-clip stages).

The settings (`SynthesisConfig`, `config_problems`) live in `thinker4d.data.config` and the per-clip stages
(`process_batch`, `build_requests`, `label_teacher`, ...) in `thinker4d.data.stages`; both are imported here too, so
`from thinker4d.data.pipeline import SynthesisConfig, process_batch` works.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from . import writer
from .config import SynthesisConfig, config_problems
from .ingest import list_sources, shard_sources
from .stages import (
    ClipWork,
    _json_default,
    _pipeline_info,
    _process_and_write,
    build_requests,
    build_segmenter,
    build_teacher,
    label_teacher,
    make_row,
    process_batch,
)
from .workers import _map_in_workers


class SynthesisFailed(RuntimeError):
    """A run whose every candidate was rejected: nothing is assembled and `COMPLETE` is not written. The message
    summarizes the rejections and says what to do; `report` holds the statistics (`retryable` counts the candidates a
    `resume=True` rerun will try again)."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


def _retryable(rejected: dict) -> int:
    from .teacher import is_transient_rejection

    return sum(n for reasons in rejected.values() for r, n in reasons.items() if is_transient_rejection(r))


def _failure_message(out: Path, summary: dict) -> str:
    rejected = ", ".join(
        f"{stage}/{reason}: {n}" for stage, rs in summary["rejected"].items() for reason, n in rs.items()
    )
    lines = [
        f"{out}: all {summary['candidates']} candidates of {summary['clips']} clips were rejected, so no dataset was "
        f"written (no {writer.COMPLETE} marker). Rejections: {rejected}."
    ]
    for e in summary["errors"][:3]:
        lines.append(f"  clip {e.get('clip_id')} at {e.get('stage')}: {e.get('message')}")
    if len(summary["errors"]) > 3:
        lines.append(f"  ... and {len(summary['errors']) - 3} more clip errors")
    if summary["retryable"]:
        lines.append(
            f"{summary['retryable']} of them failed for transient reasons (teacher timeouts, transport errors, HTTP "
            "429/5xx): check that the teacher endpoint is reachable (gemini_base_url, network, proxy, quota), then "
            "rerun with --resume (resume=True) to retry them."
        )
    else:
        lines.append(
            "None of these reasons is transient, so a rerun would reject them again: fix the inputs or settings they "
            "name (docs/synthesis.md lists the reasons) and write to a new output folder."
        )
    return "\n".join(lines)


def _default_sources(cfg: SynthesisConfig) -> list:
    out = list(cfg.sources_info)
    if cfg.world_num_clips and not any(s.get("name") == "thinker4d synthetic world" for s in out):
        out.append(
            {
                "name": "thinker4d synthetic world",
                "license": "apache-2.0",
                "url": "https://huggingface.co/papers/2605.05997",
            }
        )
    return out


def run_synthesis(
    config: SynthesisConfig,
    output_dir,
    resume: bool = False,
    num_shards: int = 1,
    shard_index: int = 0,
    teacher=None,
    segmenter=None,
    progress: bool = True,
) -> dict:
    """Run (or resume) the pipeline into `output_dir`; returns the report (statistics, errors, timings).

    Args:
        config (`SynthesisConfig`): the settings (`config.num_proc` worker processes).
        output_dir (`str` or `Path`): the dataset folder (`data/`, `README.md`, `synthesis_stats.json`, `COMPLETE`;
            work files under `.work/`).
        resume (`bool`): continue a run in `output_dir` (finished clips are kept). Without it, a non-empty
            `output_dir` is an error.
        num_shards / shard_index (`int`): process only `sources[shard_index::num_shards]`.
        teacher / segmenter: override the ones the config names (e.g. an already-built SAM2). With `num_proc > 1`
            each worker gets a pickled copy.
        progress (`bool`): tqdm bars per stage (with `num_proc > 1`: one bar of finished clips over all workers).

    Raises:
        FileExistsError: when `output_dir` holds a run and `resume` is False.
        ValueError: when resuming a run made with different row-changing settings, or when `num_proc > 1` and the
            `teacher`/`segmenter` passed cannot be pickled.
    """
    from tqdm.auto import tqdm

    from .teacher import is_transient_rejection

    config.validate()  # again: the fields may have been changed after construction
    all_sources = list_sources(config)  # bad paths are refused before anything is written
    if not all_sources:
        raise ValueError(
            "The settings name no sources: set world_num_clips > 0, clip_dirs (glob patterns of clip folders) or "
            "video_dirs (folders of videos), or check that the clip_dirs patterns match folders."
        )
    sources = shard_sources(all_sources, num_shards, shard_index)
    out = Path(output_dir)
    work_dir = out / writer.WORK
    clips_dir = work_dir / writer.CLIPS
    if out.exists() and any(out.iterdir()) and not resume:
        raise FileExistsError(f"{out} is not empty; pass resume=True (--resume) to continue it, or pick a new folder.")
    run_info = {"fingerprint": config.fingerprint(), "num_shards": num_shards, "shard_index": shard_index}
    info_path = work_dir / "run.json"
    if info_path.is_file():
        old = json.loads(info_path.read_text())
        if old != run_info:
            raise ValueError(
                f"{out} was started with different settings ({old}) than now ({run_info}); use a new output folder."
            )
    if resume:
        writer.remove_stale_temporaries(out)
    clips_dir.mkdir(parents=True, exist_ok=True)
    if not info_path.is_file():
        writer._atomic_write_bytes(info_path, json.dumps(run_info).encode())
        writer._atomic_write_bytes(work_dir / "config.json", json.dumps(config.to_dict(), indent=1).encode())

    t0 = time.perf_counter()
    if resume and writer.is_complete(out):
        stats = json.loads((out / "synthesis_stats.json").read_text())
        if not _retryable(stats["rejected"]):
            return {**stats, "complete": True, "output_dir": str(out), "resumed_complete": True, "retryable": 0}

    done = writer.done_keys(clips_dir)
    if resume:  # clips rejected for transient teacher failures (timeouts, 429, 5xx) are done again
        done -= writer.keys_to_retry(clips_dir, done & {s.key for s in sources}, is_transient_rejection)
    todo = [s for s in sources if s.key not in done]
    timings: Counter = Counter()
    num_proc = min(config.num_proc, len(todo))
    if num_proc > 1:
        teacher_stats, pipeline = _map_in_workers(
            todo, config, clips_dir, str(work_dir / "cache"), num_proc, teacher, segmenter, progress, timings
        )
    else:
        num_proc = 1
        teacher = teacher or build_teacher(config, cache_dir=str(work_dir / "cache"))
        segmenter = segmenter or build_segmenter(config)
        stages = ("ingest", "landmarks", "labels", "masks+overlays", "cot+validate", "write")
        bars = {s: tqdm(total=len(todo), desc=f"{s:>15}", disable=not progress, leave=False) for s in stages}
        try:
            for start in range(0, len(todo), config.batch_size):
                _process_and_write(
                    todo[start : start + config.batch_size], config, teacher, segmenter, clips_dir, bars, timings
                )
        finally:
            for b in bars.values():
                b.close()
            teacher_stats = teacher.stats()
            if hasattr(teacher, "close"):
                teacher.close()
        pipeline = json.loads(json.dumps(_pipeline_info(config, teacher, segmenter), default=_json_default))

    t = time.perf_counter()
    files = [clips_dir / f"{s.key}.parquet" for s in sources]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise RuntimeError(
            f"{len(missing)} clip results are missing after the run ({missing[:3]}); rerun with --resume."
        )
    summary = writer.summarize([writer.read_clip_record(f) for f in files], Counter())
    summary["retryable"] = _retryable(summary["rejected"])
    if summary["candidates"] and not summary["kept"]:
        (out / writer.COMPLETE).unlink(missing_ok=True)
        report = {**summary, "complete": False, "output_dir": str(out), "teacher_usage": teacher_stats}
        raise SynthesisFailed(_failure_message(out, summary), report)
    stats = writer.assemble(out, files, pipeline, _default_sources(config), config.rows_per_shard)
    timings["assemble"] += time.perf_counter() - t
    return {
        **stats,
        "retryable": summary["retryable"],
        "complete": True,
        "output_dir": str(out),
        "processed_now": len(todo),
        "skipped_done": len(sources) - len(todo),
        "num_proc": num_proc,
        "teacher_usage": teacher_stats,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "wall_s": round(time.perf_counter() - t0, 3),
    }


def merge_outputs(shard_dirs, output_dir) -> dict:
    """Combine the outputs of `--num-shards N --shard-index i` runs into one dataset in `output_dir`.

    Every shard must be complete and made with the same settings; together they must cover every source exactly once.
    The result equals a single unsharded run (rows in global source order).

    Raises:
        ValueError: naming the shard that is incomplete, has other settings, or when sources are missing/duplicated.
    """
    shard_dirs = [Path(d) for d in shard_dirs]
    if not shard_dirs:
        raise ValueError("merge needs at least one shard folder.")
    infos, config = [], None
    for d in shard_dirs:
        if not writer.is_complete(d):
            raise ValueError(f"Shard {d} is not complete (no COMPLETE marker); finish it with --resume first.")
        infos.append(json.loads((d / writer.WORK / "run.json").read_text()))
        cfg = json.loads((d / writer.WORK / "config.json").read_text())
        if config is None:
            config = cfg
    fps = {i["fingerprint"] for i in infos}
    if len(fps) != 1:
        raise ValueError(f"Shards were made with different settings (fingerprints {sorted(fps)}); cannot merge.")
    cfg = SynthesisConfig(**config)
    sources = list_sources(cfg)
    by_key = {}
    for d in shard_dirs:
        for key in writer.done_keys(d / writer.WORK / writer.CLIPS):
            if key in by_key:
                raise ValueError(f"Clip {key} appears in both {by_key[key].parent.parent.parent} and {d}.")
            by_key[key] = d / writer.WORK / writer.CLIPS / f"{key}.parquet"
    missing = [s.key for s in sources if s.key not in by_key]
    if missing:
        raise ValueError(
            f"{len(missing)} sources have no result in the given shards (e.g. {missing[:3]}); pass every shard folder."
        )
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pipeline = json.loads((shard_dirs[0] / "synthesis_stats.json").read_text())["pipeline"]
    stats = writer.assemble(out, [by_key[s.key] for s in sources], pipeline, _default_sources(cfg), cfg.rows_per_shard)
    return {**stats, "complete": True, "output_dir": str(out), "merged_shards": len(shard_dirs)}


__all__ = [
    "ClipWork",
    "SynthesisConfig",
    "SynthesisFailed",
    "build_requests",
    "build_segmenter",
    "build_teacher",
    "config_problems",
    "label_teacher",
    "make_row",
    "merge_outputs",
    "process_batch",
    "run_synthesis",
]
