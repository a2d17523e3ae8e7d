"""Model and dataset cards, rendered from the jinja templates in `thinker4d/templates/model_cards/`.

A card states only what it is given or what the folder records: a model card lists the training stages of
`training_stages.json`, never a stage the folder does not record; a dataset card counts rows in the data files and takes
column meanings from `thinker4d.data.writer.COLUMN_DESCRIPTIONS`. `render_dataset_card` is the one dataset-card
renderer: `thinker4d synthesize` (its folder's README.md) and `thinker4d push --repo-type dataset` both call it. It is defined in
`thinker4d.data.card` (the data package writes a synthesis folder's card without importing this package) and
re-exported here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCardData

from ..data.card import DATASET_TAGS, feature_text, render_dataset_card
from ..models.auto import BACKBONE_OF
from ..redact import scrub
from ..templating import _card_templates_dir, _fmt, _jinja, _render_card
from .training_record import training_hyperparameters


PAPER_URL = "https://huggingface.co/papers/2605.05997"
MODEL_TAGS = ("thinker4d", "latent-reasoning", "custom_generate")
_BACKBONE_TITLE = {"qwen2_5_vl": "Qwen2.5-VL", "qwen3_vl": "Qwen3-VL"}
# What each recorded stage did, for the card.
STAGE_DESCRIPTIONS = {
    "DIFT": "Dynamic-Imagery Fine-Tuning, cross-entropy on text plus a cosine loss pulling each latent towards K pooled "
    "vision features of a landmark-overlay image",
    "text-CoT SFT": "supervised fine-tuning on the chain of thought with the imagery blocks left out (no latents)",
    "raw-QA SFT": "supervised fine-tuning on the answer alone",
    "4DRL": "GRPO with outcome rewards on rollouts that decode with latent imagery; policy gradient on text tokens only",
}


# ----------------------------------------------------------------------------------------------------------------------
# Model cards


def _pct(x: Any) -> str:
    return f"{100 * float(x):.1f}%" if isinstance(x, (int, float)) else "n/a"


def load_eval_summary(summary: str | os.PathLike | Mapping) -> dict:
    """Card-ready view of an evaluation summary JSON (fields per docs/design.md: `accuracy`, `macro_accuracy`,
    `subtask_accuracy`, `subtask_total`, `total`, `evaluated`, `errors`, `parser`, `generation`, `benchmark`)."""
    source = str(summary) if not isinstance(summary, Mapping) else "<dict>"
    if not isinstance(summary, Mapping):
        path = Path(summary)
        if path.is_dir():
            path = path / "summary.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"Evaluation summary {path} does not exist; pass the summary JSON `thinker4d eval` wrote."
            )
        summary = json.loads(path.read_text())
    if "accuracy" not in summary:
        raise ValueError(
            f"Evaluation summary {source} has no 'accuracy' field; expected the summary JSON written by thinker4d eval "
            "(total, evaluated, errors, correct, accuracy, subtask_accuracy, subtask_total, macro_accuracy, ...)."
        )
    sub_acc = summary.get("subtask_accuracy") or {}
    sub_n = summary.get("subtask_total") or {}
    generation = scrub(summary.get("generation") or {})
    return {
        "benchmark": summary.get("benchmark") or "evaluation",
        "accuracy": _pct(summary["accuracy"]),
        "macro_accuracy": _pct(summary.get("macro_accuracy")),
        "total": summary.get("total", "n/a"),
        "evaluated": summary.get("evaluated", "n/a"),
        "errors": summary.get("errors", "n/a"),
        "parser": summary.get("parser", "n/a"),
        "subtasks": [(name, _pct(sub_acc[name]), sub_n.get(name, "n/a")) for name in sorted(sub_acc)],
        "generation": ", ".join(f"`{k}={v}`" for k, v in sorted(generation.items())) if generation else "",
    }


def usage_snippet(repo_id: str, max_new_tokens: int = 1024) -> str:
    """The card's Python usage snippet (needs only torch, transformers and numpy)."""
    template = _jinja(_card_templates_dir()).get_template("usage_snippet.py.jinja")
    return template.render(repo_id=repo_id, max_new_tokens=max_new_tokens).strip()


def _started_from_text(started_from: str | None) -> str:
    from ..datasets_io import is_hub_id

    if not started_from:
        return "not recorded"
    if is_hub_id(started_from):
        return f"[{started_from}](https://huggingface.co/{started_from})"
    return "a local folder"


def _stage_rows(training_stages: list[Mapping]) -> list[dict]:
    rows = []
    for record in training_stages:
        step, max_steps = record.get("global_step"), record.get("max_steps")
        steps = "not recorded" if step is None else f"{step}" if not max_steps else f"{step} of {max_steps}"
        rows.append(
            {
                "stage": record["stage"],
                "trainer": record.get("trainer") or "not recorded",
                "steps": steps,
                "rows": "not recorded" if record.get("train_rows") is None else record["train_rows"],
                "started_from": _started_from_text(record.get("started_from")),
            }
        )
    return rows


