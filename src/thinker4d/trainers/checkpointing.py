"""Resuming trainer checkpoints of thinker4d models.

`resolve_resume_checkpoint` turns the `--resume_from_checkpoint` value of `thinker4d dift` / `thinker4d grpo` into a
complete `checkpoint-N` folder. `Trainer._save_checkpoint` writes the weights, then the optimizer, scheduler, scaler
and RNG states, and `trainer_state.json` last, so a run killed while writing a checkpoint leaves a folder that the
stock resume refuses ("Can't find a valid checkpoint") or, given `True`, picks anyway because it is the newest.
Incomplete folders are skipped with a warning and the newest complete one is used.

Qwen-VL checkpoints are written in the legacy key layout (`visual.*`, `model.layers.*`) by transformers' weight
conversions. The stock `Trainer._load_from_checkpoint` loads them with a raw `load_state_dict` that matches none of the
keys and only warns, so a resumed run would silently restart from the initial weights. Both thinker4d trainers load
through `from_pretrained`'s key mapping instead.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from ..errors import UserFileNotFoundError, UserValueError
from ..models import THINKER4D_CLASSES


logger = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "adapter_model.safetensors", "adapter_model.bin")
_WEIGHTS_INDEX = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def checkpoint_problem(folder: str | os.PathLike) -> str | None:
    """Why `folder` is not a complete Trainer checkpoint, or `None` when it is one.

    Complete means: `trainer_state.json` (written last) holds valid JSON with a `global_step`, model weights are there
    (a weights file, every shard of a sharded index, an adapter, or FSDP / DeepSpeed state), and so is the optimizer
    state (`optimizer.pt`; DeepSpeed keeps it in `global_step*/`).
    """
    folder = Path(folder)
    names = set(os.listdir(folder)) if folder.is_dir() else set()
    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        if not isinstance(state, dict) or "global_step" not in state:
            return "trainer_state.json has no global_step"
    except FileNotFoundError:
        return "no trainer_state.json (the Trainer writes it last)"
    except (ValueError, OSError) as e:
        return f"trainer_state.json cannot be read ({type(e).__name__}: {e})"
    deepspeed = any(n.startswith("global_step") and (folder / n).is_dir() for n in names)
    fsdp = any(n.startswith("pytorch_model_fsdp") for n in names)
    weights = deepspeed or fsdp or any(n in names for n in _WEIGHTS)
    for index in _WEIGHTS_INDEX:
        if index in names:
            try:
                shards = set(json.loads((folder / index).read_text(encoding="utf-8"))["weight_map"].values())
            except (ValueError, KeyError, OSError) as e:
                return f"{index} cannot be read ({type(e).__name__}: {e})"
            missing = sorted(shards - names)
            if missing:
                return f"weight shards {missing} are missing"
            weights = True
    if not weights:
        return "no model weights (model.safetensors)"
    if not deepspeed and not any(n.startswith("optimizer") for n in names):
        return "no optimizer state (optimizer.pt)"
    return None


def resolve_resume_checkpoint(value: str | bool | None, output_dir: str | None = None) -> str | None:
    """The complete checkpoint folder to resume from, for `TrainingArguments.resume_from_checkpoint`.

    Args:
        value (`str` or `bool`, *optional*):
            `None` / `False` / `"false"`: start from step 0. `True` / `"true"`: the newest complete checkpoint of
            `output_dir`. A `checkpoint-N` folder: that checkpoint, which must be complete. Any other folder: its
            newest complete `checkpoint-N`. Incomplete checkpoints are skipped with a warning.
        output_dir (`str`, *optional*):
            The run's output folder, searched for `True`.

    Raises:
        UserError: the folder does not exist, holds no complete checkpoint, or is an incomplete checkpoint itself.

    Example:

    ```python
    >>> resolve_resume_checkpoint("true", "out/dift")  # doctest: +SKIP
    'out/dift/checkpoint-200'
    ```
    """
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in ("", "false")):
        return None
    flag = "--resume_from_checkpoint"
    if value is True or (isinstance(value, str) and value.strip().lower() == "true"):
        if not output_dir:
            raise UserValueError(f"{flag} true needs --output_dir, the folder holding the checkpoint-N folders.")
        folder, flag = Path(output_dir), f"{flag} true (--output_dir {output_dir})"
    else:
        folder = Path(value).expanduser()
    if not folder.is_dir():
        raise UserFileNotFoundError(
            f"{flag}: {folder} is not a folder; pass a checkpoint-N folder or the output folder holding them."
        )
    # A checkpoint-N folder, or a folder with a trainer state and no checkpoint-N inside it (a run's output folder
    # also holds the final trainer_state.json that `save_model` writes; it is searched, not resumed from).
    has_checkpoints = any(_CHECKPOINT.match(name) and (folder / name).is_dir() for name in os.listdir(folder))
    own = _CHECKPOINT.match(folder.name) or ((folder / "trainer_state.json").is_file() and not has_checkpoints)
    if own:
        problem = checkpoint_problem(folder)
        if problem is None:
            return str(folder)
        earlier = _complete_checkpoints(folder.parent, below=_step(folder))
        hint = (
            f"pass {earlier} (the newest complete one)"
            if earlier
            else f"pass {folder.parent} to take the newest complete one"
        )
        raise UserValueError(f"{flag}: {folder} is an incomplete checkpoint ({problem}); {hint}, or drop the flag.")
    found = _complete_checkpoints(folder)
    if found is None:
        raise UserValueError(
            f"{flag}: {folder} holds no complete checkpoint-N folder; drop the flag to start from step 0."
        )
    return found


def _step(folder: Path) -> int:
    m = _CHECKPOINT.match(folder.name)
    return int(m.group(1)) if m else 1 << 62


def _complete_checkpoints(run_dir: Path, below: int | None = None) -> str | None:
    """The newest complete `checkpoint-N` of `run_dir` (with `N < below`); warns about each incomplete one it skips."""
    steps = []
    for name in os.listdir(run_dir) if run_dir.is_dir() else []:
        m = _CHECKPOINT.match(name)
        if m and (run_dir / name).is_dir() and (below is None or int(m.group(1)) < below):
            steps.append((int(m.group(1)), run_dir / name))
    for _, folder in sorted(steps, reverse=True):
        problem = checkpoint_problem(folder)
        if problem is None:
            return str(folder)
        if below is None:
            logger.warning(
                "Skipping incomplete checkpoint %s (%s); a run was stopped while writing it.", folder, problem
            )
    return None


def load_thinker4d_checkpoint(trainer, resume_from_checkpoint: str, model=None) -> bool:
    """Load the weights of `resume_from_checkpoint` into the trainer's model. Returns False when the stock loader
    should handle it (not a thinker4d model, FSDP / DeepSpeed, or no safetensors file)."""
    from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

    target = trainer.accelerator.unwrap_model(model if model is not None else trainer.model)
    files = [os.path.join(resume_from_checkpoint, n) for n in (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME)]
    if (
        not isinstance(target, THINKER4D_CLASSES)
        or trainer.is_fsdp_enabled
        or trainer.is_deepspeed_enabled
        or not any(os.path.isfile(f) for f in files)
    ):
        return False
    loaded = type(target).from_pretrained(resume_from_checkpoint, dtype=target.dtype)
    target.load_state_dict(loaded.state_dict(), strict=True)
    del loaded
    return True
