"""DIFT data sets: preparing a split for [`~thinker4d.trainers.DIFTTrainer`] (paper-row conversion, row checks,
undecoded images), caching the pooled imagery targets once with the data set, and pre-encoding rows through the
collator. The per-row encoding itself lives in `dift_collator.py`.
"""

from __future__ import annotations

import hashlib
import logging

import torch

from ..models.conversion import unwrap_latent_model
from .dift_collator import IMAGERY_MARKER, InvalidRowError, _downscale, load_image, row_problem


logger = logging.getLogger(__name__)

# Image columns of the 4D CoT schema; left undecoded so that the collator reports an unreadable image with its row id.
_IMAGE_COLUMNS = ("frames", "imagery")

_ENCODED_KEYS = (
    "input_ids",
    "mm_token_type_ids",
    "pixel_values_videos",
    "video_grid_thw",
    "second_per_grid_ts",
    "imagery_pixel_values",
    "imagery_grid_thw",
    "imagery_targets",
    "num_imagery",
)


def cache_imagery_targets(dataset, model, processor, batch_size: int = 8, imagery_max_pixels: int | None = None):
    """Pool every overlay of `dataset` once with the model's frozen vision tower.

    Adds a column `imagery_targets`: per row, a list of `num_imagery * K` vectors of size `hidden` (float32), in
    marker order. Save the result (`save_to_disk` / `push_to_hub`) to reuse it; it is tied to the model's vision tower,
    K and pooling mode.

    Args:
        dataset (`datasets.Dataset`): 4D CoT rows (`id`, `cot`, `imagery`).
        model: a thinker4d model (its `get_imagery_targets` is used).
        processor: its processor (the image processor resizes the overlays).
        batch_size (`int`, *optional*, defaults to 8): overlays per vision-tower call.
        imagery_max_pixels (`int`, *optional*): downscale larger overlays first (as the collator does).

    Returns:
        `datasets.Dataset` with the extra column.
    """
    base = unwrap_latent_model(model)
    device = next(base.parameters()).device
    was_training = base.training
    base.eval()

    def pool(batch):
        images, counts = [], []
        for rid, cot, overlays in zip(batch["id"], batch["cot"], batch["imagery"]):
            n = cot.count(IMAGERY_MARKER)
            if n != len(overlays or []):
                raise InvalidRowError(
                    f"Row {rid!r}: {n} `<imagery>` markers but {len(overlays or [])} overlay images."
                )
            images += [
                _downscale(load_image(im, rid, f"overlay {i}"), imagery_max_pixels) for i, im in enumerate(overlays)
            ]
            counts.append(n)
        hidden = base.config.text_config.hidden_size
        pooled = []
        for i in range(0, len(images), batch_size):
            enc = processor.image_processor(images=images[i : i + batch_size], return_tensors="pt")
            z = base.get_imagery_targets(enc["pixel_values"].to(device), enc["image_grid_thw"].to(device))
            pooled.append(z.float().cpu())
        flat = torch.cat(pooled) if pooled else torch.zeros(0, base.config.latent_size, hidden)
        out, at = [], 0
        for n in counts:
            out.append(flat[at : at + n].reshape(-1, hidden).tolist())
            at += n
        return {"imagery_targets": out}

    fingerprint = hashlib.sha256(
        f"{dataset._fingerprint}-{base.config.name_or_path}-{base.config.latent_size}-{base.config.imagery_pooling}-"
        f"{imagery_max_pixels}".encode()
    ).hexdigest()[:16]
    try:
        return dataset.map(
            pool, batched=True, batch_size=batch_size, new_fingerprint=fingerprint, desc="Caching imagery targets"
        )
    finally:
        base.train(was_training)


