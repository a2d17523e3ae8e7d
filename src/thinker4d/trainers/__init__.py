"""Trainers: DIFT (supervised, with latent imagery) and 4DRL (GRPO). Imports are lazy so that `import thinker4d`
stays light and each trainer module can be used on its own."""

from __future__ import annotations

import importlib


_LAZY = {
    "DIFTConfig": ".dift_config",
    "DIFT_MODES": ".dift_config",
    "DIFTTrainer": ".dift_trainer",
    "cache_imagery_targets": ".dift_data",
    "with_latent_token_rows": ".dift_trainer",
    "DIFTDataCollator": ".dift_collator",
    "InvalidRowError": ".dift_collator",
    "validate_dift_row": ".dift_collator",
    "LatentGRPOConfig": ".latent_grpo_config",
    "LatentGRPOTrainer": ".latent_grpo_trainer",
    "latent_per_token_logps": ".latent_logps",
    "sampling_logps": ".latent_logps",
    "check_rl_row": ".rl_rows",
    "TrainingProgressCallback": ".progress",
    "use_training_progress": ".progress",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = list(_LAZY)
