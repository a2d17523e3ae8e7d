"""Latent-imagery models. Files here import only torch, transformers and each other: they ship flat as Hub remote code.

Importing this package registers the thinker4d configs and models with transformers' auto classes.
"""

from .configuration_thinker4d import LATENT_TOKENS, Thinker4DQwen2_5_VLConfig, Thinker4DQwen3VLConfig
from .conversion import SUPPORTED_BACKBONES, THINKER4D_CLASSES, add_latent_tokens, check_latent_tokens, from_base
from .generation import (
    ImageryLimitError,
    LatentGenerateOutput,
    apply_sampling_masks,
    latent_generate,
    latent_sample,
    latent_token_ids,
)
from .imagery import place_latents, pool_imagery
from .modeling_thinker4d_base import Thinker4DCausalLMOutputWithPast
from .modeling_thinker4d_qwen2_5_vl import Thinker4DQwen2_5_VLForConditionalGeneration
from .modeling_thinker4d_qwen3_vl import Thinker4DQwen3VLForConditionalGeneration


def register_auto_classes() -> None:
    """Register the thinker4d configs and models with transformers' auto classes (idempotent; done on import).

    Also marks them for remote code (`register_for_auto_class`), so every `save_pretrained` / `push_to_hub` of a
    thinker4d model writes `auto_map` into config.json and copies the `models/` files it needs beside the weights.
    """
    from transformers import AutoConfig, AutoModelForImageTextToText

    for model_cls in THINKER4D_CLASSES:
        config_cls = model_cls.config_class
        AutoConfig.register(config_cls.model_type, config_cls, exist_ok=True)
        AutoModelForImageTextToText.register(config_cls, model_cls, exist_ok=True)
        config_cls.register_for_auto_class("AutoConfig")
        model_cls.register_for_auto_class("AutoModelForImageTextToText")


register_auto_classes()


__all__ = [
    "LATENT_TOKENS",
    "SUPPORTED_BACKBONES",
    "THINKER4D_CLASSES",
    "ImageryLimitError",
    "LatentGenerateOutput",
    "Thinker4DCausalLMOutputWithPast",
    "Thinker4DQwen2_5_VLConfig",
    "Thinker4DQwen2_5_VLForConditionalGeneration",
    "Thinker4DQwen3VLConfig",
    "Thinker4DQwen3VLForConditionalGeneration",
    "add_latent_tokens",
    "apply_sampling_masks",
    "check_latent_tokens",
    "from_base",
    "latent_generate",
    "latent_sample",
    "latent_token_ids",
    "place_latents",
    "pool_imagery",
    "register_auto_classes",
]