def _state_summary(trainer_state: Mapping | None) -> dict | None:
    """Steps, epoch and the last logged training loss of a `trainer_state.json`."""
    if not trainer_state:
        return None
    history = trainer_state.get("log_history") or []
    losses = [h["train_loss"] for h in history if "train_loss" in h] or [h["loss"] for h in history if "loss" in h]
    epoch = trainer_state.get("epoch")
    return {
        "global_step": trainer_state.get("global_step"),
        "max_steps": trainer_state.get("max_steps"),
        "epoch": None if epoch is None else _fmt(float(epoch)),
        "loss": _fmt(float(losses[-1])) if losses else None,
    }


def render_model_card(
    config: Any,
    repo_id: str,
    *,
    base_model: str | None = None,
    datasets: Iterable[str] | None = None,
    training_args: Any = None,
    eval_summaries: Iterable[str | os.PathLike | Mapping] | None = None,
    license: str = "apache-2.0",
    stages: str | None = None,
    training_stages: Iterable[Mapping] | None = None,
    trainer_state: Mapping | None = None,
    config_class: type | None = None,
    snippet_max_new_tokens: int = 1024,
) -> str:
    """Render README.md for a thinker4d checkpoint from `model_cards/model_card.md.jinja`.

    The card states only what it is given: the training stages it lists are `training_stages` (what the folder
    records, see [`read_training_record`]); a `stages` text is shown as the uploader's description, never as a
    record.

    Args:
        config (`PretrainedConfig` or `dict`): the model config (latent fields, model_type).
        repo_id (`str`): Hub id (or local path) used in the usage snippet.
        base_model (`str`, *optional*): Hub id of the model the checkpoint was trained from; by default the Hub id the
            first recorded stage started from, if any.
        datasets (`list[str]`, *optional*): Hub ids of the training datasets.
        training_args (*optional*): TrainingArguments-like object, dict, or JSON/YAML path (see
            [`training_hyperparameters`]); `config_class` is its trainer config class when it is a dict or a path.
        eval_summaries (*optional*): evaluation summary JSON paths or dicts, one table each.
        license (`str`, defaults to `"apache-2.0"`).
        stages (`str`, *optional*): the uploader's description of the training, e.g. `"DIFT then 4DRL"`.
        training_stages (`list[dict]`, *optional*): recorded stage records (`stage`, `trainer`, `global_step`,
            `max_steps`, `train_rows`, `started_from`), oldest first.
        trainer_state (`dict`, *optional*): the folder's `trainer_state.json`.
    """
    config = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    backbone = BACKBONE_OF.get(config.get("model_type"), "qwen2_5_vl")
    datasets = list(datasets or [])
    training_stages = list(training_stages or [])
    if base_model is None and training_stages:
        from ..datasets_io import is_hub_id

        first = training_stages[0].get("started_from")
        base_model = first if first and is_hub_id(first) else None
    stage_names = list(dict.fromkeys(r["stage"] for r in training_stages))
    metadata = ModelCardData(
        license=license,
        base_model=base_model,
        datasets=datasets or None,
        pipeline_tag="image-text-to-text",
        library_name="transformers",
        tags=list(MODEL_TAGS),
    )
    return _render_card(
        "model_card.md.jinja",
        metadata_yaml=metadata.to_yaml().strip(),
        model_name=repo_id.rstrip("/").split("/")[-1],
        repo_id=repo_id,
        backbone=backbone,
        backbone_title=_BACKBONE_TITLE[backbone],
        base_model=base_model,
        datasets=datasets,
        latent_size=config.get("latent_size"),
        imagery_pooling=config.get("imagery_pooling", "raster"),
        stages=stages,
        recorded_stages=_stage_rows(training_stages),
        stage_rows=[(r["stage"], r["train_rows"]) for r in training_stages if r.get("train_rows") is not None],
        stage_descriptions=[(n, STAGE_DESCRIPTIONS[n]) for n in stage_names if n in STAGE_DESCRIPTIONS],
        trained=_state_summary(trainer_state),
        last_stage=training_stages[-1]["stage"] if training_stages else None,
        hyperparameters=training_hyperparameters(training_args, config_class),
        evaluations=[load_eval_summary(s) for s in (eval_summaries or [])],
        snippet=usage_snippet(repo_id, snippet_max_new_tokens),
    )


__all__ = [
    "DATASET_TAGS",
    "MODEL_TAGS",
    "STAGE_DESCRIPTIONS",
    "feature_text",
    "load_eval_summary",
    "render_dataset_card",
    "render_model_card",
    "usage_snippet",
]
