"""thinker4d: vision-language models that think with 4D latent imagery (4DThinker, arXiv 2605.05997).

Paper: https://huggingface.co/papers/2605.05997
"""

__version__ = "0.1.0.dev0"

from .models import (
    LatentGenerateOutput,
    Thinker4DQwen2_5_VLConfig,
    Thinker4DQwen2_5_VLForConditionalGeneration,
    Thinker4DQwen3VLConfig,
    Thinker4DQwen3VLForConditionalGeneration,
    from_base,
    latent_generate,
    latent_sample,
    pick_attn_implementation,
    register_auto_classes,
)


register_auto_classes()

# Trainers import trl and the Hub helpers import huggingface_hub's card and upload code; load them on first use so
# `import thinker4d` stays quick.
_LAZY = {
    "DIFTConfig": "thinker4d.trainers",
    "DIFTTrainer": "thinker4d.trainers",
    "LatentGRPOConfig": "thinker4d.trainers",
    "LatentGRPOTrainer": "thinker4d.trainers",
    "save_for_hub": "thinker4d.hub",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'thinker4d' has no attribute {name!r}")


__all__ = [
    "DIFTConfig",
    "DIFTTrainer",
    "LatentGRPOConfig",
    "LatentGRPOTrainer",
    "LatentGenerateOutput",
    "Thinker4DQwen2_5_VLConfig",
    "Thinker4DQwen2_5_VLForConditionalGeneration",
    "Thinker4DQwen3VLConfig",
    "Thinker4DQwen3VLForConditionalGeneration",
    "__version__",
    "from_base",
    "latent_generate",
    "latent_sample",
    "pick_attn_implementation",
    "save_for_hub",
]
