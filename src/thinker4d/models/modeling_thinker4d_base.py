"""What the thinker4d backbones share: latent-slot placement, imagery targets, the post-norm hidden-state output and the
latent `generate`. Each backbone file subclasses its stock transformers class and this mixin.

Paper: https://huggingface.co/papers/2605.05997. What differs from the paper's code (docs/paper_differences.md,
sections 1, 4 and 6):

1. No fork of transformers: the stock classes are subclassed; `forward` only adds arguments (latent vectors, overlay
   pixels, a flag for the last hidden state) and calls `super().forward`.
2. The same forward serves teacher forcing (DIFT: pooled overlay targets at the slots) and RL re-insertion (the
   latents recorded at rollout at the slots), so training log-probs are computed under the context that was sampled.
3. The vision tower computes imagery targets under `torch.no_grad()` in a separate method, so targets can be cached.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields

import torch
from transformers.modeling_outputs import MultimodalCausalLMOutputWithPast

from .generation import capture_last_hidden_state, latent_generate, latent_token_ids, scale_latents
from .imagery import latent_slot_mask, place_latents, pool_imagery


def register_weight_conversions(thinker4d_cls, stock_cls) -> None:
    """Load and save checkpoints with the same weight-name conversions as the stock class (transformers looks them up
    by class name, so a subclass must register them; otherwise stock Qwen checkpoints would load with missing keys)."""
    from transformers.conversion_mapping import (
        get_checkpoint_conversion_mapping,
        register_checkpoint_conversion_mapping,
    )

    mapping = get_checkpoint_conversion_mapping(stock_cls.__name__)
    if mapping is not None:
        register_checkpoint_conversion_mapping(thinker4d_cls.__name__, mapping, overwrite=True)


def build_mm_token_type_ids(input_ids: torch.Tensor, config) -> torch.Tensor:
    """The `mm_token_type_ids` the Qwen-VL processors return for `input_ids`: 1 at image tokens, 2 at video tokens, 0
    elsewhere (`torch.int`, same shape). The M-RoPE positions of a forward with `image_grid_thw` / `video_grid_thw`
    are computed from it."""
    types = torch.zeros_like(input_ids, dtype=torch.int)
    types[input_ids == config.image_token_id] = 1
    types[input_ids == config.video_token_id] = 2
    return types


def _slice_like_logits(hidden: torch.Tensor, logits_to_keep) -> torch.Tensor:
    """`hidden` at the positions the stock forward keeps for the logits (the input of its `lm_head`)."""
    try:  # newer transformers slice through one helper (which also takes per-row positions)
        from transformers.modeling_utils import slice_logits_to_keep
    except ImportError:  # transformers 5.0: an int (the last n positions; 0 keeps all) or a 1-D tensor of positions
        return hidden[:, slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep]
    return slice_logits_to_keep(hidden, logits_to_keep)


@dataclass
class Thinker4DCausalLMOutputWithPast(MultimodalCausalLMOutputWithPast):
    """The stock Qwen-VL output, [`MultimodalCausalLMOutputWithPast`] (`loss`, `logits`, `cache`, `hidden_states`,
    `attentions`, `image_outputs`, `video_outputs`, `audio_outputs`), plus what latent training needs. The two extra
    fields come last, so `to_tuple()` (what `return_dict=False` returns) starts with the stock tuple.

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch, seq, hidden)`, *optional*):
            Last decoder layer output after the final norm (the input of `lm_head`), returned when
            `output_last_hidden_state=True`. Sliced like the logits when `logits_to_keep` is set.
        latent_embeds (`torch.FloatTensor` of shape `(num_slots, hidden)`, *optional*):
            The vectors placed at the latent slots in this forward (pooled imagery targets or given latents).
    """

    last_hidden_state: torch.FloatTensor | None = None
    latent_embeds: torch.FloatTensor | None = None


class Thinker4DLatentMixin:
    """Latent-imagery behaviour shared by the thinker4d backbones (used together with a Qwen-VL generation class)."""

    @property
    def latent_ids(self) -> tuple[int, int, int, int]:
        """`(latent_start_id, latent_pad_id, latent_end_id, latent_size)` from the config."""
        return latent_token_ids(self.config)

    @torch.no_grad()
    def get_imagery_targets(self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor) -> torch.Tensor:
        """Pooled imagery targets of overlay images: frozen vision tower + merger, then K-way pooling.

        Args:
            pixel_values (`torch.Tensor`): the image processor's `pixel_values` for the overlay images.
            image_grid_thw (`torch.LongTensor` of shape `(num_images, 3)`): their patch grids.

        Returns:
            `torch.Tensor` of shape `(num_images, latent_size, hidden)` in the LLM input-embedding space.
        """
        k = self.config.latent_size
        features = self.model.get_image_features(pixel_values, image_grid_thw, return_dict=True).pooler_output
        return pool_imagery(
            features,
            image_grid_thw,
            k,
            spatial_merge_size=self.config.vision_config.spatial_merge_size,
            mode=self.config.imagery_pooling,
        )

    def _latent_position_ids(self, input_ids, attention_mask, **mm_kwargs) -> torch.Tensor:
        # The positions generation uses for a prompt of these ids, so a full-sequence forward sees exactly the positions
        # the rollout saw (text positions from the attention mask, 3-D M-RoPE positions for vision tokens).
        kwargs = {k: v for k, v in mm_kwargs.items() if v is not None}
        if kwargs.get("mm_token_type_ids") is None and (
            kwargs.get("image_grid_thw") is not None or kwargs.get("video_grid_thw") is not None
        ):
            kwargs["mm_token_type_ids"] = build_mm_token_type_ids(input_ids, self.config)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        kwargs["attention_mask"] = attention_mask
        kwargs["input_ids"] = input_ids
        return self._prepare_position_ids_for_generation(input_ids, kwargs)

    def _prepare_latent_inputs(
        self,
        input_ids,
        attention_mask,
        position_ids,
        inputs_embeds,
        latent_embeds,
        imagery_pixel_values,
        imagery_grid_thw,
        past_key_values,
        mm_kwargs,
    ):
        """Embed the ids and write latent vectors at the slots. Returns `(inputs_embeds, position_ids, vectors)`."""
        if imagery_pixel_values is not None:
            if latent_embeds is not None:
                raise ValueError("Pass either latent_embeds or imagery_pixel_values/imagery_grid_thw, not both.")
            if imagery_grid_thw is None:
                raise ValueError("imagery_pixel_values needs imagery_grid_thw (the image processor's image_grid_thw).")
            latent_embeds = self.get_imagery_targets(imagery_pixel_values, imagery_grid_thw)
        if input_ids is None:
            raise ValueError(
                "Latent inputs need input_ids (latent slots are found at the <|latent_pad|> ids); got inputs_embeds only."
            )
        if past_key_values is not None and past_key_values.get_seq_length() > 0:
            raise ValueError(
                "latent_embeds cannot be combined with a non-empty cache; run the full sequence, or decode with "
                "model.generate() which feeds latents itself."
            )
        _, pad_id, _, _ = self.latent_ids
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        latent_embeds = latent_embeds.reshape(-1, inputs_embeds.shape[-1]).to(inputs_embeds)
        latent_embeds = scale_latents(latent_embeds, getattr(self.config, "latent_norm", None))
        inputs_embeds = place_latents(inputs_embeds, input_ids, latent_embeds, pad_id)
        if position_ids is None:
            position_ids = self._latent_position_ids(input_ids, attention_mask, **mm_kwargs)
        return inputs_embeds, position_ids, latent_embeds

    def latent_slot_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Boolean mask of the latent slots in `input_ids`."""
        return latent_slot_mask(input_ids, self.latent_ids[1])

    def _latent_forward(self, parent_forward, forward_kwargs: dict, mm_keys: tuple[str, ...]):
        latent_embeds = forward_kwargs.pop("latent_embeds", None)
        imagery_pixel_values = forward_kwargs.pop("imagery_pixel_values", None)
        imagery_grid_thw = forward_kwargs.pop("imagery_grid_thw", None)
        want_hidden = bool(forward_kwargs.pop("output_last_hidden_state", False))
        # Same rule as the stock forward (`can_return_tuple`): the argument wins, else the config.
        return_dict = forward_kwargs.pop("return_dict", None)
        if return_dict is None:
            return_dict = getattr(self.config, "return_dict", True)
        placed = None
        if latent_embeds is not None or imagery_pixel_values is not None:
            embeds, position_ids, placed = self._prepare_latent_inputs(
                forward_kwargs.get("input_ids"),
                forward_kwargs.get("attention_mask"),
                forward_kwargs.get("position_ids"),
                forward_kwargs.get("inputs_embeds"),
                latent_embeds,
                imagery_pixel_values,
                imagery_grid_thw,
                forward_kwargs.get("cache"),
                {k: forward_kwargs.get(k) for k in mm_keys},
            )
            # Qwen3-VL takes ids or embeddings, not both; vision placeholders are then found by embedding equality.
            forward_kwargs.update(input_ids=None, inputs_embeds=embeds, position_ids=position_ids)
        with capture_last_hidden_state(self) if want_hidden else contextlib.nullcontext({}) as captured:
            out = parent_forward(**forward_kwargs, return_dict=True)
        hidden = captured.get("hidden")
        if hidden is not None:  # the positions the logits have, as the stock forward slices lm_head's input
            hidden = _slice_like_logits(hidden, forward_kwargs.get("logits_to_keep", 0))
        output = Thinker4DCausalLMOutputWithPast(
            **{f.name: getattr(out, f.name) for f in fields(out)},
            last_hidden_state=hidden,
            latent_embeds=placed,
        )
        return output if return_dict else output.to_tuple()

    def generate(self, *args, custom_generate=None, **kwargs):
        """Generate with latent imagery feedback (see [`thinker4d.models.generation.latent_sample`]).

        Extra keyword arguments: `max_imagery_blocks` (`int`, *optional*) and `on_imagery_limit`
        (`"suppress"` or `"error"`). With `return_dict_in_generate=True` the output is a `LatentGenerateOutput` with
        `latents`, `latent_positions` and `imagery_blocks`. Beam search and assisted decoding run transformers' own
        loops when `<|latent_start|>` cannot be produced, and raise otherwise (see
        [`thinker4d.models.generation.latent_generate`]). Pass `custom_generate=` to use another decoding loop.
        """
        # Overwritten -- greedy/sampling run the per-row latent loop; other modes only when no block can open
        if custom_generate is not None:
            return super().generate(*args, custom_generate=custom_generate, **kwargs)
        return latent_generate(self, *args, **kwargs)
