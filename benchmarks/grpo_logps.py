"""Log-prob recompute cost: thinker4d's latent re-insertion vs trl's stock recompute, same completions, same run.

Both use trl's chunked log-prob kernel; thinker4d additionally places the rollout latents at the slots, computes the
latent-path positions and applies the decoder's masks. Prints one JSON object; `logp_ratio_vs_trl` is the
forward+backward (policy) time ratio, the target is <= 1.15.

    .venv/bin/python benchmarks/grpo_logps.py [--backbone qwen2_5_vl] [--hidden 256] [--layers 4] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from transformers import LogitsProcessorList
from trl.trainer.utils import add_fused_lm_head

import thinker4d
from thinker4d.prompting import build_messages, video_kwargs
from thinker4d.tiny import build_tiny_model, build_tiny_processor
from thinker4d.trainers.latent_logps import latent_per_token_logps


class _BiasStart:
    def __init__(self, start_id):
        self.start_id = start_id

    def __call__(self, input_ids, scores):
        scores = scores.clone()
        scores[:, self.start_id] += 2.5
        return scores


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--backbone", default="qwen2_5_vl")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    torch.manual_seed(0)
    proc = build_tiny_processor(a.backbone)
    base = build_tiny_model(a.backbone, proc, hidden_size=a.hidden, num_hidden_layers=a.layers, num_attention_heads=4)
    model, proc = thinker4d.from_base(base, proc)
    start_id, pad_id, end_id, _ = model.latent_ids
    rng = np.random.default_rng(0)
    videos = [(rng.random((4, 56, 56, 3)) * 255).astype(np.uint8) for _ in range(a.batch)]
    texts = [
        proc.apply_chat_template(
            build_messages(f"Q{i}?", ["a", "b", "c", "d"]), tokenize=False, add_generation_prompt=True
        )
        for i in range(a.batch)
    ]
    proc.tokenizer.padding_side = "left"
    enc = proc(text=texts, padding=True, return_tensors="pt", **video_kwargs(proc, videos, 2.0))
    with torch.no_grad():
        out = model.generate(**enc, do_sample=True, max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens,
                             return_dict_in_generate=True, logits_processor=LogitsProcessorList([_BiasStart(start_id)]))  # fmt: skip
    seq = out.sequences
    keep = seq.shape[1] - enc["input_ids"].shape[1]
    attention = torch.cat([enc["attention_mask"], torch.ones_like(seq[:, -keep:])], dim=1)
    mm = {k: enc[k] for k in ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts") if k in enc}
    add_fused_lm_head(model, temperature=1.0, outputs=("log_probs", "entropy"))
    model.train()

    def trl_stock():
        labels = seq.masked_fill(attention == 0, -100)
        labels[:, :-keep] = -100
        mm_types = torch.zeros_like(seq, dtype=torch.int)
        mm_types[seq == model.config.video_token_id] = 2
        o = model(input_ids=seq, attention_mask=attention, labels=labels, fused_lm_head=True,
                  mm_token_type_ids=mm_types, **mm)  # fmt: skip
        return o.log_probs[:, -keep:], o.entropy[:, -keep:]

    def latent():
        return latent_per_token_logps(model, seq, attention, keep, out.latents, compute_entropy=True, **mm)

    def timed(fn, backward):
        times = []
        for i in range(a.repeats + 1):
            model.zero_grad(set_to_none=True)
            t = time.perf_counter()
            if backward:
                lp, _ = fn()
                lp.sum().backward()
            else:
                with torch.no_grad():
                    fn()
            if i:  # the first call warms up
                times.append(time.perf_counter() - t)
        return float(np.median(times))

    res = {}
    for backward in (True, False):
        # interleave to share machine noise
        t_trl, t_lat = timed(trl_stock, backward), timed(latent, backward)
        key = "" if backward else "_no_grad"
        res[f"trl_s{key}"], res[f"latent_s{key}"] = t_trl, t_lat
        res[f"logp_ratio_vs_trl{key}"] = t_lat / t_trl
    res.update(
        backbone=a.backbone, hidden=a.hidden, layers=a.layers, batch=a.batch, completion_tokens=keep,
        latent_slots=int((seq == pad_id).sum()), imagery_blocks=int((seq == start_id).sum()),
        target="logp_ratio_vs_trl <= 1.15", threads=torch.get_num_threads(),
    )  # fmt: skip
    print(json.dumps(res))


if __name__ == "__main__":
    main()
