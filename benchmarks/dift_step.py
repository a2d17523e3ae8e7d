"""DIFT step cost against a plain SFT step on the same model and batch, and collator throughput. Prints one JSON object.

Claims measured: a DIFT step with cached imagery targets costs <= 1.10x an SFT step; the collator turns
>= 1,000 rows/s of 8-frame rows into batches on 2 cores.

- `step_ratio_cached` / `step_ratio_uncached`: median time of a DIFT training step (forward, loss, backward, AdamW step)
  with cached targets (`latent_embeds`) / with overlays through the frozen vision tower, over the median time of an SFT
  step (stock forward with `labels`, same ids incl. the latent tokens, same video) on the same model, in this run.
- `collator_rows_per_s`: `DIFTDataCollator.collate` on already-encoded rows (what the collator does per batch when
  rows were encoded once with `pre_encode` / `dataset.map`), batches of `--batch-size`.
- `encode_rows_per_s`: the one-off per-row work (chat template, tokeniser, video processor, image processor) that
  `encode_row` does; it runs in `dataset.map(num_proc=...)` or in DataLoader workers, not per step.

Usage: `python benchmarks/dift_step.py [--backbone qwen2_5_vl] [--hidden 256] [--layers 4] [--frame-size 112]`
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="qwen2_5_vl", choices=["qwen2_5_vl", "qwen3_vl"])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--frame-size", type=int, default=112)
    parser.add_argument("--imagery", type=int, default=2, help="overlays (imagery blocks) per row")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    cli = parser.parse_args()
    torch.set_num_threads(cli.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import datasets
    from PIL import Image

    import thinker4d
    from thinker4d.tiny import build_tiny_model, build_tiny_processor
    from thinker4d.trainers import DIFTConfig, DIFTDataCollator, DIFTTrainer
    from thinker4d.trainers.dift_data import cache_imagery_targets

    datasets.disable_progress_bars()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    processor = build_tiny_processor(cli.backbone, max_pixels=cli.frame_size * cli.frame_size)
    heads = max(2, cli.hidden // 64)
    base = build_tiny_model(
        cli.backbone,
        processor,
        hidden_size=cli.hidden,
        num_hidden_layers=cli.layers,
        num_attention_heads=heads,
        num_key_value_heads=heads // 2 if heads >= 4 else heads,
        vision_hidden_size=64,
    )
    model, processor = thinker4d.from_base(base, processor, latent_size=4)
    model.to(device)

    rng = np.random.default_rng(0)

    def img(size):
        return Image.fromarray((rng.random((size, size, 3)) * 255).astype("uint8"))

    rows = [
        {
            "id": f"clip{i}/camera_motion/0",
            "frames": [img(cli.frame_size) for _ in range(cli.frames)],
            "fps": 2.0,
            "question": "How does the camera move between the first and the last frame?",
            "options": ["A. Pan Left", "B. Pan Right", "C. Tilt Up", "D. Tilt Down"],
            "answer": "B",
            "cot": "<think>The shelf slides left in view"
            + " <imagery> so the camera turns right" * cli.imagery
            + ".</think><answer>B. Pan Right</answer>",
            "imagery": [img(cli.frame_size) for _ in range(cli.imagery)],
        }
        for i in range(max(16, cli.batch_size))
    ]

    # ---------------------------------------------------------------- collator
    collator = DIFTDataCollator(processor, latent_size=4)
    t0 = time.perf_counter()
    encoded = [collator.encode_row(r) for r in rows]
    encode_rows_per_s = len(rows) / (time.perf_counter() - t0)
    n_batches, bs = 200, 8
    t0 = time.perf_counter()
    for b in range(n_batches):
        collator.collate([encoded[(b * bs + j) % len(encoded)] for j in range(bs)])
    collator_rows_per_s = n_batches * bs / (time.perf_counter() - t0)

    # ---------------------------------------------------------------- steps
    with tempfile.TemporaryDirectory() as out:
        args = DIFTConfig(
            output_dir=out,
            report_to="none",
            activation_checkpointing=False,
            use_cpu=device == "cpu",
            learning_rate=1e-5,
            warmup_steps=0,
            bf16=False,
        )
        ds = datasets.Dataset.from_list(rows[: cli.batch_size])
        trainer = DIFTTrainer(model=model, args=args, train_dataset=ds, processing_class=processor)
        cached_ds = cache_imagery_targets(trainer.train_dataset, model, processor)
        batch_uncached = collator([trainer.train_dataset[i] for i in range(cli.batch_size)])
        batch_cached = collator([cached_ds[i] for i in range(cli.batch_size)])
        trainer.create_optimizer()
        opt = trainer.optimizer
        model.train()

        def to_dev(batch):
            return {k: v.to(device) for k, v in batch.items()}

        sft_batch = to_dev({k: v for k, v in batch_uncached.items() if not k.startswith("imagery_")})
        dift_cached, dift_uncached = to_dev(batch_cached), to_dev(batch_uncached)

        def sft_step():
            model(**sft_batch, use_cache=False).loss.backward()

        def dift_step(batch):
            return lambda: trainer.compute_loss(model, dict(batch)).backward()

        steps = {"sft": sft_step, "cached": dift_step(dift_cached), "uncached": dift_step(dift_uncached)}
        times = {k: [] for k in steps}
        for i in range(cli.steps + 2):
            for name, fn in steps.items():  # interleaved, so drift in machine load hits all three alike
                if device == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                fn()
                opt.step()
                opt.zero_grad(set_to_none=True)
                if device == "cuda":
                    torch.cuda.synchronize()
                if i >= 2:
                    times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        json.dumps(
            {
                "step_ratio_cached": round(med["cached"] / med["sft"], 3),
                "step_ratio_uncached": round(med["uncached"] / med["sft"], 3),
                "collator_rows_per_s": round(collator_rows_per_s, 1),
                "encode_rows_per_s": round(encode_rows_per_s, 1),
                "sft_step_s": round(med["sft"], 4),
                "dift_cached_step_s": round(med["cached"], 4),
                "dift_uncached_step_s": round(med["uncached"], 4),
                "setup": {
                    "backbone": cli.backbone,
                    "hidden": cli.hidden,
                    "layers": cli.layers,
                    "frames_per_row": cli.frames,
                    "frame_size": cli.frame_size,
                    "imagery_per_row": cli.imagery,
                    "step_batch_size": cli.batch_size,
                    "collate_batch_size": bs,
                    "seq_len": int(batch_uncached["input_ids"].shape[1]),
                    "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
                    "threads": cli.threads,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
