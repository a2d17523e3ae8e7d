"""thinker4d: vision-language models that think with 4D latent imagery (4DThinker, arXiv 2605.05997).

Paper: https://huggingface.co/papers/2605.05997
"""

__version__ = "0.1.0.dev0"

from .hub import register_auto_classes
from .models import (
    LatentGenerateOutput,
    Thinker4DQwen2_5_VLConfig,
    Thinker4DQwen2_5_VLForConditionalGeneration,
    Thinker4DQwen3VLConfig,
    Thinker4DQwen3VLForConditionalGeneration,
    from_base,
    latent_sample,
)


register_auto_classes()

__all__ = [
    "LatentGenerateOutput",
    "Thinker4DQwen2_5_VLConfig",
    "Thinker4DQwen2_5_VLForConditionalGeneration",
    "Thinker4DQwen3VLConfig",
    "Thinker4DQwen3VLForConditionalGeneration",
    "__version__",
    "from_base",
    "latent_sample",
]
