"""The dataset card: the README.md of a 4D CoT dataset, rendered from `dataset_card.md.jinja` in
`thinker4d/templates/model_cards/`.

`render_dataset_card` is the one dataset-card renderer: `thinker4d synthesize` (its folder's README.md) and
`thinker4d push --repo-type dataset` both call it. The card counts rows in the data files and takes column meanings from
`thinker4d.data.writer.COLUMN_DESCRIPTIONS`. It lives beside the dataset it describes, below the Hub package, which
re-exports it (`thinker4d.hub.render_dataset_card`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from huggingface_hub import DatasetCardData

from ..redact import scrub
from ..templating import _fmt, _render_card
from .writer import COLUMN_DESCRIPTIONS, sources_license


DATASET_TAGS = ("thinker4d", "latent-reasoning", "4d-reasoning", "video")


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def _rejection_rows(rejected: Any) -> list[tuple[str, str, Any]]:
    rows = []
    for stage, value in sorted((rejected or {}).items()):
        if isinstance(value, Mapping):
            rows.extend((stage, reason, n) for reason, n in sorted(value.items()))
        else:
            rows.append(("-", stage, value))
    return rows


def feature_text(feature) -> str:
    """How the card's schema table names a `datasets` feature: `string`, `float32`, `Image`, `Sequence(Image)`, ..."""
    import datasets as hf_datasets

    if isinstance(feature, hf_datasets.Value):
        return feature.dtype
    if isinstance(feature, hf_datasets.Image):
        return "Image"
    if isinstance(feature, (hf_datasets.Sequence, hf_datasets.List, list)):
        inner = feature[0] if isinstance(feature, list) else feature.feature
        return f"Sequence({feature_text(inner)})"
    if isinstance(feature, dict) and {"bytes", "path"} <= set(feature):
        return "Image"
    return type(feature).__name__


def render_dataset_card(
    features: Mapping,
    split_counts: Mapping[str, int],
    *,
    pretty_name: str,
    repo_id: str | None = None,
    task_counts: Mapping[str, int] | None = None,
    label_source_counts: Mapping[str, int] | None = None,
    stats: Mapping | None = None,
    license: str | list[str] | None = None,
    description: str | None = None,
) -> str:
    """Render README.md for a 4D CoT dataset from `model_cards/dataset_card.md.jinja`.

    Args:
        features (`datasets.Features`): the columns of the rows; each column's meaning comes from
            `thinker4d.data.writer.COLUMN_DESCRIPTIONS` (empty for a column the design contract does not name).
        split_counts (`dict[str, int]`): rows per split; each split's data files are `data/<split>-*`.
        pretty_name (`str`): the card title and `pretty_name` metadata.
        repo_id (`str`, *optional*): the dataset's Hub id, shown in the loading line.
        task_counts, label_source_counts (`dict[str, int]`, *optional*): rows per `task` and per `label_source`.
        stats (`dict`, *optional*): synthesis statistics. Keys read: `candidates`, `kept`, `rejected`
            (`{stage: {reason: count}}` or `{reason: count}`), `pipeline` (`{step: description}`), `sources`
            (`[{"name", "license", "url"}]`), `clips`, `errors`. Credential-like keys and secret values are dropped.
        license (`str` or `list[str]`, *optional*): license metadata; by default the sources' license (their list when
            they differ, `unknown` when none is recorded).
        description (`str`, *optional*): a paragraph added under the introduction.
    """
    stats = scrub(dict(stats or {}))
    candidates, kept = stats.get("candidates"), stats.get("kept")
    rate = None
    if isinstance(candidates, int) and isinstance(kept, int) and candidates > 0:
        rate = f"{100 * (candidates - kept) / candidates:.1f}%"
    sources = [{"name": "", "license": "", "url": "", **s} for s in stats.get("sources") or []]
    if license is None:
        license = sources_license(sources) or "unknown"
    splits = sorted(split_counts)
    metadata = DatasetCardData(
        license=license,
        pretty_name=pretty_name,
        task_categories=["video-text-to-text"],
        tags=list(DATASET_TAGS),
        size_categories=[_size_category(sum(split_counts.values()))],
        configs=[
            {"config_name": "default", "data_files": [{"split": s, "path": f"data/{s}-*"} for s in splits]},
        ],
    )
    return _render_card(
        "dataset_card.md.jinja",
        metadata_yaml=metadata.to_yaml().strip(),
        pretty_name=pretty_name,
        repo_id=repo_id,
        description=description,
        schema=[(name, feature_text(f), COLUMN_DESCRIPTIONS.get(name, "")) for name, f in features.items()],
        split_counts=[(s, split_counts[s]) for s in splits],
        task_counts=sorted((task_counts or {}).items()),
        label_source_counts=sorted((label_source_counts or {}).items()),
        pipeline=[(k, _fmt(v)) for k, v in sorted((stats.get("pipeline") or {}).items())],
        clips=stats.get("clips"),
        errors=len(stats.get("errors") or []),
        rejections=_rejection_rows(stats.get("rejected")),
        rejection_rate=rate,
        kept=kept,
        candidates=candidates,
        sources=sources,
        license=license if isinstance(license, str) else ", ".join(license),
    )


__all__ = ["DATASET_TAGS", "feature_text", "render_dataset_card"]
