"""Pure tensor functions for latent imagery: pooling an overlay image's visual tokens into K imagery targets, and
placing vectors at the latent slots of a sequence.

Paper: https://huggingface.co/papers/2605.05997 (latent visual token representation, partitioned mean pooling).
What differs from the paper's code:

1. Pooling is a standalone function of (features, grid) instead of code inside a forked forward, so DIFT can cache the
   targets once per dataset and RL / evaluation never need it.
2. Besides the paper's "raster" pooling (K contiguous chunks of the raster-ordered merged tokens, roughly horizontal
   strips) there is a "grid" mode that keeps the 2-D layout (e.g. 2x2 cells for K = 4), because raster strips average
   away the horizontal position of the highlighted object (docs/paper_differences.md, section 4).
3. An image with fewer merged tokens than K is an error, not a silent truncation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _grid_shape(k: int, h: int, w: int) -> tuple[int, int]:
    """The (rows, cols) factorisation of K whose cell aspect is closest to the image's."""
    best, best_err = (1, k), float("inf")
    for rows in range(1, k + 1):
        if k % rows:
            continue
        cols = k // rows
        if rows > h or cols > w:
            continue
        err = abs(math.log((h / rows) / (w / cols)))
        if err < best_err:
            best, best_err = (rows, cols), err
    return best


def pool_imagery(
    features: torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...],
    grid_thw: torch.Tensor,
    latent_size: int,
    spatial_merge_size: int = 2,
    mode: str = "raster",
) -> torch.Tensor:
    """Pool each image's merged visual tokens into `latent_size` vectors.

    Args:
        features (`torch.Tensor` of shape `(total_tokens, hidden)`, or a list of per-image tensors):
            Visual tokens after the vision tower and merger (already in the LLM input-embedding space), raster order.
        grid_thw (`torch.Tensor` of shape `(num_images, 3)`):
            The (t, h, w) patch grid of each image, as returned by the Qwen image processor.
        latent_size (`int`): K.
        spatial_merge_size (`int`, *optional*, defaults to 2): the merger's spatial factor (tokens = t*h*w/m^2).
        mode (`str`, *optional*, defaults to `"raster"`): `"raster"` or `"grid"`.

    Returns:
        `torch.Tensor` of shape `(num_images, latent_size, hidden)`.

    Example:

    ```python
    >>> import torch
    >>> from thinker4d.models.imagery import pool_imagery
    >>> feats = torch.arange(16.0).repeat(3, 1).T          # 16 merged tokens (a 4x4 grid), hidden 3
    >>> pool_imagery(feats, torch.tensor([[1, 8, 8]]), latent_size=4)[0, :, 0]
    tensor([ 1.5000,  5.5000,  9.5000, 13.5000])
    ```
    """
    if latent_size < 1:
        raise ValueError(f"latent_size must be >= 1, got {latent_size}.")
    if mode not in ("raster", "grid"):
        raise ValueError(f"Unknown imagery pooling mode {mode!r}; use 'raster' or 'grid'.")
    grid_thw = torch.as_tensor(grid_thw).reshape(-1, 3)
    m2 = spatial_merge_size**2
    sizes = (grid_thw.prod(-1) // m2).tolist()
    if isinstance(features, torch.Tensor):
        if features.shape[0] != sum(sizes):
            raise ValueError(
                f"features have {features.shape[0]} tokens but grid_thw describes {sum(sizes)} merged tokens; pass the "
                "vision tower's merged output for exactly these images."
            )
        per_image = torch.split(features, sizes)
    else:
        per_image = list(features)
        if len(per_image) != len(sizes):
            raise ValueError(f"Got {len(per_image)} feature tensors for {len(sizes)} images.")
    out = []
    for idx, (feat, (t, h, w)) in enumerate(zip(per_image, grid_thw.tolist())):
        n = feat.shape[0]
        if n < latent_size:
            raise ValueError(
                f"Imagery image {idx} has only {n} visual tokens, fewer than latent_size={latent_size}. Use larger "
                "overlay images (raise the processor's min_pixels) or a smaller latent_size."
            )
        if mode == "raster":
            chunk = n // latent_size
            out.append(feat[: chunk * latent_size].reshape(latent_size, chunk, -1).mean(1))
        else:
            hh, ww = h // spatial_merge_size, w // spatial_merge_size
            rows, cols = _grid_shape(latent_size, hh, ww)
            grid = feat.reshape(t, hh, ww, -1).permute(0, 3, 1, 2).float()  # (t, hidden, hh, ww)
            pooled = F.adaptive_avg_pool2d(grid, (rows, cols)).mean(0)  # (hidden, rows, cols)
            out.append(pooled.flatten(1).T.to(feat.dtype))
    return torch.stack(out)


def latent_slot_mask(input_ids: torch.Tensor, latent_pad_id: int) -> torch.Tensor:
    """Boolean mask of the latent slots (`<|latent_pad|>` positions) in `input_ids`."""
    return input_ids == latent_pad_id


def place_latents(
    inputs_embeds: torch.Tensor, input_ids: torch.Tensor, latent_embeds: torch.Tensor, latent_pad_id: int
) -> torch.Tensor:
    """Return `inputs_embeds` with `latent_embeds` written at the latent slots, in row-major order (scale them with
    [`~generation.scale_latents`] first when the config sets `latent_norm`).

    Args:
        inputs_embeds (`torch.Tensor` of shape `(batch, seq, hidden)`): token embeddings.
        input_ids (`torch.LongTensor` of shape `(batch, seq)`): ids; slots are where `input_ids == latent_pad_id`.
        latent_embeds (`torch.Tensor` of shape `(num_slots, hidden)` or `(num_blocks, K, hidden)`):
            one vector per slot, ordered by row then position.
        latent_pad_id (`int`): id of `<|latent_pad|>`.
    """
    mask = latent_slot_mask(input_ids, latent_pad_id)
    n_slots = int(mask.sum())
    vectors = latent_embeds.reshape(-1, inputs_embeds.shape[-1])
    if vectors.shape[0] != n_slots:
        raise ValueError(
            f"The sequence has {n_slots} latent slots (<|latent_pad|> tokens) but {vectors.shape[0]} latent vectors "
            "were given. Each <imagery> block needs exactly K vectors (one overlay image pooled to K targets, or the K "
            "latents recorded at rollout)."
        )
    if n_slots == 0:
        return inputs_embeds
    return inputs_embeds.masked_scatter(mask.unsqueeze(-1), vectors.to(inputs_embeds.dtype))
