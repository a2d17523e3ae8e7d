"""Hugging Face Hub integration: auto-class registration, Hub-ready model folders (remote code + `custom_generate/`),
model and dataset cards, uploads.

Paper: https://huggingface.co/papers/2605.05997. What differs from the paper's release:

1. The paper's checkpoint loads with the stock Qwen class, whose `generate` never feeds latents back (it opens an
   imagery block, then decodes ordinary tokens). Folders written here carry `models/` as remote code (`auto_map` in
   config.json), so `AutoModelForImageTextToText.from_pretrained(repo, trust_remote_code=True).generate` decodes with
   latent feedback without thinker4d installed.
2. A `custom_generate/` folder ships the same decoding loop (`generation.py` is copied byte for byte from
   `thinker4d/models/generation.py`, never rewritten), so a stock-class model whose config carries the latent fields
   can use it through `generate(custom_generate=repo, trust_remote_code=True)`.

Example:

```python
>>> import thinker4d
>>> from thinker4d.hub import save_for_hub
>>> from thinker4d.tiny import build_tiny_model, build_tiny_processor
>>> processor = build_tiny_processor("qwen2_5_vl")
>>> model, processor = thinker4d.from_base(build_tiny_model("qwen2_5_vl", processor), processor)
>>> folder = save_for_hub(model, processor, "tiny-thinker4d", repo_id="me/tiny-thinker4d")  # doctest: +SKIP
```
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCardData, HfApi, ModelCardData
from transformers import AutoConfig
from transformers.dynamic_module_utils import get_relative_import_files

from .models import (
    Thinker4DQwen2_5_VLConfig,
    Thinker4DQwen2_5_VLForConditionalGeneration,
    Thinker4DQwen3VLConfig,
    Thinker4DQwen3VLForConditionalGeneration,
    check_latent_tokens,
    latent_token_ids,
    register_auto_classes,
)


logger = logging.getLogger(__name__)

PAPER_URL = "https://huggingface.co/papers/2605.05997"
MODEL_TAGS = ("thinker4d", "latent-reasoning", "custom_generate")
DATASET_TAGS = ("thinker4d", "latent-reasoning", "4d-reasoning", "video")
# Environment variables whose values must never reach a written file or a log line.
SECRET_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "GEMINI_API_KEY", "GOOGLE_API_KEY")
_SECRET_KEY = re.compile(r"(^|_)(token|secret|password|api_key|apikey|credentials?)$", re.IGNORECASE)
_MODEL_CLASSES = {
    Thinker4DQwen2_5_VLConfig.model_type: (Thinker4DQwen2_5_VLConfig, Thinker4DQwen2_5_VLForConditionalGeneration),
    Thinker4DQwen3VLConfig.model_type: (Thinker4DQwen3VLConfig, Thinker4DQwen3VLForConditionalGeneration),
}
_BACKBONE_OF = {Thinker4DQwen2_5_VLConfig.model_type: "qwen2_5_vl", Thinker4DQwen3VLConfig.model_type: "qwen3_vl"}
_BACKBONE_TITLE = {"qwen2_5_vl": "Qwen2.5-VL", "qwen3_vl": "Qwen3-VL"}
# Files of a training checkpoint that belong on the Hub (optimizer state, RNG state and pickles do not).
_CHECKPOINT_FILES = re.compile(
    r"^(config\.json|generation_config\.json|.*\.safetensors|model\.safetensors\.index\.json|tokenizer\.json|"
    r"tokenizer_config\.json|special_tokens_map\.json|added_tokens\.json|vocab\.json|merges\.txt|"
    r"chat_template\.(jinja|json)|processor_config\.json|preprocessor_config\.json|video_preprocessor_config\.json)$"
)
# Where a checkpoint records its trainer config, in order of preference (training_args.bin is transformers' pickle).
_TRAINING_ARGS_FILES = ("training_args.json", "trainer_config.json", "training_args.bin")
# Modules a recorded `config_class` may be imported from (to list only the fields that differ from their defaults).
_CONFIG_MODULES = ("thinker4d.", "transformers.", "trl.")
# What each recorded stage did, for the card.
STAGE_DESCRIPTIONS = {
    "DIFT": "Dynamic-Imagery Fine-Tuning, cross-entropy on text plus a cosine loss pulling each latent towards K pooled "
    "vision features of a landmark-overlay image",
    "text-CoT SFT": "supervised fine-tuning on the chain of thought with the imagery blocks left out (no latents)",
    "raw-QA SFT": "supervised fine-tuning on the answer alone",
    "4DRL": "GRPO with outcome rewards on rollouts that decode with latent imagery; policy gradient on text tokens only",
}
_ALWAYS_SHOWN_HPARAMS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "seed",
)
_NOT_HPARAMS = re.compile(r"^(output_dir|logging_dir|run_name|report_to|hub_.*|push_to_hub.*|resume_from_checkpoint)$")
DESIGN_COLUMNS = {
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


# ----------------------------------------------------------------------------------------------------------------------
# Auto classes and attention


def pick_attn_implementation(device: str | None = None) -> str:
    """`"flash_attention_2"` when flash-attn is installed and the model runs on a CUDA GPU, `"sdpa"` otherwise.

    Args:
        device (`str`, *optional*): the target device; by default a GPU is used when one is visible.

    Example:

    ```python
    >>> from thinker4d.hub import pick_attn_implementation
    >>> pick_attn_implementation("cpu")
    'sdpa'
    ```
    """
    import torch

    on_gpu = torch.cuda.is_available() if device is None else str(device).startswith("cuda")
    return "flash_attention_2" if on_gpu and importlib.util.find_spec("flash_attn") is not None else "sdpa"


# ----------------------------------------------------------------------------------------------------------------------
# Secrets


def _secret_values() -> dict[str, str]:
    return {name: os.environ[name] for name in SECRET_ENV_VARS if len(os.environ.get(name, "")) >= 8}


def scrub(value: Any) -> Any:
    """Drop credential-like keys (`hub_token`, `api_key`, ...) and secret values from a JSON-like object."""
    secrets = set(_secret_values().values())
    if isinstance(value, Mapping):
        return {k: scrub(v) for k, v in value.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if isinstance(value, str) and any(s in value for s in secrets):
        return "<redacted>"
    return value


def find_secrets(folder: str | os.PathLike, max_file_bytes: int = 256 * 2**20) -> list[tuple[str, str]]:
    """`(relative file, env var name)` for every file under `folder` containing the value of a secret env var."""
    secrets = {name: value.encode() for name, value in _secret_values().items()}
    hits = []
    if not secrets:
        return hits
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.stat().st_size > max_file_bytes:
            continue
        data = path.read_bytes()
        hits.extend((path.relative_to(root).as_posix(), name) for name, value in secrets.items() if value in data)
    return hits


def assert_no_secrets(folder: str | os.PathLike) -> None:
    """Raise when a file under `folder` contains the value of `HF_TOKEN`, `GEMINI_API_KEY`, ... (names only)."""
    hits = find_secrets(folder)
    if hits:
        listing = ", ".join(f"{f} ({name})" for f, name in hits)
        raise RuntimeError(
            f"Refusing to publish {folder}: these files contain the value of a secret environment variable: {listing}. "
            "Remove the secret from those files (or from the training config they were written from) and try again."
        )


# ----------------------------------------------------------------------------------------------------------------------
# Model folders


def _templates_dir() -> Path:
    return Path(__file__).parent / "templates"


def _card_templates_dir() -> Path:
    # The templates ship inside the package (templates/model_cards/); the repository's model_cards/ links there.
    for candidate in (_templates_dir() / "model_cards",):
        if (candidate / "model_card.md.jinja").is_file():
            return candidate
    raise FileNotFoundError(
        "Card templates not found: expected model_cards/model_card.md.jinja at the repository root or "
        "thinker4d/templates/model_cards/ in the installed package. Reinstall thinker4d from a full source checkout."
    )


def _jinja(directory: Path):
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def _version() -> str:
    from . import __version__

    return __version__


def _read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no config.json; pass a folder written by model.save_pretrained().")
    return json.loads(path.read_text())


def write_remote_code(folder: str | os.PathLike) -> list[str]:
    """Copy the `models/` files the checkpoint's classes need into `folder` and set `auto_map` in its config.json.

    Files are copied with transformers' own resolution of relative imports (`get_relative_import_files`), exactly as
    `save_pretrained` does for classes registered with `register_for_auto_class`. Returns the copied file names.
    """
    folder = Path(folder)
    config = _read_config(folder)
    model_type = config.get("model_type")
    if model_type not in _MODEL_CLASSES:
        raise ValueError(
            f"{folder}/config.json has model_type {model_type!r}, not a thinker4d model "
            f"({', '.join(_MODEL_CLASSES)}). Convert the model with thinker4d.from_base() and save it first."
        )
    auto_map = dict(config.get("auto_map") or {})
    copied = []
    for auto_name, cls in zip(("AutoConfig", "AutoModelForImageTextToText"), _MODEL_CLASSES[model_type]):
        source = Path(sys.modules[cls.__module__].__file__)
        for file in [str(source), *get_relative_import_files(source)]:
            shutil.copyfile(file, folder / Path(file).name)
            copied.append(Path(file).name)
        auto_map[auto_name] = f"{source.stem}.{cls.__name__}"
    config["auto_map"] = auto_map
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return sorted(set(copied))


def write_custom_generate(folder: str | os.PathLike, model_id: str = "<this repo>") -> Path:
    """Write `custom_generate/` (generate.py, generation.py, README.md) into `folder`; returns the new folder.

    `generation.py` is a byte-for-byte copy of `thinker4d/models/generation.py`, the single source of the decoding loop;
    `generate.py` imports it relatively (transformers copies sibling files of `custom_generate/generate.py`).
    """
    from .models import generation

    target = Path(folder) / "custom_generate"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_templates_dir() / "custom_generate.py", target / "generate.py")
    shutil.copyfile(generation.__file__, target / "generation.py")
    readme = _jinja(_templates_dir()).get_template("custom_generate_README.md.jinja")
    (target / "README.md").write_text(
        readme.render(model_id=model_id, custom_generate_id=model_id, thinker4d_version=_version())
    )
    return target


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple, dict)):
        return "`" + json.dumps(value, sort_keys=True) + "`"
    return str(value).replace("|", "\\|").replace("\n", " ")


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
    from .trainers.records import TRAINER_STATE_JSON, read_stages, stage_of_args

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
    from .datasets_io import is_hub_id

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
    backbone = _BACKBONE_OF.get(config.get("model_type"), "qwen2_5_vl")
    datasets = list(datasets or [])
    training_stages = list(training_stages or [])
    if base_model is None and training_stages:
        from .datasets_io import is_hub_id

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
    template = _jinja(_card_templates_dir()).get_template("model_card.md.jinja")
    text = template.render(
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
        thinker4d_version=_version(),
    )
    return re.sub(r"\n{3,}", "\n\n", text)


def finalize_model_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    custom_generate: bool = True,
    card: bool = True,
    **card_kwargs,
) -> Path:
    """Make a saved thinker4d folder Hub-ready: remote code + `auto_map`, `custom_generate/`, README.md, secret check.

    `card_kwargs` go to [`render_model_card`].
    """
    folder = Path(folder)
    write_remote_code(folder)
    if custom_generate:
        write_custom_generate(folder, model_id=repo_id)
    if card:
        (folder / "README.md").write_text(render_model_card(_read_config(folder), repo_id, **card_kwargs))
    assert_no_secrets(folder)
    return folder


def save_for_hub(
    model,
    processor,
    output_dir: str | os.PathLike,
    *,
    repo_id: str | None = None,
    custom_generate: bool = True,
    card: bool = True,
    **card_kwargs,
) -> Path:
    """Save a thinker4d model and its processor as a Hub-ready folder.

    The folder loads with `AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True)` (no thinker4d
    install needed; `generate` feeds latents back), carries `custom_generate/` for stock-class models, the processor
    (latent tokens and chat template) and a model card.

    Args:
        model ([`Thinker4DQwen2_5_VLForConditionalGeneration`] or [`Thinker4DQwen3VLForConditionalGeneration`]).
        processor: its processor (must contain the three latent tokens with the config's ids).
        output_dir (`str` or `os.PathLike`): where to write.
        repo_id (`str`, *optional*): Hub id used in the card and snippets; defaults to `output_dir`.
        custom_generate (`bool`, defaults to `True`), card (`bool`, defaults to `True`): what to add.
        card_kwargs: `base_model`, `datasets`, `training_args`, `eval_summaries`, `license`, `stages`,
            `training_stages`, `trainer_state` (see [`render_model_card`]). A model in memory records no stages:
            pass `training_stages=read_training_record(folder)["stages"]` for one saved by a thinker4d trainer.

    Returns:
        `Path` of the folder.
    """
    if getattr(model.config, "model_type", None) not in _MODEL_CLASSES:
        raise TypeError(
            f"save_for_hub needs a thinker4d model, got {type(model).__name__} (model_type "
            f"{getattr(model.config, 'model_type', None)!r}). Convert it first: "
            "`model, processor = thinker4d.from_base(model, processor)`."
        )
    latent_token_ids(model.config)
    check_latent_tokens(getattr(processor, "tokenizer", processor), model.config)
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    return finalize_model_folder(
        output_dir, repo_id or str(output_dir), custom_generate=custom_generate, card=card, **card_kwargs
    )


def stage_model_checkpoint(
    checkpoint: str | os.PathLike, output_dir: str | os.PathLike, repo_id: str, **kwargs
) -> Path:
    """Write the folder `thinker4d push` uploads for a training checkpoint: weights, config, processor files, remote
    code, `custom_generate/` and the card. Optimizer/RNG state, pickles and stale `.py` files are left out.

    The card is built from what the checkpoint records ([`read_training_record`]): the stages of
    `training_stages.json`, the steps and loss of `trainer_state.json`, and the hyper-parameters of `training_args`
    when given, else of `training_args.json` / `trainer_config.json` / `training_args.bin` in the checkpoint. Other
    keyword arguments go to [`finalize_model_folder`].
    """
    from transformers import AutoTokenizer

    checkpoint, output_dir = Path(checkpoint), Path(output_dir)
    config_dict = _read_config(checkpoint)
    if config_dict.get("model_type") not in _MODEL_CLASSES:
        raise ValueError(
            f"{checkpoint}/config.json has model_type {config_dict.get('model_type')!r}, not a thinker4d model "
            f"({', '.join(_MODEL_CLASSES)}). Convert the model with thinker4d.from_base() and save it first."
        )
    config = AutoConfig.from_pretrained(checkpoint)
    latent_token_ids(config)
    check_latent_tokens(AutoTokenizer.from_pretrained(checkpoint), config)
    files = sorted(p for p in checkpoint.iterdir() if p.is_file() and _CHECKPOINT_FILES.match(p.name))
    if not any(p.name.endswith(".safetensors") for p in files):
        raise FileNotFoundError(f"{checkpoint} has no *.safetensors weights; save the model with save_pretrained().")
    record = read_training_record(checkpoint, need_args=kwargs.get("training_args") is None)
    if kwargs.get("training_args") is None:
        kwargs["training_args"] = record["training_args"]
        kwargs.setdefault("config_class", record["config_class"])
    kwargs.setdefault("training_stages", record["stages"])
    kwargs.setdefault("trainer_state", record["trainer_state"])
    output_dir.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copyfile(path, output_dir / path.name)
    return finalize_model_folder(output_dir, repo_id, **kwargs)


# ----------------------------------------------------------------------------------------------------------------------
# Datasets


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
    """Write the folder `thinker4d push --dataset` uploads: parquet shards under `data/` and a dataset card.

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
            (`{step: description}`), `sources` (`[{"name", "license", "url"}]`).
        license: license id for the card metadata; by default the sources' license (their list when they differ,
            `unknown` when none is recorded).
    """
    import datasets as hf_datasets
    import pyarrow.parquet as pq

    from .data.writer import COMPLETE, WORK, sources_license

    source, output_dir = Path(source), Path(output_dir)
    if not source.is_dir():
        raise FileNotFoundError(f"Dataset folder {source} does not exist.")
    if (source / WORK).is_dir() and not (source / COMPLETE).is_file():
        raise RuntimeError(
            f"{source} is an unfinished thinker4d synthesis ({WORK}/ is there but no {COMPLETE} marker): finish it "
            f"with `thinker4d synthesize --output {source} --resume` and the same settings, then push again."
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

    split_counts, tasks, label_sources, schema = [], Counter(), Counter(), []
    for split in sorted(shards):
        n = 0
        for path in shards[split]:
            pf = pq.ParquetFile(path)
            n += pf.metadata.num_rows
            names = pf.schema_arrow.names
            if not schema:
                features = hf_datasets.Features.from_arrow_schema(pf.schema_arrow)
                schema = [(name, _feature_text(features[name]), DESIGN_COLUMNS.get(name, "")) for name in names]
            cols = [c for c in ("task", "label_source") if c in names]
            if cols:
                table = pf.read(columns=cols)
                if "task" in cols:
                    tasks.update(table.column("task").to_pylist())
                if "label_source" in cols:
                    label_sources.update(table.column("label_source").to_pylist())
        split_counts.append((split, n))
    total = sum(n for _, n in split_counts)
    if (source / COMPLETE).is_file():
        recorded = json.loads((source / COMPLETE).read_text()).get("rows")
        if isinstance(recorded, int) and recorded != total:
            raise RuntimeError(
                f"{source}/{COMPLETE} records {recorded} rows but its data files hold {total}: the folder was changed "
                f"after the synthesis finished. Rerun `thinker4d synthesize --output {source} --resume` (same settings) "
                "to rewrite data/, then push again."
            )

    if stats is None and (source / "synthesis_stats.json").is_file():
        stats = source / "synthesis_stats.json"
    if stats is not None and not isinstance(stats, Mapping):
        stats = json.loads(Path(stats).read_text())
    stats = scrub(dict(stats or {}))
    candidates, kept = stats.get("candidates"), stats.get("kept")
    rate = None
    if isinstance(candidates, int) and isinstance(kept, int) and candidates > 0:
        rate = f"{100 * (candidates - kept) / candidates:.1f}%"
    sources = [{"name": "", "license": "", "url": "", **s} for s in stats.get("sources") or []]
    if license is None:
        license = sources_license(sources) or "unknown"
    metadata = DatasetCardData(
        license=license,
        pretty_name=pretty_name or repo_id.split("/")[-1],
        task_categories=["video-text-to-text"],
        tags=list(DATASET_TAGS),
        size_categories=[_size_category(total)],
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"data/{split}-*"} for split in sorted(shards)],
            }
        ],
    )
    template = _jinja(_card_templates_dir()).get_template("dataset_card.md.jinja")
    text = template.render(
        metadata_yaml=metadata.to_yaml().strip(),
        pretty_name=pretty_name or repo_id.split("/")[-1],
        description=description,
        schema=schema,
        split_counts=split_counts,
        task_counts=sorted(tasks.items()),
        label_source_counts=sorted(label_sources.items()),
        pipeline=[(k, _fmt(v)) for k, v in sorted((stats.get("pipeline") or {}).items())],
        rejections=_rejection_rows(stats.get("rejected")),
        rejection_rate=rate,
        kept=kept,
        candidates=candidates,
        sources=sources,
        license=license if isinstance(license, str) else ", ".join(license),
        thinker4d_version=_version(),
    )
    (output_dir / "README.md").write_text(re.sub(r"\n{3,}", "\n\n", text))
    assert_no_secrets(output_dir)
    return output_dir


def _feature_text(feature) -> str:
    import datasets as hf_datasets

    if isinstance(feature, hf_datasets.Value):
        return feature.dtype
    if isinstance(feature, hf_datasets.Image):
        return "Image"
    if isinstance(feature, (hf_datasets.Sequence, hf_datasets.List, list)):
        inner = feature[0] if isinstance(feature, list) else feature.feature
        return f"Sequence({_feature_text(inner)})"
    if isinstance(feature, dict) and {"bytes", "path"} <= set(feature):
        return "Image"
    return type(feature).__name__


# ----------------------------------------------------------------------------------------------------------------------
# Upload


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    repo_type: str = "model",
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    api: HfApi | None = None,
):
    """Upload `folder` to the Hub with `HfApi.create_repo` (+ `create_branch` for a non-main revision) and
    `HfApi.upload_folder`. The token comes from huggingface_hub's usual sources (`HF_TOKEN`, `hf auth login`); it is
    never passed through or logged here. Returns the `CommitInfo`."""
    folder = Path(folder)
    assert_no_secrets(folder)
    api = api if api is not None else HfApi()
    api.create_repo(repo_id=repo_id, repo_type=repo_type, private=private, exist_ok=True)
    if revision and revision != "main":
        api.create_branch(repo_id=repo_id, repo_type=repo_type, branch=revision, exist_ok=True)
    logger.info("Uploading %s to %s (%s, revision %s)", folder, repo_id, repo_type, revision or "main")
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type=repo_type,
        revision=revision,
        commit_message=commit_message or f"Upload {repo_type} with thinker4d {_version()}",
    )


def staging_dir(dry_run: str | os.PathLike | None):
    """A context manager yielding the folder to stage into: `dry_run` (must be new or empty) or a temporary folder."""
    import contextlib

    if dry_run is None:
        return tempfile.TemporaryDirectory(prefix="thinker4d-push-")
    path = Path(dry_run)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"--dry-run folder {path} exists and is not empty; pass a new or empty folder.")
    path.mkdir(parents=True, exist_ok=True)
    return contextlib.nullcontext(str(path))


__all__ = [
    "MODEL_TAGS",
    "SECRET_ENV_VARS",
    "assert_no_secrets",
    "find_secrets",
    "finalize_model_folder",
    "load_eval_summary",
    "load_training_args_bin",
    "pick_attn_implementation",
    "push_folder",
    "read_training_record",
    "register_auto_classes",
    "render_model_card",
    "save_for_hub",
    "scrub",
    "stage_dataset",
    "stage_model_checkpoint",
    "training_hyperparameters",
    "usage_snippet",
    "write_custom_generate",
    "write_remote_code",
]
