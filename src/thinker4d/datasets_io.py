"""Reading datasets that thinker4d writes (parquet folders with a `data/<split>-*.parquet` layout), locally or from
the Hub.

Why not plain `datasets.load_dataset(<folder>)`: for a local folder whose README declares `configs:` with relative
`data_files` patterns, datasets 5.x can serve a cached copy of *another* folder with the same name (two quickstart
runs, or two SynthDSR builds in different parents, both called `benchmark`), silently returning the wrong rows. Here
the parquet files are resolved to absolute paths first, so the cache key includes them.

The price: every new folder gets its own Arrow copy in the datasets cache (`HF_DATASETS_CACHE`, by default
`~/.cache/huggingface/datasets`), and every `.map` on it (pre-encoding, imagery targets) caches beside that copy. A
job that makes many short-lived folders should pass `cache_dir` (the quickstart keeps its copies in its own output
folder and removes them when it finishes).
"""

from __future__ import annotations

import os
from pathlib import Path


def is_hub_id(data) -> bool:
    """`owner/name` that is not an existing local path (and not a `.`-, `/`- or `~`-rooted one)."""
    text = str(data)
    return not Path(text).exists() and text.count("/") == 1 and not text.startswith((".", "/", "~"))


def local_parquet_files(path: str | os.PathLike) -> dict[str, list[str]]:
    """`{split: [absolute parquet paths]}` of a thinker4d dataset folder (`data/<split>-*.parquet`)."""
    data = Path(path) / "data"
    out: dict[str, list[str]] = {}
    for f in sorted(data.glob("*.parquet")):
        split = f.name.split("-")[0]
        out.setdefault(split, []).append(str(f.resolve()))
    return out


def load_thinker4d_dataset(
    path: str | os.PathLike, split: str | None = None, cache_dir: str | os.PathLike | None = None
):
    """Load a dataset folder written by thinker4d (synthesis output, SynthDSR), a `save_to_disk` folder, parquet
    file(s), or a Hub id. Returns a `Dataset` when `split` is given, else a `DatasetDict`.

    `cache_dir` is passed to `datasets.load_dataset` (where the Arrow copy and the caches of later `.map` calls go);
    `None` uses the datasets default. A `save_to_disk` folder is read in place and ignores it.

    Raises:
        FileNotFoundError: for a local path that does not exist.
        ValueError: when `split` is not in the dataset (the message lists the available splits).
    """
    import datasets

    p = Path(path).expanduser()
    cache = str(cache_dir) if cache_dir is not None else None
    if p.is_dir() and ((p / "state.json").is_file() or (p / "dataset_dict.json").is_file()):
        ds = datasets.load_from_disk(str(p))
    elif p.is_dir() and local_parquet_files(p):
        ds = datasets.load_dataset("parquet", data_files=local_parquet_files(p), cache_dir=cache)
    elif p.is_file() and p.suffix == ".parquet":
        ds = datasets.load_dataset("parquet", data_files={"train": str(p.resolve())}, cache_dir=cache)
    elif p.exists():
        ds = datasets.load_dataset(str(p), cache_dir=cache)
    elif is_hub_id(path):
        ds = datasets.load_dataset(str(path), cache_dir=cache)
    else:
        raise FileNotFoundError(f"Dataset {path} not found: pass a local folder, a parquet file or a Hub dataset id.")
    if split is None:
        return ds
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise ValueError(f"{path} has no split {split!r}; available: {list(ds)}. Pass one of them as the split.")
        return ds[split]
    return ds
