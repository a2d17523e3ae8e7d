"""Stage 8, output: crash-safe per-clip results, final parquet shards, dataset card and statistics
(https://huggingface.co/papers/2605.05997).

What differs from the paper (docs/paper_differences.md, section 10):

1. Every finished clip is one small parquet file (its rows plus, in the file's metadata, its rejections and errors)
   written to a temporary name and moved into place with `os.replace`. The set of these files *is* the done-manifest:
   a run killed at any moment (SIGKILL) and resumed redoes only the clips without a file, so the final rows equal an
   uninterrupted run's, with no duplicates and none lost. The paper keeps progress in `completed_videos.txt` and
   `resume_position.json`, written non-atomically next to the outputs.
2. Final shards (`data/train-NNNNN-of-NNNNN.parquet`), `synthesis_stats.json` and `README.md` are written only once every
   clip has its file, and a `COMPLETE` marker last; a folder without `COMPLETE` is never treated as a finished dataset.
   Temporaries of a killed write are deleted on resume and before `COMPLETE`.
3. A converter writes the paper's JSONL layout (`text_input`, `text_output` with `<output_image>`, `image_input`,
   `image_output`) with the images as files, using `paper_jsonl.dift_row_to_paper`.
"""

from __future__ import annotations

import io
import json
import os
import threading
from collections import Counter
from pathlib import Path

import numpy as np


WORK = ".work"
CLIPS = "clips"
COMPLETE = "COMPLETE"
META_KEY = b"thinker4d_clip"


# What each column of the 4D CoT schema holds (docs/design.md keeps the same table; a test checks they agree). The
# dataset card (`thinker4d.data.card.render_dataset_card`) shows these next to the feature types.
COLUMN_DESCRIPTIONS = {
    "id": "unique, stable: `<clip_id>/<task>/<n>`",
    "clip_id": "source clip (synthetic world seed or real clip id)",
    "frames": "the video frames shown to the model, in time order",
    "fps": "frames per second of `frames` (after sampling)",
    "task": "question family (`camera_motion`, `object_direction`, ...)",
    "question": "question stem, no options",
    "options": 'rendered options, `"A. Pan Left"` ...',
    "answer": "the correct letter",
    "cot": "chain of thought with one `<imagery>` marker per overlay, then `<answer>...</answer>`",
    "imagery": "overlay images, same count and order as `<imagery>` markers",
    "label_source": "`geometry` (computed from poses/depth/masks) or `teacher` (a model's judgment)",
    "meta": "stage provenance as JSON: teacher model, segmenter, landmark names, seeds",
}
# The title of the card a synthesis folder carries (`thinker4d push --repo-type dataset` titles it after the repository).
CARD_TITLE = "4D chain-of-thought data (thinker4d synthesis)"


def features():
    """The 4D CoT schema of docs/design.md as `datasets.Features`."""
    from datasets import Features, Image, List, Value

    return Features(
        {
            "id": Value("string"),
            "clip_id": Value("string"),
            "frames": List(Image()),
            "fps": Value("float32"),
            "task": Value("string"),
            "question": Value("string"),
            "options": List(Value("string")),
            "answer": Value("string"),
            "cot": Value("string"),
            "imagery": List(Image()),
            "label_source": Value("string"),
            "meta": Value("string"),
        }
    )


_SCHEMA = None


def arrow_schema():
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = features().arrow_schema
    return _SCHEMA


