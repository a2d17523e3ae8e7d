"""Dataset folders for `thinker4d push --repo-type dataset`: the rows `datasets.load_dataset` reads, as parquet shards under
`data/`, and the card of [`render_dataset_card`]."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from ..redact import assert_no_secrets
from .cards import render_dataset_card


def _finished_data_files(source: Path) -> dict[str, list[Path]]:
    """`{split: [file, ...]}` that `datasets.load_dataset(source)` reads: the `configs` of the folder's README.md when it
    has them, else the `datasets` default patterns (which skip hidden folders such as a synthesis' `.work/`)."""
    import datasets as hf_datasets

    with tempfile.TemporaryDirectory(prefix="thinker4d-resolve-") as cache_dir:
        builder = hf_datasets.load_dataset_builder(str(source), cache_dir=cache_dir)
    data_files = builder.config.data_files or {}
    resolved = {str(split): [Path(f) for f in files] for split, files in data_files.items()}
    others = sorted(str(f) for files in resolved.values() for f in files if f.suffix != ".parquet")
    if others:
        raise ValueError(
            f"{source} holds data files that are not parquet ({', '.join(others[:3])}); thinker4d push copies "
            "parquet shards only. Write the dataset with Dataset.to_parquet() or save_to_disk() first."
        )
    return resolved


def stage_dataset(
    source: str | os.PathLike,
    output_dir: str | os.PathLike,
    repo_id: str,
    *,
    stats: str | os.PathLike | Mapping | None = None,
    license: str | None = None,
    pretty_name: str | None = None,
    description: str | None = None,
) -> Path:
    """Write the folder `thinker4d push --repo-type dataset` uploads: parquet shards under `data/` and a dataset card.

    Args:
        source: a dataset folder `datasets.load_dataset` reads (a `thinker4d synthesize` output, or parquet shards whose
            split `datasets` takes from a `train` / `validation` / `test` folder or file name, anything else `train`),
            or a `Dataset.save_to_disk` / `DatasetDict.save_to_disk` folder. The staged rows are exactly those
            `load_dataset(source)` returns: a synthesis' per-clip work files (`.work/`) are never staged, and a
            synthesis without its `COMPLETE` marker is refused.
        output_dir: where to write.
        repo_id: the dataset's Hub id (card title, `configs` metadata).
        stats: synthesis statistics, a dict or JSON path; by default `synthesis_stats.json` in `source` when present.
            Keys read: `candidates`, `kept`, `rejected` (`{stage: {reason: count}}` or `{reason: count}`), `pipeline`
            (`{step: description}`), `sources` (`[{"name", "license", "url"}]`), `clips`, `errors`.
        license: license id for the card metadata; by default the sources' license (their list when they differ,
            `unknown` when none is recorded).
        pretty_name: the card title; by default the last part of `repo_id`.
        description: a paragraph added to the card's introduction.
    """
    import datasets as hf_datasets
    import pyarrow.parquet as pq

    from ..data.writer import COMPLETE, WORK

    source, output_dir = Path(source), Path(output_dir)
    if not source.is_dir():
        raise FileNotFoundError(f"Dataset folder {source} does not exist.")
    if (source / WORK).is_dir() and not (source / COMPLETE).is_file():
        raise RuntimeError(
            f"{source} is an unfinished thinker4d synthesis ({WORK}/ is there but no {COMPLETE} marker): finish it "
            f"with `thinker4d synthesize --output_dir {source} --resume` and the same settings, then push again."
        )
    is_saved = (source / "dataset_dict.json").is_file() or (source / "state.json").is_file()
    if not is_saved and not any(p.is_file() for p in source.rglob("*.parquet")):
        raise FileNotFoundError(
            f"{source} holds no *.parquet shards and is not a save_to_disk folder; write the dataset with "
            "Dataset.to_parquet() or save_to_disk() first."
        )
    data_dir = output_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    shards: dict[str, list[Path]] = {}
    if is_saved:
        loaded = hf_datasets.load_from_disk(str(source))
        splits = loaded if isinstance(loaded, hf_datasets.DatasetDict) else {"train": loaded}
        for split, ds in splits.items():
            dest = data_dir / f"{split}-00000-of-00001.parquet"
            ds.to_parquet(str(dest))
            shards[split] = [dest]
    else:
        for split, paths in _finished_data_files(source).items():
            for i, path in enumerate(paths):
                dest = data_dir / f"{split}-{i:05d}-of-{len(paths):05d}.parquet"
                shutil.copyfile(path, dest)
                shards.setdefault(split, []).append(dest)

    split_counts, tasks, label_sources, features = {}, Counter(), Counter(), None
    for split in sorted(shards):
        n = 0
        for path in shards[split]:
            pf = pq.ParquetFile(path)
            n += pf.metadata.num_rows
            names = pf.schema_arrow.names
            if features is None:
                features = hf_datasets.Features.from_arrow_schema(pf.schema_arrow)
            cols = [c for c in ("task", "label_source") if c in names]
            if cols:
                table = pf.read(columns=cols)
                if "task" in cols:
                    tasks.update(table.column("task").to_pylist())
                if "label_source" in cols:
                    label_sources.update(table.column("label_source").to_pylist())
        split_counts[split] = n
    total = sum(split_counts.values())
    if (source / COMPLETE).is_file():
        recorded = json.loads((source / COMPLETE).read_text()).get("rows")
        if isinstance(recorded, int) and recorded != total:
            raise RuntimeError(
                f"{source}/{COMPLETE} records {recorded} rows but its data files hold {total}: the folder was changed "
                f"after the synthesis finished. Rerun `thinker4d synthesize --output_dir {source} --resume` (same settings) "
                "to rewrite data/, then push again."
            )

    if stats is None and (source / "synthesis_stats.json").is_file():
        stats = source / "synthesis_stats.json"
    if stats is not None and not isinstance(stats, Mapping):
        stats = json.loads(Path(stats).read_text())
    text = render_dataset_card(
        features or {},
        split_counts,
        pretty_name=pretty_name or repo_id.split("/")[-1],
        repo_id=repo_id,
        task_counts=tasks,
        label_source_counts=label_sources,
        stats=stats,
        license=license,
        description=description,
    )
    (output_dir / "README.md").write_text(text)
    assert_no_secrets(output_dir)
    return output_dir


__all__ = ["stage_dataset"]
