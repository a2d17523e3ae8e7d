"""Turn a stock Qwen2.5-VL / Qwen3-VL checkpoint (Hub id, local folder or model object) and its processor into a
thinker4d latent-imagery model.

Paper: https://huggingface.co/papers/2605.05997. What differs from the paper's code (docs/paper_differences.md,
section 2):

1. The embedding matrix is never shrunk. Qwen's matrix is padded past the tokenizer (151,936 rows for 151,665
   tokens); the paper's code resized it *down* to the tokenizer length, so its mean-initialisation never ran and the
   three new tokens kept untrained padding rows. Here the new rows (input embeddings and an untied `lm_head`) are set
   to the mean of the rows of the pre-existing vocabulary, whether or not the matrix had to grow.
2. The token ids are written to the config (`latent_start_id`, `latent_end_id`, `latent_pad_id`); nothing hard-codes them.
"""

from __future__ import annotations

import contextlib

import torch

from .configuration_thinker4d import (
    LATENT_END_TOKEN,
    LATENT_PAD_TOKEN,
    LATENT_START_TOKEN,
    LATENT_TOKENS,
    Thinker4DQwen2_5_VLConfig,
    Thinker4DQwen3VLConfig,
)
from .modeling_thinker4d_qwen2_5_vl import Thinker4DQwen2_5_VLForConditionalGeneration
from .modeling_thinker4d_qwen3_vl import Thinker4DQwen3VLForConditionalGeneration


# stock model_type -> (thinker4d config class, thinker4d model class)
SUPPORTED_BACKBONES = {
    "qwen2_5_vl": (Thinker4DQwen2_5_VLConfig, Thinker4DQwen2_5_VLForConditionalGeneration),
    "qwen3_vl": (Thinker4DQwen3VLConfig, Thinker4DQwen3VLForConditionalGeneration),
}
THINKER4D_CLASSES = tuple(cls for _, cls in SUPPORTED_BACKBONES.values())


def unwrap_latent_model(model, text_only: bool = False):
    """The thinker4d model under DDP / `torch.compile` / PEFT wrappers, with a clear error when there is none.

    Trainers call the wrapper (so gradients sync) but read the config, the latent ids and the submodules here. With
    `text_only=True` a text-only causal LM whose config carries the latent fields (`latent_size`, `latent_start_id`,
    `latent_pad_id`, `latent_end_id`; what `thinker4d.vllm` decodes) is accepted too.
    """
    m = model
    while hasattr(m, "module") or hasattr(m, "_orig_mod"):  # DDP / torch.compile wrappers
        m = getattr(m, "module", None) or m._orig_mod
    if hasattr(m, "get_base_model"):  # PEFT
        m = m.get_base_model()
    if text_only and is_text_latent_model(m):
        return m
    if not hasattr(m, "latent_ids"):
        text = (
            "A text-only causal LM needs the latent fields in its config (latent_size, latent_start_id, "
            "latent_pad_id, latent_end_id, with the three tokens in its vocabulary) to decode imagery blocks; without "
            "them, train it with `trl.GRPOTrainer`."
            if text_only
            else "A text-only causal LM has no latent imagery path (no vision tower, no latent tokens); train it with "
            "`trl.GRPOTrainer`."
        )
        raise ValueError(
            f"{type(m).__name__} is not a thinker4d latent model. Convert a Qwen2.5-VL / Qwen3-VL model first: "
            f"`model, processor = thinker4d.from_base(model_or_id, processor)`. {text}"
        )
    return m


def is_text_latent_model(model) -> bool:
    """Whether `model` is a text-only model (no vision config) whose config carries the latent token fields."""
    config = getattr(model, "config", None)
    fields = ("latent_size", "latent_start_id", "latent_pad_id", "latent_end_id")
    return (
        not hasattr(model, "latent_ids")
        and config is not None
        and getattr(config, "vision_config", None) is None
        and all(getattr(config, name, None) is not None for name in fields)
    )


def _unsupported(what) -> ValueError:
    return ValueError(
        f"thinker4d supports Qwen2.5-VL and Qwen3-VL checkpoints (model_type {sorted(SUPPORTED_BACKBONES)}), got "
        f"{what}. Use e.g. 'Qwen/Qwen2.5-VL-3B-Instruct' or a Qwen2_5_VLForConditionalGeneration / "
        "Qwen3VLForConditionalGeneration object."
    )


