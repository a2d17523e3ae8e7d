"""Qwen2.5-VL with latent imagery: `Thinker4DQwen2_5_VLForConditionalGeneration`.

Paper: https://huggingface.co/papers/2605.05997. The paper's model is Qwen2.5-VL-3B run through a forked transformers;
here it is a subclass of the stock class whose forward only adds latent arguments (see `modeling_thinker4d_base.py`
for the list of changes).
"""

from __future__ import annotations

import torch
from transformers import Qwen2_5_VLForConditionalGeneration
from transformers.cache_utils import Cache
from transformers.utils.deprecation import deprecate_kwarg

from .configuration_thinker4d import Thinker4DQwen2_5_VLConfig
from .modeling_thinker4d_base import (
    Thinker4DCausalLMOutputWithPast,
    Thinker4DLatentMixin,
    register_weight_conversions,
)


class Thinker4DQwen2_5_VLForConditionalGeneration(Thinker4DLatentMixin, Qwen2_5_VLForConditionalGeneration):
    r"""Qwen2.5-VL whose reasoning can open latent imagery blocks `<|latent_start|> z1..zK <|latent_end|>`.

    `generate()` feeds the model's own last post-norm hidden state back as the next input embedding inside a block,
    per row of the batch, with a KV cache. `forward()` accepts vectors for the latent slots (`latent_embeds`) or
    overlay images to pool into them (`imagery_pixel_values`, `imagery_grid_thw`), and returns the post-norm hidden
    states with `output_last_hidden_state=True`.

    Example:

    ```python
    >>> import thinker4d
    >>> from thinker4d.tiny import build_tiny_model, build_tiny_processor
    >>> processor = build_tiny_processor("qwen2_5_vl")
    >>> model, processor = thinker4d.from_base(build_tiny_model("qwen2_5_vl", processor), processor)
    >>> type(model).__name__, model.config.latent_size
    ('Thinker4DQwen2_5_VLForConditionalGeneration', 4)
    ```
    """

    config_class = Thinker4DQwen2_5_VLConfig
    config: Thinker4DQwen2_5_VLConfig

    # Overwritten -- adds latent_embeds / imagery_pixel_values / output_last_hidden_state, then calls super().forward
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")  # as the stock forward
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        video_grid_thw: torch.LongTensor | None = None,
        mm_token_type_ids: torch.IntTensor | None = None,
        second_per_grid_ts: torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        mm_encoder_outputs: dict | None = None,
        latent_embeds: torch.FloatTensor | None = None,
        imagery_pixel_values: torch.Tensor | None = None,
        imagery_grid_thw: torch.LongTensor | None = None,
        output_last_hidden_state: bool = False,
        **kwargs,
    ) -> tuple | Thinker4DCausalLMOutputWithPast:
        r"""
        latent_embeds (`torch.FloatTensor` of shape `(num_slots, hidden)` or `(num_blocks, K, hidden)`, *optional*):
            Vectors for the latent slots (`<|latent_pad|>` positions), row-major. Teacher-forced imagery targets in
            DIFT, or the latents recorded at rollout when RL recomputes log-probs.
        imagery_pixel_values / imagery_grid_thw (*optional*):
            Overlay images (image-processor output); pooled by [`get_imagery_targets`] and placed at the slots.
        output_last_hidden_state (`bool`, *optional*, defaults to `False`):
            Return the post-norm last hidden state (the input of `lm_head`) as `last_hidden_state`.
        """
        kwargs.update(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            labels=labels,
            use_cache=use_cache,
            pixel_values=pixel_values,
            pixel_values_videos=pixel_values_videos,
            image_grid_thw=image_grid_thw,
            video_grid_thw=video_grid_thw,
            mm_token_type_ids=mm_token_type_ids,
            second_per_grid_ts=second_per_grid_ts,
            logits_to_keep=logits_to_keep,
            mm_encoder_outputs=mm_encoder_outputs,
            latent_embeds=latent_embeds,
            imagery_pixel_values=imagery_pixel_values,
            imagery_grid_thw=imagery_grid_thw,
            output_last_hidden_state=output_last_hidden_state,
        )
        return self._latent_forward(
            super().forward,
            kwargs,
            mm_keys=("mm_token_type_ids", "image_grid_thw", "video_grid_thw", "second_per_grid_ts"),
        )


register_weight_conversions(Thinker4DQwen2_5_VLForConditionalGeneration, Qwen2_5_VLForConditionalGeneration)

__all__ = ["Thinker4DQwen2_5_VLForConditionalGeneration"]
