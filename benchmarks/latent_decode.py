"""Latent decoding throughput vs transformers' stock `generate`, same model, prompts and run.

Prints one JSON object. `ratio_vs_stock_bs{1,8}` = latent-loop tokens/s over stock tokens/s with no imagery opened;
`ratio_imagery_vs_stock_bs{1,8}` = the same with two imagery blocks forced per row; `batch8_over_batch1` = latent-loop
tokens/s at batch 8 over batch 1. Timings are medians of several repeats after a warm-up.

    python benchmarks/latent_decode.py [--hidden 512 --layers 8 --new-tokens 64 --repeats 3 --device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from transformers import GenerationMixin, LogitsProcessor, LogitsProcessorList

import thinker4d
from thinker4d.tiny import build_tiny_model, build_tiny_processor


class ForceBlocks(LogitsProcessor):
    """Open an imagery block at generated steps 4 and 24 in every row."""

    def __init__(self, start_id, steps=(4, 24)):
        self.start_id, self.steps, self.start_len = start_id, set(steps), None

    def __call__(self, input_ids, scores):
        if self.start_len is None:
            self.start_len = input_ids.shape[1]
        if input_ids.shape[1] - self.start_len in self.steps:
            scores[:] = -float("inf")
            scores[:, self.start_id] = 0.0
        return scores


def make_inputs(processor, batch, device):
    processor.tokenizer.padding_side = "left"
    texts = [
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "text", "text": "Describe the motion. " * (3 + i % 3)}]}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for i in range(batch)
    ]
    return processor(text=texts, return_tensors="pt", padding=True).to(device)


def timed(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--intermediate", type=int, default=None)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--attn", default="sdpa")
    parser.add_argument("--backbone", default="qwen2_5_vl", choices=["qwen2_5_vl", "qwen3_vl"])
    args = parser.parse_args()

    processor = build_tiny_processor(args.backbone)
    base = build_tiny_model(
        args.backbone,
        processor,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        intermediate_size=args.intermediate,
    )
    model, processor = thinker4d.from_base(base, processor)
    model = model.to(device=args.device, dtype=getattr(torch, args.dtype)).eval()
    model.config._attn_implementation = args.attn
    gen = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)
    start_id = model.config.latent_start_id

    result = {
        "model": {"hidden": args.hidden, "layers": args.layers, "params_m": round(model.num_parameters() / 1e6, 2)},
        "device": args.device,
        "dtype": args.dtype,
        "attn": args.attn,
        "new_tokens": args.new_tokens,
        "torch_threads": torch.get_num_threads(),
    }
    tps = {}
    for batch in (1, 8):
        inputs = make_inputs(processor, batch, args.device)
        n_tokens = batch * args.new_tokens
        t_stock = timed(lambda inputs=inputs: GenerationMixin.generate(model, **inputs, **gen), args.repeats)
        t_latent = timed(lambda inputs=inputs: model.generate(**inputs, **gen), args.repeats)

        def with_blocks(inputs=inputs):
            out = model.generate(
                **inputs,
                logits_processor=LogitsProcessorList([ForceBlocks(start_id)]),
                return_dict_in_generate=True,
                **gen,
            )
            assert int(out.imagery_blocks.min()) == 2
            return out

        t_imagery = timed(with_blocks, args.repeats)
        tps[batch] = n_tokens / t_latent
        result[f"stock_tokens_per_s_bs{batch}"] = round(n_tokens / t_stock, 2)
        result[f"latent_tokens_per_s_bs{batch}"] = round(n_tokens / t_latent, 2)
        result[f"latent_imagery_tokens_per_s_bs{batch}"] = round(n_tokens / t_imagery, 2)
        result[f"ratio_vs_stock_bs{batch}"] = round(t_stock / t_latent, 3)
        result[f"ratio_imagery_vs_stock_bs{batch}"] = round(t_stock / t_imagery, 3)
    result["batch8_over_batch1"] = round(tps[8] / tps[1], 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
