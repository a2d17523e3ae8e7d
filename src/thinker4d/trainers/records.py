"""What a thinker4d trainer records beside the weights it saves, so that a model card can say how the folder was made.

Every `save_model` (and every checkpoint) of [`DIFTTrainer`] and [`LatentGRPOTrainer`] writes, next to transformers'
pickled `training_args.bin`:

- `training_args.json`: the trainer config as JSON (`TrainingArguments.to_dict()`, tokens masked, credential-like keys
  dropped);
- `trainer_state.json`: the trainer state (steps, epochs, log history), as transformers writes it in checkpoints;
- `training_stages.json`: `{"stages": [...]}`, one record per training stage that led to these weights, oldest first.
  A stage started from a local folder that has its own `training_stages.json` carries those stages forward; a stage
  started from anything else (a Hub id, a stock model, a model built in memory) starts the list.

Each stage record: `stage` (`"DIFT"`, `"text-CoT SFT"`, `"raw-QA SFT"` or `"4DRL"`), `trainer`, `config_class`,
`started_from` (the model's `name_or_path` when the stage began, `None` when it had none), `global_step`,
`max_steps`, `epoch`, `train_rows` (`None` for a dataset without a length).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..redact import scrub


TRAINING_ARGS_JSON = "training_args.json"
TRAINER_STATE_JSON = "trainer_state.json"
TRAINING_STAGES_JSON = "training_stages.json"
# Stage names per DIFTConfig.mode; LatentGRPOConfig is "4DRL".
DIFT_MODE_STAGES = {"dift": "DIFT", "text_cot": "text-CoT SFT", "raw_qa": "raw-QA SFT"}


def stage_of_args(args) -> str | None:
    """The stage a trainer config trains (`"DIFT"`, `"text-CoT SFT"`, `"raw-QA SFT"`, `"4DRL"`), `None` for others."""
    from .dift_config import DIFTConfig
    from .latent_grpo_config import LatentGRPOConfig

    if isinstance(args, LatentGRPOConfig):
        return "4DRL"
    if isinstance(args, DIFTConfig):
        return DIFT_MODE_STAGES.get(args.mode)
    return None


def read_stages(folder: str | os.PathLike | None) -> list[dict]:
    """The stage records of `folder`'s `training_stages.json`; `[]` when `folder` is not a local folder or has none."""
    if not folder or not Path(folder).is_dir():
        return []
    path = Path(folder) / TRAINING_STAGES_JSON
    if not path.is_file():
        return []
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:
        record = None
    stages = record.get("stages") if isinstance(record, dict) else None
    if not isinstance(stages, list) or not all(isinstance(s, dict) and s.get("stage") for s in stages):
        raise ValueError(
            f"{path} is not a thinker4d training record: expected {{\"stages\": [...]}}, each record with a 'stage' "
            "name. Delete the file if a thinker4d trainer did not write it (the card then lists no stages)."
        )
    return stages


def write_training_record(trainer, output_dir: str | os.PathLike, model) -> None:
    """Write `training_args.json`, `trainer_state.json` and `training_stages.json` for `trainer` into `output_dir`.

    Args:
        trainer: a `DIFTTrainer` or `LatentGRPOTrainer` (its `args`, `state` and `train_dataset` are read).
        output_dir: the folder the weights were saved in.
        model: the unwrapped thinker4d model (its `name_or_path` is where the stage started from).
    """
    output_dir = Path(output_dir)
    args = trainer.args
    (output_dir / TRAINING_ARGS_JSON).write_text(json.dumps(scrub(args.to_dict()), indent=2, default=str) + "\n")
    trainer.state.save_to_json(str(output_dir / TRAINER_STATE_JSON))
    started_from = getattr(model, "name_or_path", None) or None
    previous = (
        read_stages(started_from) if started_from and Path(started_from).resolve() != output_dir.resolve() else []
    )
    try:
        rows = len(trainer.train_dataset) if trainer.train_dataset is not None else None
    except TypeError:  # an iterable dataset
        rows = None
    stage = {
        "stage": stage_of_args(args) or type(trainer).__name__,
        "trainer": type(trainer).__name__,
        "config_class": f"{type(args).__module__}.{type(args).__qualname__}",
        "started_from": str(started_from) if started_from else None,
        "global_step": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,
        "epoch": trainer.state.epoch,
        "train_rows": rows,
    }
    record = {"stages": [*previous, stage]}
    (output_dir / TRAINING_STAGES_JSON).write_text(json.dumps(scrub(record), indent=2) + "\n")


__all__ = [
    "DIFT_MODE_STAGES",
    "TRAINER_STATE_JSON",
    "TRAINING_ARGS_JSON",
    "TRAINING_STAGES_JSON",
    "read_stages",
    "stage_of_args",
    "write_training_record",
]
