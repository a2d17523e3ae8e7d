"""Tiny random-weight Qwen2.5-VL / Qwen3-VL models and processors built in-process, with no download.

They back the test suite, the benchmarks and the offline quickstart: a byte-level tokenizer (256 byte symbols plus
Qwen's special tokens, about 270 ids) with the Qwen2-VL chat template, real Qwen image and video processors, and a
model of any size you ask for. Token ids are *not* the real Qwen ids, so code must always read ids from the
tokenizer or the config.

Example:

```python
>>> from thinker4d.tiny import build_tiny_processor, build_tiny_model
>>> processor = build_tiny_processor("qwen2_5_vl")
>>> model = build_tiny_model("qwen2_5_vl", processor)
>>> model.config.text_config.hidden_size
64
```
"""

from __future__ import annotations

import torch


QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

BACKBONES = ("qwen2_5_vl", "qwen3_vl")


def _train_bpe(corpus, vocab_size: int) -> tuple[dict, list]:
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(corpus, trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


def build_tiny_tokenizer(corpus=None, vocab_size: int = 1024):
    """A byte-level `Qwen2Tokenizer` with Qwen's special tokens and the Qwen2-VL chat template.

    Args:
        corpus (iterable of `str`, *optional*): texts to learn BPE merges from (offline, milliseconds), so that
            in-domain text takes 3-5x fewer tokens than bytes. Without it, every byte is one token (no merges).
        vocab_size (`int`, *optional*, defaults to 1024): BPE vocabulary size when `corpus` is given.
    """
    from tokenizers import pre_tokenizers
    from transformers import Qwen2Tokenizer

    if corpus is None:
        vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
        merges = []
    else:
        vocab, merges = _train_bpe(corpus, vocab_size)
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None)
    tok.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL_TOKENS[1:]})
    tok.add_tokens(["<|endoftext|>"], special_tokens=True)
    tok.chat_template = QWEN2_VL_CHAT_TEMPLATE
    return tok


def _check_backbone(backbone: str) -> None:
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown backbone {backbone!r}; choose one of {BACKBONES}.")


def build_tiny_processor(
    backbone: str = "qwen2_5_vl",
    max_pixels: int = 64 * 64,
    min_pixels: int = 28 * 28,
    corpus=None,
    vocab_size: int = 1024,
):
    """A real Qwen processor around the tiny tokenizer; images and video frames are resized to at most `max_pixels`.

    `corpus` / `vocab_size` are passed to [`build_tiny_tokenizer`] (BPE merges learned from in-domain text).
    """
    _check_backbone(backbone)
    tok = build_tiny_tokenizer(corpus, vocab_size)
    if backbone == "qwen2_5_vl":
        from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

        iproc = Qwen2VLImageProcessor(
            min_pixels=min_pixels, max_pixels=max_pixels, patch_size=14, temporal_patch_size=2, merge_size=2
        )
        vproc = Qwen2VLVideoProcessor(
            min_pixels=min_pixels,
            max_pixels=max_pixels,
            patch_size=14,
            temporal_patch_size=2,
            merge_size=2,
            cap_pixels_per_frame=True,
        )
        return Qwen2_5_VLProcessor(
            image_processor=iproc, tokenizer=tok, video_processor=vproc, chat_template=tok.chat_template
        )
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    iproc = Qwen2VLImageProcessor(
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
        patch_size=16,
        temporal_patch_size=2,
        merge_size=2,
    )
    vproc = Qwen3VLVideoProcessor(
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels * 4},
        patch_size=16,
        temporal_patch_size=2,
        merge_size=2,
        cap_pixels_per_frame=True,
    )
    return Qwen3VLProcessor(
        image_processor=iproc, tokenizer=tok, video_processor=vproc, chat_template=tok.chat_template
    )


