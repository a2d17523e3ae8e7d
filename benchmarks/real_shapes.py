"""DIFT step and latent decoding at Qwen2.5-VL-3B's real shapes (random weights), on whatever device this runs on.

Claims measured: `thinker4d.from_base`, one DIFT forward+backward with LoRA and latent decoding run at the published
3B architecture with a real-resolution sample, in bounded memory, and latent decoding (no imagery opened) costs about
what stock `generate` costs on the same model and prompt.

- The model is `Qwen2_5_VLForConditionalGeneration` built from the numbers of Qwen/Qwen2.5-VL-3B-Instruct's published
  config.json (`QWEN2_5_VL_3B` below: 36 layers, hidden 2048, 16 heads / 2 KV heads, MLP 11008, vocabulary 151,936,
  tied embeddings; vision tower depth 32, hidden 1280, window 112, full attention in blocks 7/15/23/31) with random
  weights, in bf16 where the device supports it, else fp32. `--layers N` keeps the widths and cuts the depth, for a
  machine where 36 layers do not fit.
- The processor is a real Qwen2.5-VL processor (image/video processors at the published 14 px patches, 2x2 merge,
  temporal patch 2, min_pixels 3,136, max_pixels 12,845,056) around the offline byte-level tokenizer of
  `thinker4d.tiny` (the Hub, and so Qwen's tokenizer, is not needed), so text takes more tokens than with Qwen's BPE
  and token ids differ; the vision token counts are the real ones.
- The sample: `--frames` video frames and `--imagery` imagery overlays, all `--size` x `--size` pixels (default 4 frames
  at 448 x 448 = 200,704 px, the paper's per-frame budget, plus two imagery blocks with K = 4; 8 frames did not fit in
  24 GB on the development machine).
- `dift_step_s`: one `DIFTTrainer.compute_loss` + backward with LoRA (r = 16 on the attention and MLP projections) and
  activation checkpointing, frozen vision tower, one row. `latent_over_stock`: the time of `model.generate` (the
  latent loop) over `GenerationMixin.generate` (transformers' loop) for the same greedy `--new-tokens` tokens from the
  video prompt, no imagery opened; both include the prefill.
- `peak_rss_gb`: the process's peak resident memory (`ru_maxrss`), model construction included.

    python benchmarks/real_shapes.py [--layers 36] [--frames 4] [--size 448] [--imagery 2] [--new-tokens 32]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time

import numpy as np
import torch


# Qwen/Qwen2.5-VL-3B-Instruct config.json (huggingface.co/Qwen/Qwen2.5-VL-3B-Instruct/blob/main/config.json).
QWEN2_5_VL_3B = {
    "text": dict(
        vocab_size=151936,
        hidden_size=2048,
        intermediate_size=11008,
        num_hidden_layers=36,
        num_attention_heads=16,
        num_key_value_heads=2,
        hidden_act="silu",
        max_position_embeddings=128000,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0},
        tie_word_embeddings=True,
        use_sliding_window=False,
        sliding_window=32768,
        max_window_layers=70,
        attention_dropout=0.0,
    ),
    "vision": dict(
        depth=32,
        hidden_size=1280,
        intermediate_size=3420,
        num_heads=16,
        hidden_act="silu",
        in_channels=3,
        out_hidden_size=2048,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        fullatt_block_indexes=[7, 15, 23, 31],
        tokens_per_second=2,
    ),
}
# The published preprocessor_config.json: min_pixels 56 * 56, max_pixels 28 * 28 * 16384.
MIN_PIXELS, MAX_PIXELS = 3136, 12845056


def build_processor(min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS):
    """A real Qwen2.5-VL processor (published pixel bounds) around the offline tiny tokenizer, whose BPE merges are
    learned from the sample's text so that text takes a realistic number of tokens."""
    from thinker4d.tiny import build_tiny_processor

    row = make_row(0, 8, 1)
    corpus = [row["question"], " ".join(row["options"]), row["cot"]] * 4
    return build_tiny_processor("qwen2_5_vl", max_pixels=max_pixels, min_pixels=min_pixels, corpus=corpus)


def build_config(
    processor, layers: int | None = None, vision_depth: int | None = None, vision_overrides=None, **text_overrides
):
    """The 3B config with the tokenizer's special-token ids; `layers` / `vision_depth` cut the depth only, the
    overrides change anything else (for a tiny dry run)."""
    from transformers import Qwen2_5_VLConfig

    ids = processor.tokenizer.convert_tokens_to_ids
    text = {**QWEN2_5_VL_3B["text"], **text_overrides}
    vision = {**QWEN2_5_VL_3B["vision"], **(vision_overrides or {})}
    if layers is not None:
        text["num_hidden_layers"] = layers
    if vision_depth is not None:
        vision["depth"] = vision_depth
        vision["fullatt_block_indexes"] = [i for i in vision["fullatt_block_indexes"] if i < vision_depth] or [
            vision_depth - 1
        ]
    tok = processor.tokenizer
    text.update(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=text["tie_word_embeddings"],
    )


