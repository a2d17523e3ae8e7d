"""What makes a saved thinker4d folder load without thinker4d installed: the `models/` files it needs as remote code
(`auto_map` in config.json) and the `custom_generate/` folder for stock-class models."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from transformers.dynamic_module_utils import get_relative_import_files

from ..models.auto import MODEL_CLASSES
from ..templating import _jinja, _templates_dir, _version


def _read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no config.json; pass a folder written by model.save_pretrained().")
    return json.loads(path.read_text())


def _check_model_type(folder: Path, config: dict) -> None:
    model_type = config.get("model_type")
    if model_type not in MODEL_CLASSES:
        raise ValueError(
            f"{folder}/config.json has model_type {model_type!r}, not a thinker4d model "
            f"({', '.join(MODEL_CLASSES)}). Convert the model with thinker4d.from_base() and save it first."
        )


def write_remote_code(folder: str | os.PathLike) -> list[str]:
    """Copy the `models/` files the checkpoint's classes need into `folder` and set `auto_map` in its config.json.

    Files are copied with transformers' own resolution of relative imports (`get_relative_import_files`), exactly as
    `save_pretrained` does for classes registered with `register_for_auto_class`: the configuration and modeling files
    and what they import, never `models/auto.py` (registration with the local auto classes is not remote code).
    Returns the copied file names.
    """
    folder = Path(folder)
    config = _read_config(folder)
    _check_model_type(folder, config)
    auto_map = dict(config.get("auto_map") or {})
    copied = []
    for auto_name, cls in zip(("AutoConfig", "AutoModelForImageTextToText"), MODEL_CLASSES[config["model_type"]]):
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
    from ..models import generation

    target = Path(folder) / "custom_generate"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_templates_dir() / "custom_generate.py", target / "generate.py")
    shutil.copyfile(generation.__file__, target / "generation.py")
    readme = _jinja(_templates_dir()).get_template("custom_generate_README.md.jinja")
    (target / "README.md").write_text(
        readme.render(model_id=model_id, custom_generate_id=model_id, thinker4d_version=_version())
    )
    return target


__all__ = ["write_remote_code", "write_custom_generate"]