def add_latent_tokens(tokenizer) -> tuple[dict[str, int], int]:
    """Add the three latent tokens (if missing) as special tokens.

    Returns:
        `(ids, n_before)`: the token -> id map and the tokenizer length before any token was added.
    """
    n_before = len(tokenizer)
    missing = [t for t in LATENT_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in LATENT_TOKENS}
    for t, i in ids.items():
        if i is None or i == tokenizer.unk_token_id or len(tokenizer(t, add_special_tokens=False)["input_ids"]) != 1:
            raise ValueError(f"Could not register {t!r} as a single special token in {type(tokenizer).__name__}.")
    return ids, n_before


def check_latent_tokens(tokenizer, config) -> None:
    """Raise a clear error if the tokenizer and the config disagree on the latent token ids."""
    vocab = tokenizer.get_vocab()
    expected = {
        LATENT_START_TOKEN: getattr(config, "latent_start_id", None),
        LATENT_PAD_TOKEN: getattr(config, "latent_pad_id", None),
        LATENT_END_TOKEN: getattr(config, "latent_end_id", None),
    }
    for token, cfg_id in expected.items():
        if token not in vocab:
            raise ValueError(
                f"The tokenizer has no {token!r} token. Load the processor saved with the thinker4d checkpoint, or "
                "convert with `thinker4d.from_base(model, processor)` which adds the latent tokens."
            )
        if cfg_id is None or vocab[token] != cfg_id:
            raise ValueError(
                f"Tokenizer id of {token!r} is {vocab[token]} but the model config says {cfg_id}. Use the processor "
                "that was saved with this checkpoint."
            )


def _mean_init_rows(weight: torch.Tensor, new_ids: list[int], n_old: int) -> None:
    with torch.no_grad():
        mean = weight[:n_old].float().mean(0).to(weight.dtype)
        for i in new_ids:
            weight[i] = mean


def _gathered(params: list):
    """A context in which ZeRO-3-partitioned `params` are whole, rank 0's edits being kept; a no-op otherwise.

    deepspeed is imported only when a parameter is partitioned, so it is installed; this is how transformers' own
    modeling files edit partitioned weights.
    """
    if not any(hasattr(p, "ds_id") for p in params):
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=0)


def _to_thinker4d_object(base, latent_fields: dict):
    model_type = getattr(base.config, "model_type", None)
    config_cls, model_cls = SUPPORTED_BACKBONES[model_type]
    config_dict = base.config.to_dict()
    for key in ("model_type", "architectures", "auto_map", "transformers_version"):
        config_dict.pop(key, None)
    config_dict.update(latent_fields)
    config = config_cls(**config_dict)
    config._attn_implementation = base.config._attn_implementation
    with torch.device("meta"):
        model = model_cls._from_config(config, dtype=base.dtype, attn_implementation=base.config._attn_implementation)
    model.load_state_dict(base.state_dict(), strict=True, assign=True)
    # Non-persistent buffers (rotary inverse frequencies) are not in the state dict; take the base model's.
    base_buffers = dict(base.named_buffers())
    for name, buf in list(model.named_buffers()):
        if buf.is_meta:
            module_name, _, attr = name.rpartition(".")
            module = model.get_submodule(module_name) if module_name else model
            module._buffers[attr] = base_buffers[name]
    model.tie_weights()
    model.generation_config = base.generation_config
    return model.train(base.training)