def build_model(config, dtype, seed: int = 0, attn_implementation: str = "sdpa"):
    """A stock model with random weights, built directly in `dtype` (no fp32 copy of a 3B model is ever made)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    return Qwen2_5_VLForConditionalGeneration._from_config(
        config, dtype=dtype, attn_implementation=attn_implementation
    )


def pick_dtype(device: str) -> torch.dtype:
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    try:  # bf16 matmul on this CPU (slow emulation is still "supported"; the flags say whether it is native)
        torch.ones(2, 2, dtype=torch.bfloat16) @ torch.ones(2, 2, dtype=torch.bfloat16)
        return torch.bfloat16
    except RuntimeError:
        return torch.float32


def make_row(frames: int, size: int, imagery: int, seed: int = 0) -> dict:
    from PIL import Image

    rng = np.random.default_rng(seed)

    def img():
        return Image.fromarray((rng.random((size, size, 3)) * 255).astype("uint8"))

    return {
        "id": "real/camera_motion/0",
        "frames": [img() for _ in range(frames)],
        "fps": 2.0,
        "question": "How does the camera move between the first and the last frame?",
        "options": ["A. Pan Left", "B. Pan Right", "C. Tilt Up", "D. Tilt Down"],
        "answer": "B",
        "cot": "<think>The shelf slides left in view"
        + " <imagery> so the camera turns right" * imagery
        + ".</think><answer>B. Pan Right</answer>",
        "imagery": [img() for _ in range(imagery)],
    }


def video_prompt(processor, row: dict, device):
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": row["question"]}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return processor(text=[text], videos=[row["frames"]], return_tensors="pt").to(device)


def lora_config():
    from peft import LoraConfig

    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    # only the language model's projections (the vision tower is frozen); its blocks use qkv / proj / *_proj too
    return LoraConfig(r=16, lora_alpha=32, target_modules=rf"^(?!.*visual).*\.({'|'.join(targets)})$")


def dift_trainer(model, processor, row, output_dir, peft_config=None, activation_checkpointing=True):
    """A `DIFTTrainer` on a one-row dataset and that row's batch on the model's device."""
    import datasets

    from thinker4d.trainers import DIFTConfig, DIFTTrainer

    args = DIFTConfig(
        output_dir=output_dir,
        report_to="none",
        activation_checkpointing=activation_checkpointing,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,  # the model is already in its dtype
        learning_rate=1e-5,
        warmup_steps=0,
        disable_tqdm=True,
    )
    trainer = DIFTTrainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list([row]),
        processing_class=processor,
        peft_config=peft_config,
    )
    if activation_checkpointing:  # the Trainer turns it on in train(); these steps call compute_loss directly
        trainer.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    device = next(trainer.model.parameters()).device
    batch = {k: v.to(device) for k, v in trainer.data_collator([trainer.train_dataset[0]]).items()}
    return trainer, batch


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed_once(fn):
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t0, out


def peak_rss_gb() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=36, help="text decoder layers (36 = the real 3B)")
    parser.add_argument("--vision-depth", type=int, default=32, help="vision blocks (32 = the real 3B)")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", type=int, default=448, help="frame and overlay side in pixels")
    parser.add_argument("--imagery", type=int, default=2, help="imagery blocks in the sample")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import GenerationMixin

    import thinker4d

    dtype = pick_dtype(args.device)
    t_start = time.perf_counter()
    processor = build_processor()
    config = build_config(processor, layers=args.layers, vision_depth=args.vision_depth)
    base = build_model(config, dtype)
    model, processor = thinker4d.from_base(base, processor, latent_size=4)
    model.to(args.device)
    build_s = time.perf_counter() - t_start
    row = make_row(args.frames, args.size, args.imagery)

    # ---------------------------------------------------------------- decoding (before LoRA wraps the model)
    model.eval()
    inputs = video_prompt(processor, row, args.device)
    gen = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)
    with torch.no_grad():
        GenerationMixin.generate(model, **inputs, max_new_tokens=1)  # warm-up (one prefill), so neither timing pays it
        t_stock, stock = timed_once(lambda: GenerationMixin.generate(model, **inputs, **gen))
        t_latent, latent = timed_once(lambda: model.generate(**inputs, **gen))
    same_tokens = torch.equal(stock, latent)
    partial = {"stock_generate_s": round(t_stock, 2), "latent_generate_s": round(t_latent, 2), "rss_gb": peak_rss_gb()}
    print(f"decoding done: {json.dumps(partial)}", file=sys.stderr, flush=True)  # kept if the step runs out of memory
    del stock, latent

    # ---------------------------------------------------------------- one DIFT step with LoRA
    with tempfile.TemporaryDirectory() as out:
        trainer, batch = dift_trainer(model, processor, row, out, peft_config=lora_config())
        trainer.model.train()
        t_step, loss = timed_once(lambda: trainer.compute_loss(trainer.model, dict(batch)))
        t_back, _ = timed_once(loss.backward)
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)

    print(
        json.dumps(
            {
                "shape": {
                    "name": "Qwen2.5-VL-3B"
                    if (args.layers, args.vision_depth) == (36, 32)
                    else "Qwen2.5-VL-3B widths",
                    "text_layers": args.layers,
                    "vision_depth": args.vision_depth,
                    "hidden": config.text_config.hidden_size,
                    "vocab": config.text_config.vocab_size,
                    "params_b": round(model.num_parameters() / 1e9, 3),
                    "lora_trainable_m": round(trainable / 1e6, 2),
                    "dtype": str(dtype).removeprefix("torch."),
                    "frames": args.frames,
                    "size": args.size,
                    "imagery_blocks": args.imagery,
                    "dift_seq_len": int(batch["input_ids"].shape[1]),
                    "prompt_len": int(inputs["input_ids"].shape[1]),
                    "new_tokens": args.new_tokens,
                },
                "device": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu",
                "threads": torch.get_num_threads(),
                "build_s": round(build_s, 1),
                "dift_loss": round(float(loss.detach()), 4),
                "dift_forward_s": round(t_step, 2),
                "dift_backward_s": round(t_back, 2),
                "dift_step_s": round(t_step + t_back, 2),
                "stock_generate_s": round(t_stock, 2),
                "latent_generate_s": round(t_latent, 2),
                "latent_over_stock": round(t_latent / t_stock, 3),
                "latent_equals_stock_tokens": same_tokens,
                "peak_rss_gb": peak_rss_gb(),
                "peak_cuda_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if args.device == "cuda" else None,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
