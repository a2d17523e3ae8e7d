"""Questions per second of `thinker4d eval` at batch 8 over batch 1, same tiny model, same questions, same run.

Prints one JSON object; the key `batch8_over_batch1` is the claim (target >= 4). The model is a random tiny
Qwen2.5-VL with hidden size 256 and 4 layers, so compute is not only Python overhead; every completion is forced to
`--max-new-tokens` tokens (min_new_tokens) so both batch sizes generate the same amount. The defaults (128 new
tokens, 2 small frames) make decoding dominate, as in real runs where chain-of-thought completions are long;
with short completions the prompt prefill, whose cost grows with the batch, dominates and the ratio is lower
(32 new tokens, 4 frames: about 2.8x on a loaded 2-core CPU).

    python benchmarks/eval_throughput.py [--questions 32] [--max-new-tokens 32] [--backbone qwen2_5_vl]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--backbone", default="qwen2_5_vl")
    parser.add_argument("--thinker4d", action="store_true", help="convert with thinker4d.from_base (latent decoding)")
    args = parser.parse_args()

    from thinker4d.eval import EvalConfig
    from thinker4d.eval.runner import evaluate_model
    from thinker4d.eval.tasks import Example, SynthDSR
    from thinker4d.tiny import build_tiny_model, build_tiny_processor

    processor = build_tiny_processor(args.backbone)
    model = build_tiny_model(args.backbone, processor, hidden_size=256, num_hidden_layers=4)
    if args.thinker4d:
        import thinker4d

        model, processor = thinker4d.from_base(model, processor, latent_size=4)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device).eval()
    model.generation_config.min_new_tokens = args.max_new_tokens

    rng = np.random.default_rng(0)
    clips = [(rng.random((args.frames, 56, 56, 3)) * 255).astype(np.uint8) for _ in range(8)]
    options = ["A. Pan Left", "B. Pan Right", "C. Tilt Up", "D. Tilt Down"]
    examples = [
        Example(
            index=i,
            id=str(i),
            task="camera_motion",
            question=f"Question {i}: how does the camera move?",
            options=options,
            answer="ABCD"[i % 4],
            frames=(lambda c=clips[i % 8]: (c, 2.0)),
        )
        for i in range(args.questions)
    ]
    task = SynthDSR()
    result = {"device": device, "questions": args.questions, "max_new_tokens": args.max_new_tokens}
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up (allocator, kernels)
        warm = EvalConfig(batch_size=8, max_new_tokens=args.max_new_tokens)
        evaluate_model(model, processor, task, examples[:8], f"{tmp}/warm", warm)
        for bs in (1, 8):
            cfg = EvalConfig(batch_size=bs, max_new_tokens=args.max_new_tokens)
            start = time.perf_counter()
            summary = evaluate_model(model, processor, task, examples, f"{tmp}/b{bs}", cfg)
            elapsed = time.perf_counter() - start
            assert summary["total"] == args.questions and summary["errors"] == 0, summary["error_counts"]
            result[f"batch{bs}_questions_per_s"] = round(args.questions / elapsed, 3)
    result["batch8_over_batch1"] = round(result["batch8_questions_per_s"] / result["batch1_questions_per_s"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
