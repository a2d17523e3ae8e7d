"""Resuming trainer checkpoints of thinker4d models.

Qwen-VL checkpoints are written in the legacy key layout (`visual.*`, `model.layers.*`) by transformers' weight
conversions. The stock `Trainer._load_from_checkpoint` loads them with a raw `load_state_dict` that matches none of the
keys and only warns, so a resumed run would silently restart from the initial weights. Both thinker4d trainers load
through `from_pretrained`'s key mapping instead.
"""

from __future__ import annotations

import os

from ..models import THINKER4D_CLASSES


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
