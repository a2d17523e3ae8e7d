"""Configs of the thinker4d latent-imagery models: the stock Qwen configs plus the latent fields, nothing else.

Paper: https://huggingface.co/papers/2605.05997. The latent fields travel in config.json so a checkpoint carries its own
token ids and imagery size K; nothing in thinker4d hard-codes an id (the paper's decoding loop hard-codes 151665-151667,
docs/paper_differences.md, section 2).
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import Qwen2_5_VLConfig, Qwen3VLConfig


IMAGERY_POOLING_MODES = ("raster", "grid")
LATENT_START_TOKEN = "<|latent_start|>"
LATENT_END_TOKEN = "<|latent_end|>"
LATENT_PAD_TOKEN = "<|latent_pad|>"
LATENT_TOKENS = (LATENT_START_TOKEN, LATENT_PAD_TOKEN, LATENT_END_TOKEN)


def _validate_latent_fields(config) -> None:
    if not isinstance(config.latent_size, int) or config.latent_size < 1:
        raise ValueError(
            f"latent_size (K, the number of latent slots per imagery block) must be an integer >= 1, got "
            f"{config.latent_size!r}. The paper uses K = 4."
        )
    if config.imagery_pooling not in IMAGERY_POOLING_MODES:
        raise ValueError(
            f"imagery_pooling must be one of {IMAGERY_POOLING_MODES} ('raster' = K contiguous raster chunks as in the "
            f"paper, 'grid' = a 2-D grid of K cells), got {config.imagery_pooling!r}."
        )
    norm = config.latent_norm
    if norm is not None and (isinstance(norm, bool) or not isinstance(norm, (int, float)) or not norm > 0):
        raise ValueError(
            f"latent_norm must be a positive number (the L2 norm every vector placed at a latent slot is scaled to) or "
            f"None (vectors are placed as they are, as in the paper), got {norm!r}."
        )
    ids = [config.latent_start_id, config.latent_end_id, config.latent_pad_id]
    given = [i for i in ids if i is not None]
    if given and len(set(given)) != len(given):
        raise ValueError(f"latent_start_id, latent_end_id and latent_pad_id must differ, got {ids}.")


@strict
class Thinker4DQwen2_5_VLConfig(Qwen2_5_VLConfig):
    r"""Configuration of [`Thinker4DQwen2_5_VLForConditionalGeneration`]: a [`Qwen2_5_VLConfig`] plus the latent fields.

    > Parameters that control latent imagery

    latent_size (`int`, *optional*, defaults to 4): K, the number of latent slots per imagery block.
    latent_start_id / latent_end_id / latent_pad_id (`int`, *optional*): ids of the three latent tokens.
    imagery_pooling (`str`, *optional*, defaults to `"raster"`): `"raster"` (paper) or `"grid"`.
    latent_norm (`float`, *optional*): when set, every vector placed at a latent slot (the pooled imagery targets in
        training, the fed-back hidden states in decoding, the rollout's latents in RL) is scaled to this L2 norm, so
        training and inference put vectors of one scale at the slots. `None` (default) places them as they are, as
        the paper does. `DIFTConfig(latent_norm="embedding")` sets it to the mean norm of the input-embedding rows.

    Example:

    ```python
    >>> from thinker4d import Thinker4DQwen2_5_VLConfig
    >>> Thinker4DQwen2_5_VLConfig(latent_size=4).model_type
    'thinker4d_qwen2_5_vl'
    ```
    """

    model_type = "thinker4d_qwen2_5_vl"

    latent_size: int = 4
    latent_start_id: int | None = None
    latent_end_id: int | None = None
    latent_pad_id: int | None = None
    imagery_pooling: str = "raster"
    latent_norm: float | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        _validate_latent_fields(self)


@strict
class Thinker4DQwen3VLConfig(Qwen3VLConfig):
    r"""Configuration of [`Thinker4DQwen3VLForConditionalGeneration`]: a [`Qwen3VLConfig`] plus the latent fields.

    > Parameters that control latent imagery

    latent_size (`int`, *optional*, defaults to 4): K, the number of latent slots per imagery block.
    latent_start_id / latent_end_id / latent_pad_id (`int`, *optional*): ids of the three latent tokens.
    imagery_pooling (`str`, *optional*, defaults to `"raster"`): `"raster"` (paper) or `"grid"`.
    latent_norm (`float`, *optional*): when set, every vector placed at a latent slot (the pooled imagery targets in
        training, the fed-back hidden states in decoding, the rollout's latents in RL) is scaled to this L2 norm, so
        training and inference put vectors of one scale at the slots. `None` (default) places them as they are, as
        the paper does. `DIFTConfig(latent_norm="embedding")` sets it to the mean norm of the input-embedding rows.

    Example:

    ```python
    >>> from thinker4d import Thinker4DQwen3VLConfig
    >>> Thinker4DQwen3VLConfig(latent_size=2).latent_size
    2
    ```
    """

    model_type = "thinker4d_qwen3_vl"

    latent_size: int = 4
    latent_start_id: int | None = None
    latent_end_id: int | None = None
    latent_pad_id: int | None = None
    imagery_pooling: str = "raster"
    latent_norm: float | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        _validate_latent_fields(self)


__all__ = ["Thinker4DQwen2_5_VLConfig", "Thinker4DQwen3VLConfig", "LATENT_TOKENS"]
