"""What a checkpoint records about its training, read for the model card: the stages (`training_stages.json`), the
trainer state and the trainer config, and the hyper-parameter rows the card lists."""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..redact import scrub
from ..templating import _fmt


logger = logging.getLogger(__name__)

# Where a checkpoint records its trainer config, in order of preference (training_args.bin is transformers' pickle).
_TRAINING_ARGS_FILES = ("training_args.json", "trainer_config.json", "training_args.bin")
# Modules a recorded `config_class` may be imported from (to list only the fields that differ from their defaults).
_CONFIG_MODULES = ("thinker4d.", "transformers.", "trl.")
_ALWAYS_SHOWN_HPARAMS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "seed",
)
_NOT_HPARAMS = re.compile(r"^(output_dir|logging_dir|run_name|report_to|hub_.*|push_to_hub.*|resume_from_checkpoint)$")


def _plain(value: Any) -> Any:
    """A JSON-comparable form of a config value (enums to their values, tuples to lists)."""
    if hasattr(value, "value") and not isinstance(value, (str, int, float, bool)):
        value = value.value
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return str(value)


def _field_defaults(config_class: type) -> dict[str, Any]:
    """`{field: default}` of a config dataclass, after its `__post_init__` where it can be built with no argument (so
    that values it normalises, such as `accelerator_config` or `debug`, count as defaults), else as declared."""
    declared = {}
    for f in dataclasses.fields(config_class):
        if f.default is not dataclasses.MISSING:
            declared[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            declared[f.name] = f.default_factory()
    try:
        with tempfile.TemporaryDirectory(prefix="thinker4d-defaults-") as tmp:
            built = config_class(output_dir=tmp) if "output_dir" in declared else config_class()
    except Exception:  # noqa: BLE001 -- a config that cannot be built bare is compared with its declared defaults
        return declared
    built = built.to_dict() if hasattr(built, "to_dict") else dataclasses.asdict(built)
    return {**declared, **{k: v for k, v in built.items() if k in declared}}


def _import_config_class(dotted: str | None) -> type | None:
    """The dataclass a training record names (`thinker4d.trainers.dift_config.DIFTConfig`), `None` when it is not one
    of thinker4d's, transformers' or trl's or cannot be imported."""
    if not dotted or "." not in dotted or not dotted.startswith(_CONFIG_MODULES):
        return None
    module, _, name = dotted.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    return cls if dataclasses.is_dataclass(cls) else None


def training_hyperparameters(training_args: Any, config_class: type | None = None) -> list[tuple[str, str]]:
    """`(name, value)` rows for the card from a TrainingArguments-like object, a dataclass, a dict or a JSON/YAML path.

    For a dataclass (TrainingArguments, a trl/thinker4d trainer config), or a dict with its `config_class`, only fields
    that differ from their default are listed, plus the learning rate, epochs/steps, batch size, accumulation and seed.
    A dict without a `config_class` is listed whole. Credential fields (`hub_token`, `*_api_key`, ...) and
    paths/logging settings are left out.
    """
    if training_args is None:
        return []
    if isinstance(training_args, (str, os.PathLike)):
        path = Path(training_args)
        if not path.is_file():
            raise FileNotFoundError(
                f"Training config {path} does not exist; pass a JSON or YAML file of trainer args."
            )
        if path.suffix in (".yaml", ".yml"):
            import yaml

            training_args = yaml.safe_load(path.read_text()) or {}
        else:
            training_args = json.loads(path.read_text())
    if dataclasses.is_dataclass(training_args) and not isinstance(training_args, type):
        config_class = type(training_args)
        if hasattr(training_args, "to_dict"):
            training_args = training_args.to_dict()
        else:
            training_args = {f.name: getattr(training_args, f.name, None) for f in dataclasses.fields(training_args)}
    if hasattr(training_args, "to_dict") and not isinstance(training_args, Mapping):
        items = training_args.to_dict()
    elif isinstance(training_args, Mapping):
        items = dict(training_args)
        if config_class is not None:
            defaults = {k: _plain(v) for k, v in _field_defaults(config_class).items()}
            items = {
                k: v
                for k, v in items.items()
                if k not in defaults or _plain(v) != defaults[k] or k in _ALWAYS_SHOWN_HPARAMS
            }
    else:
        raise TypeError(
            f"training_args must be a TrainingArguments-like dataclass, a dict or a JSON/YAML path, got "
            f"{type(training_args).__name__}."
        )
    items = scrub(items)
    rows = []
    for key in sorted(items):
        value = items[key]
        if _NOT_HPARAMS.match(key) or value is None or hasattr(value, "__dict__"):
            continue
        if hasattr(value, "value"):  # enums (lr_scheduler_type, ...)
            value = value.value
        rows.append((key, _fmt(value)))
    return rows


def load_training_args_bin(path: str | os.PathLike):
    """The trainer config transformers pickled as `training_args.bin` (unpickling runs code: only for your own
    checkpoints)."""
    import torch

    try:
        return torch.load(str(path), weights_only=False, map_location="cpu")
    except Exception as err:  # noqa: BLE001 -- any unpickling failure gets the same advice
        raise ValueError(
            f"{path} could not be loaded ({type(err).__name__}: {err}). Pass the trainer config as JSON or YAML with "
            "--training-args (training_hyperparameters), or delete the file."
        ) from None


def read_training_record(folder: str | os.PathLike, *, need_args: bool = True) -> dict:
    """What a checkpoint folder records about its training, for the card.

    Returns a dict with `stages` (the records of `training_stages.json`, oldest first, see
    `thinker4d.trainers.records`; else one record inferred from the class of a pickled `training_args.bin`; else
    `[]`), `trainer_state` (`trainer_state.json` as a dict, or `None`), `training_args` (the path of
    `training_args.json` / `trainer_config.json`, or the object unpickled from `training_args.bin`, or `None`) and
    `config_class` (the trainer config class, when known). With `need_args=False` a `training_args.bin` that cannot
    be loaded is left out (with a warning) instead of raising.
    """
    from ..trainers.records import TRAINER_STATE_JSON, read_stages, stage_of_args

    folder = Path(folder)
    stages = read_stages(folder)
    found = [folder / name for name in _TRAINING_ARGS_FILES if (folder / name).is_file()]
    training_args = found[0] if found else None
    if training_args is not None and training_args.suffix == ".bin":
        try:
            training_args = load_training_args_bin(training_args)
        except ValueError as err:
            if need_args:
                raise
            logger.warning("%s", err)
            training_args = None
    config_class = None
    if isinstance(training_args, Path) and stages:
        config_class = _import_config_class(stages[-1].get("config_class"))
    elif training_args is not None and not isinstance(training_args, Path):
        config_class = type(training_args)
        stage = stage_of_args(training_args)
        if not stages and stage:
            stages = [{"stage": stage, "trainer": None, "config_class": None, "started_from": None}]
    trainer_state = None
    if (folder / TRAINER_STATE_JSON).is_file():
        trainer_state = json.loads((folder / TRAINER_STATE_JSON).read_text())
    return {
        "stages": stages,
        "trainer_state": trainer_state,
        "training_args": training_args,
        "config_class": config_class,
    }


__all__ = ["load_training_args_bin", "read_training_record", "training_hyperparameters"]
