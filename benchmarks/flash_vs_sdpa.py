"""flash-attention 2 vs sdpa for latent decoding of a Hub-saved thinker4d model, in bf16 on one GPU.

Paper: https://huggingface.co/papers/2605.05997. Claim checked: the remote-code model
(`AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True, attn_implementation=...)`) generates the
same greedy tokens, imagery blocks forced at fixed steps, with `flash_attention_2` as with `sdpa`; the ratio of their
generation times is reported (same run, same device). Needs a CUDA GPU and `pip install flash-attn`.

    python benchmarks/flash_vs_sdpa.py [--backbone qwen2_5_vl|qwen3_vl] [--hidden 512] [--layers 4] [--new 64]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time

import torch
from transformers import AutoModelForImageTextToText, LogitsProcessor, LogitsProcessorList

import thinker4d
from thinker4d.hub import pick_attn_implementation, save_for_hub
from thinker4d.tiny import build_tiny_model, build_tiny_processor


class ForceImageryAt(LogitsProcessor):
    def __init__(self, start_id, steps):
        self.start_id, self.steps, self.start_len = start_id, set(steps), None

    def __call__(self, input_ids, scores):
        self.start_len = input_ids.shape[1] if self.start_len is None else self.start_len
        if input_ids.shape[1] - self.start_len in self.steps:
            scores[:] = -float("inf")
            scores[:, self.start_id] = 0.0
        return scores


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--backbone", default="qwen2_5_vl", choices=["qwen2_5_vl", "qwen3_vl"])
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--new", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    if not torch.cuda.is_available() or importlib.util.find_spec("flash_attn") is None:
        print(json.dumps({"skipped": "needs a CUDA GPU and flash-attn installed"}))
        return 1

    processor = build_tiny_processor(args.backbone)
    base = build_tiny_model(
        args.backbone,
        processor,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads // 2,
    )
    model, processor = thinker4d.from_base(base, processor)
    folder = tempfile.mkdtemp(prefix="thinker4d-flash-")
    save_for_hub(model, processor, folder, card=False)

    processor.tokenizer.padding_side = "left"
    prompts = ["Which way does the camera pan?", "Is the red car moving away from the camera, or towards it?"]
    messages = [[{"role": "user", "content": [{"type": "text", "text": t}]}] for t in prompts]
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt", padding=True
    ).to("cuda")

    results = {}
    for attn in ("sdpa", "flash_attention_2"):
        m = AutoModelForImageTextToText.from_pretrained(
            folder, trust_remote_code=True, dtype=torch.bfloat16, attn_implementation=attn
        ).to("cuda")
        procs = LogitsProcessorList([ForceImageryAt(m.config.latent_start_id, (1, 20, 40))])
        kwargs = dict(max_new_tokens=args.new, do_sample=False, return_dict_in_generate=True, output_logits=True)
        out = m.generate(**inputs, logits_processor=procs, **kwargs)  # warm-up and the tokens compared
        times = []
        for _ in range(args.repeats):
            procs = LogitsProcessorList([ForceImageryAt(m.config.latent_start_id, (1, 20, 40))])
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            m.generate(**inputs, logits_processor=procs, **kwargs)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        results[attn] = {"out": out, "seconds": min(times), "impl": m.config._attn_implementation}
        del m
        torch.cuda.empty_cache()

    a, b = results["sdpa"]["out"], results["flash_attention_2"]["out"]
    equal = a.sequences.shape == b.sequences.shape and bool((a.sequences == b.sequences).all())
    first_diff = None
    if not equal:
        n = min(a.sequences.shape[1], b.sequences.shape[1])
        diff = (a.sequences[:, :n] != b.sequences[:, :n]).any(0).nonzero()
        first_diff = int(diff[0]) - inputs["input_ids"].shape[1] if len(diff) else n
    logit_diff = float((a.logits[0].float() - b.logits[0].float()).abs().max())
    print(
        json.dumps(
            {
                "backbone": args.backbone,
                "device": torch.cuda.get_device_name(),
                "picked_by_helper": pick_attn_implementation(),
                "loaded_impls": [results[k]["impl"] for k in ("sdpa", "flash_attention_2")],
                "greedy_tokens_equal": equal,
                "first_differing_new_token": first_diff,
                "imagery_blocks": [a.imagery_blocks.tolist(), b.imagery_blocks.tolist()],
                "max_abs_logit_diff_step0": logit_diff,
                "sdpa_s": results["sdpa"]["seconds"],
                "flash_s": results["flash_attention_2"]["seconds"],
                "flash_over_sdpa_time_ratio": results["flash_attention_2"]["seconds"] / results["sdpa"]["seconds"],
            }
        )
    )
    return 0 if equal else 2


if __name__ == "__main__":
    sys.exit(main())
