"""One GPU check at Qwen2.5-VL-3B's real shapes (random weights, bf16), run by `benchmarks/gpu_check.sh`.

Prints one JSON object. Each section records its numbers or its error, so one failing section does not hide the others:

- `flash_vs_sdpa`: the same greedy latent decoding (imagery blocks forced at generated steps 4 and 24) from the
  video prompt with `flash_attention_2` and with `sdpa`: whether the tokens are equal, the first step where they
  differ, the largest latent-vector difference over the blocks both produced, and the prefill logits' largest
  difference and argmax agreement. Random weights give near-tied logits, so bf16 rounding can flip a greedy token;
  the prefill numbers say whether that is rounding or a real mismatch.
- `decode`: tokens/s of `model.generate` (latent loop, no imagery opened) and of stock `GenerationMixin.generate`,
  batch 1 and batch 8 (the video prompt repeated), and their ratio.
- `dift_full`, `dift_lora`: one DIFT step (`compute_loss`, backward, AdamW step) on one real-shape row (8 frames at
  448 x 448, two imagery blocks), activation checkpointing on: median seconds and peak CUDA memory. Full fine-tuning
  trains everything but the frozen vision tower; LoRA is r = 16 on the language model's projections.
- `grpo`: one `LatentGRPOTrainer` step (4 completions of `--grpo-tokens` tokens for one prompt, accuracy + format
  rewards, beta 0): seconds, peak CUDA memory, the logged loss and imagery blocks per rollout.

`--dry-run` builds a tiny model of the same architecture (1 text layer, 1 vision block, small widths) with 2 frames at
112 x 112 and runs every section on the CPU, `flash_attention_2` excepted: it checks that the code runs, its numbers
mean nothing.

    python benchmarks/gpu_check.py [--dry-run] [--new-tokens 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
import traceback

import numpy as np
import torch


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from latent_decode import ForceBlocks  # noqa: E402
from real_shapes import (  # noqa: E402
    build_config,
    build_model,
    build_processor,
    dift_trainer,
    lora_config,
    make_row,
    pick_dtype,
    sync,
    video_prompt,
)


CUDA = torch.cuda.is_available()


def peak_gb():
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if CUDA else None


def reset_peak():
    if CUDA:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def median_time(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def section(result, name, fn):
    t0 = time.perf_counter()
    try:
        result[name] = fn()
    except Exception as e:  # one failing section must not hide the others
        result[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=4)[-1500:]}
    result[name]["section_s"] = round(time.perf_counter() - t0, 1)


def flash_vs_sdpa(model, processor, row, new_tokens, device):
    if not CUDA:
        return {"skipped": "flash_attention_2 needs a CUDA GPU"}
    if importlib.util.find_spec("flash_attn") is None:
        return {"skipped": "flash-attn is not installed (gpu_check.sh installs it only from a prebuilt wheel)"}
    inputs = video_prompt(processor, row, device)
    runs = {}
    for impl in ("sdpa", "flash_attention_2"):
        model.set_attn_implementation(impl)
        with torch.no_grad():
            prefill = model(**inputs, use_cache=False).logits[:, -1].float()
            out = model.generate(
                **inputs,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                logits_processor=[ForceBlocks(model.config.latent_start_id)],
                return_dict_in_generate=True,
            )
        runs[impl] = (prefill, out)
    model.set_attn_implementation("sdpa")
    (p_s, o_s), (p_f, o_f) = runs["sdpa"], runs["flash_attention_2"]
    start = inputs["input_ids"].shape[1]
    a, b = o_s.sequences[0, start:], o_f.sequences[0, start:]
    differ = (a != b).nonzero()
    n_slots = min(o_s.latents[0].shape[0], o_f.latents[0].shape[0])
    la, lb = o_s.latents[0][:n_slots].float(), o_f.latents[0][:n_slots].float()
    return {
        "tokens_equal": bool(torch.equal(a, b)),
        "first_differing_step": int(differ[0]) if len(differ) else None,
        "imagery_blocks": [int(o_s.imagery_blocks[0]), int(o_f.imagery_blocks[0])],
        "latent_max_abs_diff": round(float((la - lb).abs().max()), 5) if n_slots else None,
        "latent_min_cos": round(float(torch.nn.functional.cosine_similarity(la, lb, dim=-1).min()), 5)
        if n_slots
        else None,
        "prefill_logits_max_abs_diff": round(float((p_s - p_f).abs().max()), 4),
        "prefill_logits_scale": round(float(p_s.abs().max()), 4),
        "prefill_argmax_equal": bool(torch.equal(p_s.argmax(-1), p_f.argmax(-1))),
    }


def decode(model, processor, row, new_tokens, repeats, device):
    from transformers import GenerationMixin

    processor.tokenizer.padding_side = "left"
    result = {}
    gen = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": row["question"]}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    for batch in (1, 8):
        inputs = processor(text=[text] * batch, videos=[row["frames"]] * batch, return_tensors="pt", padding=True)
        inputs = inputs.to(device)
        reset_peak()
        with torch.no_grad():
            t_stock = median_time(lambda inputs=inputs: GenerationMixin.generate(model, **inputs, **gen), repeats)
            t_latent = median_time(lambda inputs=inputs: model.generate(**inputs, **gen), repeats)
        result[f"bs{batch}"] = {
            "stock_tokens_per_s": round(batch * new_tokens / t_stock, 2),
            "latent_tokens_per_s": round(batch * new_tokens / t_latent, 2),
            "latent_over_stock_time": round(t_latent / t_stock, 3),
            "prompt_len": int(inputs["input_ids"].shape[1]),
            "peak_gb": peak_gb(),
        }
    return result


def dift(model, processor, row, repeats, lora):
    with tempfile.TemporaryDirectory() as out:
        trainer, batch = dift_trainer(model, processor, row, out, peft_config=lora_config() if lora else None)
        m = trainer.model
        m.train()
        params = [p for p in m.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-6)
        losses = []

        def step():
            loss = trainer.compute_loss(m, dict(batch))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))

        reset_peak()
        t = median_time(step, repeats)
        result = {
            "step_s": round(t, 3),
            "peak_gb": peak_gb(),
            "trainable_m": round(sum(p.numel() for p in params) / 1e6, 1),
            "seq_len": int(batch["input_ids"].shape[1]),
            "loss_first": round(losses[0], 4),
        }
        opt.state.clear()  # free the AdamW state before the next section
        m.zero_grad(set_to_none=True)
        if lora:
            m.unload()  # the LoRA layers out again; the base model stays as it was
        m.gradient_checkpointing_disable()
    reset_peak()
    return result


def grpo(model, processor, frames, size, new_tokens):
    from datasets import Dataset

    from thinker4d.rewards import accuracy_reward, format_reward
    from thinker4d.trainers import LatentGRPOConfig, LatentGRPOTrainer

    rng = np.random.default_rng(0)
    rows = [
        {
            "id": f"clip{i}/camera_motion/0",
            "question": "How does the camera move between the first and the last frame?",
            "options": ["Pan Left", "Pan Right", "Tilt Up", "Tilt Down"],
            "answer": "B",
            "frames": [(rng.random((size, size, 3)) * 255).astype(np.uint8) for _ in range(frames)],
            "fps": 2.0,
        }
        for i in range(2)
    ]
    with tempfile.TemporaryDirectory() as out:
        args = LatentGRPOConfig(
            output_dir=out,
            max_steps=1,
            per_device_train_batch_size=4,
            num_generations=4,
            max_completion_length=new_tokens,
            learning_rate=1e-6,
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            use_cpu=not CUDA,
            bf16=CUDA,
            beta=0.0,
            disable_tqdm=True,
            dataloader_num_workers=0,
            seed=0,
        )
        trainer = LatentGRPOTrainer(
            model,
            reward_funcs=[accuracy_reward, format_reward],
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=processor,
        )
        reset_peak()
        sync()
        t0 = time.perf_counter()
        trainer.train()
        sync()
        seconds = time.perf_counter() - t0
        logs = next(h for h in trainer.state.log_history if "loss" in h)
    return {
        "step_s": round(seconds, 2),
        "peak_gb": peak_gb(),
        "loss": logs["loss"],
        "imagery_blocks_mean": logs.get("imagery/blocks_mean"),
        "completion_tokens": new_tokens,
        "num_generations": 4,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny widths on the CPU: checks that the code runs")
    parser.add_argument("--new-tokens", type=int, default=64, help="decode and parity length")
    parser.add_argument("--grpo-tokens", type=int, default=128, help="GRPO completion length")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sections", default="flash_vs_sdpa,decode,dift_full,dift_lora,grpo")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import thinker4d

    device = "cpu" if args.dry_run or not CUDA else "cuda"
    if args.dry_run:
        frames, size, new_tokens, grpo_tokens, repeats = 2, 112, 8, 8, 1
    else:
        frames, size, new_tokens, grpo_tokens, repeats = 8, 448, args.new_tokens, args.grpo_tokens, args.repeats
    t0 = time.perf_counter()
    processor = build_processor()
    if args.dry_run:
        config = build_config(
            processor,
            layers=1,
            vision_depth=1,
            vision_overrides=dict(hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=128),
            vocab_size=len(processor.tokenizer) + 8,
            hidden_size=128,
            intermediate_size=256,
            num_attention_heads=2,
            num_key_value_heads=1,
            rope_parameters={"rope_type": "default", "mrope_section": [8, 12, 12], "rope_theta": 1000000.0},
        )
    else:
        config = build_config(processor)
    dtype = pick_dtype(device) if device == "cuda" else torch.float32
    with torch.device(device):
        base = build_model(config, dtype)
    model, processor = thinker4d.from_base(base, processor, latent_size=4)
    model.eval()
    row = make_row(frames, size, imagery=2)
    result = {
        "shape": {
            "name": "tiny dry run" if args.dry_run else "Qwen2.5-VL-3B",
            "params_b": round(model.num_parameters() / 1e9, 3),
            "dtype": str(dtype).removeprefix("torch."),
            "frames": frames,
            "size": size,
            "imagery_blocks": 2,
        },
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "versions": {
            m: __import__(m).__version__ for m in ("torch", "transformers", "trl", "peft", "accelerate", "datasets")
        },
        "flash_attn": getattr(__import__("flash_attn"), "__version__", "?")
        if importlib.util.find_spec("flash_attn")
        else None,
        "build_s": round(time.perf_counter() - t0, 1),
    }
    wanted = set(args.sections.split(","))
    steps = {
        "flash_vs_sdpa": lambda: flash_vs_sdpa(model, processor, row, new_tokens, device),
        "decode": lambda: decode(model, processor, row, new_tokens, repeats, device),
        "dift_full": lambda: dift(model, processor, row, repeats, lora=False),
        "grpo": lambda: grpo(model, processor, frames, size, grpo_tokens),
        "dift_lora": lambda: dift(model, processor, row, repeats, lora=True),
    }
    for name, fn in steps.items():  # LoRA last: it wraps the model
        if name in wanted:
            section(result, name, fn)
            model.eval()
    result["total_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
