"""Latent-imagery models. Files here import only torch, transformers and each other: they ship flat as Hub remote code.

Importing this package registers the thinker4d configs and models with transformers' auto classes.
"""

from .auto import pick_attn_implementation, register_auto_classes
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


# the auto classes resolve thinker4d's model_types as soon as any model name is used
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
    "pick_attn_implementation",
    "place_latents",
    "pool_imagery",
    "register_auto_classes",
]