def encode_image(img: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> dict:
    """`{"bytes", "path": None}` (the `datasets.Image` storage) for an (H, W, 3) uint8 array."""
    from PIL import Image

    buf = io.BytesIO()
    if fmt == "png":
        Image.fromarray(img).save(buf, format="PNG", compress_level=1)
    else:
        Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return {"bytes": buf.getvalue(), "path": None}


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to a temporary name next to `path` (unique per process and thread, so concurrent writers of one
    key never share it), then move it into place: readers never see a torn file. Creates the parent folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_clip_result(clips_dir: Path, key: str, rows: list[dict], record: dict) -> Path:
    """Atomically write one clip's rows and its record (`rejected`, `errors`, `candidates`, ...) as `<key>.parquet`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema()
    table = pa.Table.from_pylist(rows, schema=schema)
    table = table.replace_schema_metadata({**(schema.metadata or {}), META_KEY: json.dumps(record).encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    path = clips_dir / f"{key}.parquet"
    _atomic_write_bytes(path, sink.getvalue().to_pybytes())
    return path


def done_keys(clips_dir: Path) -> set[str]:
    """Keys of clips with a finished result file; removes temporary files left by a killed run."""
    if not clips_dir.is_dir():
        return set()
    done = set()
    for p in clips_dir.iterdir():
        if p.name.startswith(".") and ".tmp" in p.name:
            p.unlink(missing_ok=True)
        elif p.suffix == ".parquet":
            done.add(p.stem)
    return done


def read_clip_record(path: Path) -> dict:
    """The record (`candidates`, `kept`, `rejected`, `errors`, ...) of one clip result file, from its metadata only."""
    import pyarrow.parquet as pq

    return json.loads((pq.read_schema(path).metadata or {}).get(META_KEY, b"{}"))


def keys_to_retry(clips_dir: Path, keys, retry_reason) -> set[str]:
    """The `keys` whose clip result has a rejection with a reason for which `retry_reason(reason)` is true."""
    out = set()
    for key in keys:
        rejected = read_clip_record(clips_dir / f"{key}.parquet").get("rejected") or {}
        if any(retry_reason(r) for reasons in rejected.values() for r in reasons):
            out.add(key)
    return out


def _is_temporary(p: Path) -> bool:
    return p.name.startswith(".") and ".tmp" in p.name and p.is_file()


def remove_stale_temporaries(output_dir) -> int:
    """Delete the temporary files (`.<name>.tmp<pid>-<thread>`) a killed run left in `output_dir`, `data/` and the
    work folders; returns how many. Only call it while no other process writes into `output_dir`."""
    output_dir = Path(output_dir)
    n = 0
    for d in (
        output_dir,
        output_dir / "data",
        output_dir / WORK,
        output_dir / WORK / CLIPS,
        output_dir / WORK / "cache",
    ):
        if d.is_dir():
            for p in d.iterdir():
                if _is_temporary(p):
                    p.unlink(missing_ok=True)
                    n += 1
    return n


def read_clip_result(path: Path):
    """`(pyarrow.Table, record dict)` of one clip result file."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    record = json.loads((table.schema.metadata or {}).get(META_KEY, b"{}"))
    return table.replace_schema_metadata(arrow_schema().metadata), record


def summarize(records: list[dict], tasks: Counter, label_sources: Counter | None = None) -> dict:
    """Statistics over clip records: candidates, kept, rejected `{stage: {reason: n}}`, errors, per-task and
    per-`label_source` row counts."""
    rejected: dict = {}
    errors, candidates, kept = [], 0, 0
    for r in records:
        candidates += int(r.get("candidates", 0))
        kept += int(r.get("kept", 0))
        for stage, reasons in (r.get("rejected") or {}).items():
            for reason, n in reasons.items():
                rejected.setdefault(stage, Counter())[reason] += n
        errors.extend({"clip_id": r.get("clip_id"), **e} for e in r.get("errors") or [])
    return {
        "candidates": candidates,
        "kept": kept,
        "rejected": {s: dict(sorted(c.items())) for s, c in sorted(rejected.items())},
        "tasks": dict(sorted(tasks.items())),
        "label_sources": dict(sorted((label_sources or Counter()).items())),
        "clips": len(records),
        "clips_with_rows": sum(1 for r in records if r.get("kept")),
        "errors": errors,
    }


def assemble(output_dir: Path, result_files: list[Path], pipeline: dict, sources: list[dict], rows_per_shard: int):
    """Combine clip result files (in the given order) into `data/train-*.parquet`, `synthesis_stats.json`,
    `README.md`, then `COMPLETE`. Safe to rerun after a crash: files are replaced atomically, temporaries left by a
    killed write are deleted, and `COMPLETE` comes last. Returns the statistics dict."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    output_dir = Path(output_dir)
    (output_dir / COMPLETE).unlink(missing_ok=True)
    tables, records = [], []
    for p in result_files:
        t, rec = read_clip_result(p)
        tables.append(t)
        records.append(rec)
    table = pa.concat_tables(tables) if tables else pa.Table.from_pylist([], schema=arrow_schema())
    ids = table.column("id").to_pylist()
    if len(ids) != len(set(ids)):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise RuntimeError(f"Duplicate row ids {dup} across clip results in {output_dir}; delete .work and rerun.")
    data_dir = output_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    n = table.num_rows
    num_shards = max(1, -(-n // max(1, rows_per_shard)))
    names = []
    for i in range(num_shards):
        part = table.slice(i * rows_per_shard, rows_per_shard) if n else table
        name = f"train-{i:05d}-of-{num_shards:05d}.parquet"
        sink = pa.BufferOutputStream()
        pq.write_table(part, sink)
        _atomic_write_bytes(data_dir / name, sink.getvalue().to_pybytes())
        names.append(name)
    for stale in data_dir.glob("*.parquet"):
        if stale.name not in names:
            stale.unlink()
    stats = summarize(
        records, Counter(table.column("task").to_pylist()), Counter(table.column("label_source").to_pylist())
    )
    stats.update({"pipeline": pipeline, "sources": sources, "shards": names})
    _atomic_write_bytes(output_dir / "synthesis_stats.json", json.dumps(stats, indent=1).encode())
    _atomic_write_bytes(output_dir / "README.md", render_card(stats, table).encode())
    remove_stale_temporaries(output_dir)  # e.g. a shard's temporary from a run killed while it was written
    _atomic_write_bytes(output_dir / COMPLETE, json.dumps({"rows": n, "shards": names}).encode())
    return stats


def is_complete(output_dir) -> bool:
    """Whether `output_dir` holds a finished synthesis (its `COMPLETE` marker exists)."""
    return (Path(output_dir) / COMPLETE).is_file()


def sources_license(sources) -> str | list[str] | None:
    """The license a dataset's sources give it (`[{"name", "license", "url"}, ...]`): their one license, the sorted list
    when they differ, `None` when no source records one."""
    found = sorted({str(s["license"]) for s in sources or [] if isinstance(s, dict) and s.get("license")})
    return None if not found else found[0] if len(found) == 1 else found


def render_card(stats: dict, table) -> str:
    """The README.md of a synthesis folder: `thinker4d.data.card.render_dataset_card` (the renderer `thinker4d push
    --repo-type dataset` uses too) over the rows of `table` (one `train` split) and the statistics of [`summarize`]."""
    from .card import render_dataset_card

    return render_dataset_card(
        features(),
        {"train": table.num_rows},
        pretty_name=CARD_TITLE,
        task_counts=stats.get("tasks"),
        label_source_counts=stats.get("label_sources"),
        stats=stats,
    )


def write_paper_jsonl(output_dir, jsonl_path, image_dir=None) -> int:
    """Write a finished synthesis as the paper's DIFT JSONL (`text_input`, `text_output` with `<output_image>`,
    `image_input`, `image_output`); images go to `image_dir` (default: `<jsonl stem>_images/` next to the file).
    Returns the number of lines written."""
    import pyarrow.parquet as pq

    from .paper_jsonl import dift_row_to_paper

    output_dir, jsonl_path = Path(output_dir), Path(jsonl_path)
    if not is_complete(output_dir):
        raise RuntimeError(f"{output_dir} is not a finished synthesis (no {COMPLETE} marker).")
    image_dir = Path(image_dir) if image_dir else jsonl_path.with_name(jsonl_path.stem + "_images")
    image_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    tmp = jsonl_path.with_name(f".{jsonl_path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as out:
        for shard in sorted((output_dir / "data").glob("train-*.parquet")):
            for row in pq.read_table(shard).to_pylist():
                safe = row["id"].replace("/", "__")
                paths = {}
                for col in ("frames", "imagery"):
                    paths[col] = []
                    for i, img in enumerate(row[col]):
                        ext = ".png" if img["bytes"][:4] == b"\x89PNG" else ".jpg"
                        p = image_dir / safe / f"{col}_{i:03d}{ext}"
                        p.parent.mkdir(parents=True, exist_ok=True)
                        p.write_bytes(img["bytes"])
                        paths[col].append(os.path.relpath(p, jsonl_path.parent))
                out.write(json.dumps(dift_row_to_paper({**row, **paths})) + "\n")
                n += 1
    os.replace(tmp, jsonl_path)
    return n


__all__ = [
    "CARD_TITLE",
    "COLUMN_DESCRIPTIONS",
    "COMPLETE",
    "arrow_schema",
    "assemble",
    "done_keys",
    "encode_image",
    "features",
    "is_complete",
    "keys_to_retry",
    "read_clip_record",
    "read_clip_result",
    "remove_stale_temporaries",
    "render_card",
    "write_clip_result",
    "write_paper_jsonl",
]
