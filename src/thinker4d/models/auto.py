"""Auto-class registration and the attention-implementation choice.

Importing `thinker4d.models` (also the first use of a model name of `thinker4d`) calls [`register_auto_classes`],
so `AutoConfig` / `AutoModelForImageTextToText` resolve the thinker4d `model_type`s without the Hub module. This file is not remote code: `save_pretrained` copies only the files
the config and model classes import, and none of them imports this one.
"""

from __future__ import annotations

import importlib.util

from transformers import AutoConfig, AutoModelForImageTextToText

from .conversion import SUPPORTED_BACKBONES


# thinker4d model_type -> (config class, model class)
MODEL_CLASSES = {
    config_cls.model_type: (config_cls, model_cls) for config_cls, model_cls in SUPPORTED_BACKBONES.values()
}
# thinker4d model_type -> the stock model_type it subclasses
BACKBONE_OF = {config_cls.model_type: backbone for backbone, (config_cls, _) in SUPPORTED_BACKBONES.items()}


def register_auto_classes() -> None:
    """Register the thinker4d configs and models with transformers' auto classes (idempotent).

    Also marks them for remote code (`register_for_auto_class`), so every `save_pretrained` / `push_to_hub` of a
    thinker4d model writes `auto_map` into config.json and copies the `models/` files it needs beside the weights.
    """
    for config_cls, model_cls in MODEL_CLASSES.values():
        AutoConfig.register(config_cls.model_type, config_cls, exist_ok=True)
        AutoModelForImageTextToText.register(config_cls, model_cls, exist_ok=True)
        config_cls.register_for_auto_class("AutoConfig")
        model_cls.register_for_auto_class("AutoModelForImageTextToText")


def pick_attn_implementation(device: str | None = None) -> str:
    """`"flash_attention_2"` when flash-attn is installed and the model runs on a CUDA GPU, `"sdpa"` otherwise.

    Args:
        device (`str`, *optional*): the target device; by default a GPU is used when one is visible.

    Example:

    ```python
    >>> from thinker4d import pick_attn_implementation
    >>> pick_attn_implementation("cpu")
    'sdpa'
    ```
    """
    import torch

    on_gpu = torch.cuda.is_available() if device is None else str(device).startswith("cuda")
    return "flash_attention_2" if on_gpu and importlib.util.find_spec("flash_attn") is not None else "sdpa"


__all__ = ["BACKBONE_OF", "MODEL_CLASSES", "pick_attn_implementation", "register_auto_classes"]
