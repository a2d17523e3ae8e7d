"""`thinker4d demo`: latent decoding on a tiny random-weight model built in-process (offline, seconds).

It shows the mechanism, not a trained skill: the model has random weights, so a logits bias makes it open imagery
blocks at a few steps. Inside each block the model feeds its own hidden state back K times; the printout marks the
blocks and reports the norms of the fed-back latents. `--config FILE` (or `--config=FILE`) is a YAML file whose keys
are these flags; flags override it. Every flag takes `_` or `-` alike.
"""

from __future__ import annotations

import argparse

import numpy as np

from .options import accept_both_spellings, add_config_option, parse_verb_args


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        formatter_class=argparse.RawDescriptionHelpFormatter,
        prog="thinker4d demo",
        description=__doc__,
        epilog="example: thinker4d demo --backbone qwen3_vl",
    )
    add_config_option(parser)
    parser.add_argument("--backbone", default="qwen2_5_vl", choices=["qwen2_5_vl", "qwen3_vl"])
    parser.add_argument("--latent-size", type=int, default=4, help="K, latent slots per imagery block")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--imagery-at", type=int, nargs="*", default=[2, 18], help="generated steps that open a block")
    parser.add_argument("--seed", type=int, default=0)
    return accept_both_spellings(parser)


def _parse(argv: list[str] | None):
    return parse_verb_args(make_parser(), argv, "demo")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    import thinker4d
    from thinker4d.prompting import build_messages, video_kwargs
    from thinker4d.tiny import build_tiny_model, build_tiny_processor

    torch.manual_seed(args.seed)
    processor = build_tiny_processor(args.backbone)
    model, processor = thinker4d.from_base(
        build_tiny_model(args.backbone, processor, seed=args.seed), processor, latent_size=args.latent_size
    )
    start_id = model.config.latent_start_id

    class OpenImageryAt(LogitsProcessor):
        def __init__(self):
            self.start_len = None

        def __call__(self, input_ids, scores):
            self.start_len = self.start_len or input_ids.shape[1]
            if input_ids.shape[1] - self.start_len in args.imagery_at:
                scores[:, start_id] += 1e4
            return scores

    frames = (np.random.default_rng(args.seed).random((4, 56, 56, 3)) * 255).astype("uint8")
    messages = build_messages("How does the camera move?", ["Pan Left", "Pan Right", "Tilt Up", "Tilt Down"])
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], return_tensors="pt", **video_kwargs(processor, [frames], 2.0))
    out = model.generate(
        **inputs,
        max_new_tokens=args.max_new_tokens,
        do_sample=False,
        logits_processor=LogitsProcessorList([OpenImageryAt()]),
        return_dict_in_generate=True,
    )
    new = out.sequences[0, inputs["input_ids"].shape[1] :]
    decoded = processor.tokenizer.decode(new, skip_special_tokens=False)
    decoded = decoded.replace("<|latent_start|>", "\n  [imagery: ").replace("<|latent_end|>", "]\n  ")
    decoded = decoded.replace("<|latent_pad|>", "z ")
    print(f"thinker4d {thinker4d.__version__} demo: tiny random {args.backbone}, K = {args.latent_size}")
    print(f"prompt: {inputs['input_ids'].shape[1]} tokens (video of {len(frames)} frames)")
    print("generated (random weights; imagery blocks marked, each z is a fed-back hidden state):")
    print("  " + decoded)
    latents = out.latents[0]
    print(f"imagery blocks: {int(out.imagery_blocks[0])}, latent vectors fed back: {tuple(latents.shape)}")
    if len(latents):
        print("latent norms: " + ", ".join(f"{n:.2f}" for n in latents.norm(dim=-1).tolist()))
    return 0