def build_tiny_config(
    backbone: str,
    processor,
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    intermediate_size: int | None = None,
    vision_hidden_size: int = 32,
    vision_depth: int = 2,
    max_position_embeddings: int = 4096,
    tie_word_embeddings: bool = False,
):
    """The stock (non-thinker4d) config of a tiny model whose vocabulary matches `processor`'s tokenizer."""
    _check_backbone(backbone)
    tok = processor.tokenizer
    ids = tok.convert_tokens_to_ids
    head_dim = hidden_size // num_attention_heads
    if head_dim % 2 or head_dim < 8:
        raise ValueError(f"hidden_size / num_attention_heads = {head_dim} must be an even number >= 8.")
    half = head_dim // 2
    # mrope_section splits head_dim / 2 over (temporal, height, width), as in the real models (16, 24, 24 for 128).
    t = half // 4 if half >= 8 else 2
    h = (half - t) // 2
    mrope_section = [t, h, half - t - h]
    inter = intermediate_size or 2 * hidden_size
    text = dict(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=inter,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=max_position_embeddings,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=tie_word_embeddings,
    )
    common = dict(
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=tie_word_embeddings,
    )
    if backbone == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig

        text["rope_parameters"] = {"rope_type": "default", "mrope_section": mrope_section, "rope_theta": 10000.0}
        text["bos_token_id"] = None
        vision = dict(
            depth=vision_depth,
            hidden_size=vision_hidden_size,
            intermediate_size=2 * vision_hidden_size,
            num_heads=2,
            out_hidden_size=hidden_size,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=56,
            fullatt_block_indexes=[vision_depth - 1],
        )
        return Qwen2_5_VLConfig(
            text_config=text,
            vision_config=vision,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            **common,
        )
    from transformers import Qwen3VLConfig

    text["head_dim"] = head_dim
    text["rope_parameters"] = {
        "rope_type": "default",
        "mrope_section": mrope_section,
        "mrope_interleaved": True,
        "rope_theta": 10000.0,
    }
    vision = dict(
        depth=vision_depth,
        hidden_size=vision_hidden_size,
        intermediate_size=2 * vision_hidden_size,
        num_heads=2,
        out_hidden_size=hidden_size,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        num_position_embeddings=64,
        deepstack_visual_indexes=[vision_depth - 1],
    )
    return Qwen3VLConfig(text_config=text, vision_config=vision, **common)


def build_tiny_model(backbone: str = "qwen2_5_vl", processor=None, seed: int = 0, **sizes):
    """A stock `Qwen2_5_VLForConditionalGeneration` / `Qwen3VLForConditionalGeneration` with random weights.

    Convert it with [`thinker4d.from_base`] to get a latent-imagery model.
    """
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen3VLForConditionalGeneration

    processor = processor if processor is not None else build_tiny_processor(backbone)
    config = build_tiny_config(backbone, processor, **sizes)
    cls = Qwen2_5_VLForConditionalGeneration if backbone == "qwen2_5_vl" else Qwen3VLForConditionalGeneration
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(config)
    return model.eval()


def build_tiny_text_latent_model(tokenizer, seed: int = 0, latent_size: int = 3, latent_norm: float | None = 4.0):
    """A random-weight text-only `Qwen2ForCausalLM` whose config carries the latent fields, and its tokenizer with the
    three latent tokens added: the kind of model thinker4d's vLLM backend decodes and `LatentGRPOTrainer` trains
    with `use_vllm=True`.

    Example:

    ```python
    >>> from thinker4d.tiny import build_tiny_text_latent_model, build_tiny_tokenizer
    >>> model, tokenizer = build_tiny_text_latent_model(build_tiny_tokenizer())
    >>> model.config.latent_size, model.config.latent_pad_id == tokenizer.convert_tokens_to_ids("<|latent_pad|>")
    (3, True)
    ```
    """
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokens = ("<|latent_start|>", "<|latent_pad|>", "<|latent_end|>")  # thinker4d's latent tokens (docs/design.md)
    tokenizer.add_special_tokens({"additional_special_tokens": list(tokens)}, replace_extra_special_tokens=False)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in tokens}
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, max_position_embeddings=512, tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    config.latent_size, config.latent_norm = latent_size, latent_norm
    config.latent_start_id, config.latent_pad_id, config.latent_end_id = (
        ids["<|latent_start|>"], ids["<|latent_pad|>"], ids["<|latent_end|>"],
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    return model.float().eval(), tokenizer
