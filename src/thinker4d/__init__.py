"""thinker4d: vision-language models that think with 4D latent imagery (4DThinker, arXiv 2605.05997).

Paper: https://huggingface.co/papers/2605.05997

`import thinker4d` is light (no torch, no transformers), so the `thinker4d` command starts at once. The names below
load on first use; the first model name used (or `import thinker4d.models`) registers the thinker4d classes with
`AutoConfig` / `AutoModelForImageTextToText`.
"""

__version__ = "0.1.0.dev0"

_LAZY = {
    "LatentGenerateOutput": "thinker4d.models",
    "Thinker4DQwen2_5_VLConfig": "thinker4d.models",
    "Thinker4DQwen2_5_VLForConditionalGeneration": "thinker4d.models",
    "Thinker4DQwen3VLConfig": "thinker4d.models",
    "Thinker4DQwen3VLForConditionalGeneration": "thinker4d.models",
    "from_base": "thinker4d.models",
    "latent_generate": "thinker4d.models",
    "latent_sample": "thinker4d.models",
    "register_auto_classes": "thinker4d.models",
    "pick_attn_implementation": "thinker4d.models",
    "save_for_hub": "thinker4d.hub",
    "DIFTConfig": "thinker4d.trainers",
    "DIFTTrainer": "thinker4d.trainers",
    "LatentGRPOConfig": "thinker4d.trainers",
    "LatentGRPOTrainer": "thinker4d.trainers",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'thinker4d' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", *_LAZY]