def from_base(
    model_or_id,
    processor=None,
    latent_size: int = 4,
    imagery_pooling: str = "raster",
    **from_pretrained_kwargs,
):
    """Turn a stock Qwen2.5-VL / Qwen3-VL model and its processor into a thinker4d model.

    Adds `<|latent_start|>`, `<|latent_pad|>` and `<|latent_end|>` to the tokenizer, grows the embeddings only if an id
    falls past the matrix, sets the new rows to the mean of the existing vocabulary's rows (also for an untied
    `lm_head`), and writes the ids, K and the pooling mode to the config.

    Args:
        model_or_id (`str` or `PreTrainedModel`): a Hub id / local folder, or a loaded stock (or thinker4d) model.
        processor (`ProcessorMixin`, *optional*): its processor; loaded with `AutoProcessor` from the same id if omitted.
        latent_size (`int`, *optional*, defaults to 4): K, latent slots per imagery block.
        imagery_pooling (`str`, *optional*, defaults to `"raster"`): `"raster"` (paper) or `"grid"`.
        from_pretrained_kwargs: passed to `from_pretrained` when `model_or_id` is a string (e.g. `dtype`).

    Returns:
        `(model, processor)`.

    Example:

    ```python
    >>> import thinker4d
    >>> from thinker4d.tiny import build_tiny_model, build_tiny_processor
    >>> processor = build_tiny_processor("qwen3_vl")
    >>> model, processor = thinker4d.from_base(build_tiny_model("qwen3_vl", processor), processor, latent_size=2)
    >>> processor.tokenizer.convert_ids_to_tokens(model.config.latent_start_id)
    '<|latent_start|>'
    ```
    """
    if not isinstance(latent_size, int) or latent_size < 1:
        raise ValueError(f"latent_size must be an integer >= 1 (the paper uses 4), got {latent_size!r}.")
    if isinstance(model_or_id, str):
        from transformers import AutoConfig, AutoProcessor

        config = AutoConfig.from_pretrained(
            model_or_id,
            **{
                k: v
                for k, v in from_pretrained_kwargs.items()
                if k in ("revision", "token", "cache_dir", "local_files_only", "trust_remote_code")
            },
        )
        if processor is None:
            processor = AutoProcessor.from_pretrained(model_or_id)
        if isinstance(config, (Thinker4DQwen2_5_VLConfig, Thinker4DQwen3VLConfig)):
            model_cls = SUPPORTED_BACKBONES[
                "qwen2_5_vl" if isinstance(config, Thinker4DQwen2_5_VLConfig) else "qwen3_vl"
            ][1]
            model = model_cls.from_pretrained(model_or_id, **from_pretrained_kwargs)
            check_latent_tokens(processor.tokenizer, model.config)
            return model, processor
        if config.model_type not in SUPPORTED_BACKBONES:
            raise _unsupported(f"model_type {config.model_type!r} for {model_or_id!r}")
        config_cls, model_cls = SUPPORTED_BACKBONES[config.model_type]
        config_dict = config.to_dict()
        for key in ("model_type", "architectures", "auto_map", "transformers_version"):
            config_dict.pop(key, None)
        new_config = config_cls(**config_dict, latent_size=latent_size, imagery_pooling=imagery_pooling)
        model = model_cls.from_pretrained(model_or_id, config=new_config, **from_pretrained_kwargs)
    else:
        model = model_or_id
        if processor is None:
            raise ValueError("Pass the processor that belongs to this model object: from_base(model, processor).")
        if isinstance(model, THINKER4D_CLASSES):
            model.config.latent_size = latent_size
            model.config.imagery_pooling = imagery_pooling
        else:
            if getattr(model.config, "model_type", None) not in SUPPORTED_BACKBONES:
                raise _unsupported(
                    f"a {type(model).__name__} (model_type {getattr(model.config, 'model_type', None)!r})"
                )
            model = _to_thinker4d_object(model, {"latent_size": latent_size, "imagery_pooling": imagery_pooling})

    tokenizer = processor.tokenizer
    ids, n_before = add_latent_tokens(tokenizer)
    new_ids = [i for i in ids.values() if i >= n_before]
    # num_embeddings, not weight.shape: under ZeRO-3 the weight is a partition (shape (0,)), and reading 0 rows would
    # "grow" (in fact shrink) a padded matrix down to the tokenizer's length
    n_rows = model.get_input_embeddings().num_embeddings
    if max(ids.values()) >= n_rows:
        model.resize_token_embeddings(max(ids.values()) + 1, mean_resizing=False)
    if new_ids:
        weights = [model.get_input_embeddings().weight]
        out = model.get_output_embeddings()
        if out is not None and out.weight is not weights[0]:  # an untied lm_head
            weights.append(out.weight)
        with _gathered(weights):
            for weight in weights:
                _mean_init_rows(weight, new_ids, n_before)
    model.config.latent_start_id = ids[LATENT_START_TOKEN]
    model.config.latent_pad_id = ids[LATENT_PAD_TOKEN]
    model.config.latent_end_id = ids[LATENT_END_TOKEN]
    check_latent_tokens(tokenizer, model.config)
    return model, processor