def prepare_dift_dataset(dataset, model, processor, collator, args, split: str) -> tuple:
    """Check, convert and optionally cache / pre-encode a DIFT data set, as [`DIFTTrainer`] does for each split.

    A `datasets.Dataset` in the paper's JSONL layout is converted to the 4D CoT schema; its columns and rows are
    checked (invalid rows raise, or are dropped with `args.skip_invalid_rows`); image columns are left undecoded so
    the collator names the row of an unreadable image; then, per `args`, the imagery targets are cached
    ([`cache_imagery_targets`]) and the rows pre-encoded. Other data sets are returned as they are (the collator
    validates their rows).

    Returns:
        `(dataset, num_invalid_rows)`: the prepared data set and the number of rows dropped as invalid.
    """
    if dataset is None:
        return None, 0
    try:
        from datasets import Dataset
    except ImportError:  # pragma: no cover
        return dataset, 0
    if not isinstance(dataset, Dataset):
        return dataset, 0  # an IterableDataset or torch Dataset is used as is; rows are validated in the collator
    if "text_output" in dataset.column_names and "cot" not in dataset.column_names:
        from ..data.paper_jsonl import paper_row_to_dift

        dataset = dataset.map(paper_row_to_dift, remove_columns=dataset.column_names, desc="Converting paper rows")
    missing = {"id", "frames", "question", "options", "answer"} - set(dataset.column_names)
    if args.mode != "raw_qa":
        missing |= {"cot"} - set(dataset.column_names)
    if missing:
        raise ValueError(
            f"The {split} data set lacks the columns {sorted(missing)} of the 4D CoT schema (id, frames, fps, "
            f"question, options, answer, cot, imagery); it has {dataset.column_names}. See docs/dift.md."
        )
    # Images are decoded by the collator, so an unreadable one is reported with its row id.
    from datasets import Image, List

    for col in _IMAGE_COLUMNS:
        feature = dataset.features.get(col)
        if isinstance(getattr(feature, "feature", None), Image) and feature.feature.decode:
            dataset = dataset.cast_column(col, List(Image(decode=False)))

    text_cols = [
        c for c in ("id", "frames", "question", "options", "answer", "cot", "imagery") if c in dataset.column_names
    ]
    problems = dataset.select_columns(text_cols).map(
        lambda row: {"_problem": row_problem(row, args.mode) or ""},
        remove_columns=text_cols,
        num_proc=args.dataset_num_proc,
        desc=f"Validating {split} rows",
    )["_problem"]
    bad = [i for i, p in enumerate(problems) if p]
    if bad:
        if not args.skip_invalid_rows:
            raise InvalidRowError(
                f"{len(bad)} of {len(dataset)} {split} rows are invalid; the first: {problems[bad[0]]} "
                "(set skip_invalid_rows=True to drop them instead)."
            )
        bad_set = set(bad)
        dataset = dataset.select([i for i in range(len(dataset)) if i not in bad_set])
        logger.warning(
            "Skipped %d invalid %s rows of %d; the first: %s", len(bad), split, len(problems), problems[bad[0]]
        )
        if len(dataset) == 0:
            raise InvalidRowError(f"Every {split} row is invalid; the first: {problems[bad[0]]}")

    if args.cache_imagery_targets and "imagery_targets" not in dataset.column_names:
        dataset = cache_imagery_targets(
            dataset,
            model,
            processor,
            batch_size=max(1, args.per_device_eval_batch_size),
            imagery_max_pixels=args.imagery_max_pixels,
        )
    if args.pre_encode:
        dataset = pre_encode(dataset, collator, args, split)
    return dataset, len(bad)


def pre_encode(dataset, collator, args, split: str):
    """`dataset` encoded once by `collator.encode_row` (the collator then only pads), in torch format; rows whose
    images cannot be read raise, or are dropped with `args.skip_invalid_rows`."""

    def encode(row):
        try:
            enc = collator.encode_row(row)
        except InvalidRowError as e:
            if not args.skip_invalid_rows:
                raise
            logger.warning("Skipping invalid row: %s", e)
            return {"_ok": False, **{k: None for k in _ENCODED_KEYS}}
        return {"_ok": True, **{k: enc.get(k) for k in _ENCODED_KEYS}}

    n = len(dataset)
    dataset = dataset.map(
        encode, remove_columns=dataset.column_names, num_proc=args.dataset_num_proc, desc=f"Encoding {split} rows"
    )
    dataset = dataset.filter(lambda ok: ok, input_columns="_ok").remove_columns("_ok")
    if len(dataset) < n:
        logger.warning("Skipped %d %s rows whose images could not be read.", n - len(dataset), split)
    if len(dataset) == 0:
        raise InvalidRowError(f"No {split} row could be encoded.")
    return dataset.with_format("torch")


__all__ = ["cache_imagery_targets", "pre_encode", "prepare_dift_dataset"]
