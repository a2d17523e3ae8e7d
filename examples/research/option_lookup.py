"""How fast a tiny text-only model learns to read a multiple-choice list (examples/research/README.md).

The quickstart's tiny model must find the option whose text its reasoning named and give that option's (shuffled)
letter; the option scan (`--answer scan`) is the quickstart's CoT ending. This script isolates that skill,
without any video: a plain 2-layer `Qwen2ForCausalLM` of the quickstart's text size is
trained on "Which option says X?" rows drawn fresh every step, with the loss on the answer only. Every 200 steps the
letter it predicts after the gold answer up to its first " =" is scored on 200 held-out rows (`--held`; teacher-forced:
`letter_accuracy`); at the end the same rows are answered by greedy decoding from the prompt alone and the letter after
the first " = " of the answer is scored (`generated_letter_accuracy`). For `--answer scan` (the quickstart's option
scan, "It says Tilt Up. A. Pan Left? No. B. Tilt Up? Yes = B.") only the generated score means anything: teacher
forcing hands the model the scan, after which the letter is a copy.

```bash
thinker4d quickstart --output_dir qs                      # once: its init/model holds the tokenizer used here
python examples/research/option_lookup.py --tokenizer qs/init/model --answer full --seed 0
```

It prints one JSON line per evaluation and a final JSON summary. Runs take 1-2 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import time

from thinker4d.data.cot import option_scan
from thinker4d.prompting import PROMPT_SUFFIX, render_options


CAMERA_TEXTS = ["Pan Left", "Pan Right", "Tilt Up", "Tilt Down"]
DISTANCE_TEXTS = ["Closer", "Farther", "About the same distance"]
ANSWERS = {
    "plain": "It says {text} = {letter}.",
    "imend": "It says {text} = {letter}.<|im_end|>",
    "letter_tag": "<think>It says {text} = {letter}.</think><answer>{letter}</answer><|im_end|>",
    "full": "<think>It says {text} = {letter}.</think><answer>{letter}. {text}</answer><|im_end|>",
    # The quickstart's option scan (thinker4d.data.cot.option_scan): "It says Tilt Up. A. Pan Left? No. B. Tilt Up?
    # Yes = B.</think><answer>B. Tilt Up</answer>"
    "scan": "<think>It says {text}. {scan}<|im_end|>",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokenizer", required=True, help="a folder with the quickstart's tokenizer (OUT/init/model)")
    p.add_argument(
        "--texts", choices=["camera", "all"], default="all", help="4 camera texts, or those and 3 distance texts"
    )
    p.add_argument(
        "--prompt",
        choices=["short", "chat"],
        default="chat",
        help="question and options only, or with the system message and the instruction suffix of thinker4d.prompting",
    )
    p.add_argument("--answer", choices=sorted(ANSWERS), default="full", help="the trained answer format")
    p.add_argument(
        "--noise-tokens",
        type=int,
        default=0,
        help="random byte-level tokens put where the quickstart's "
        "video sits (between <|vision_start|> and <|vision_end|>, before the question), new for every row",
    )
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--show-misses", action="store_true", help="print every held-out row the greedy answer gets wrong")
    p.add_argument("--held", type=int, default=200, help="held-out rows scored")
    p.add_argument("--pool", type=int, default=0, help="draw batches from a fixed pool of this many rows (0: fresh)")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.steps < 1 or args.held < 1 or args.pool < 0 or args.noise_tokens < 0 or args.heads % args.kv_heads:
        raise SystemExit(
            "Need --steps >= 1, --held >= 1, --pool >= 0, --noise-tokens >= 0 and --heads a multiple of --kv-heads."
        )
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    texts = CAMERA_TEXTS + (DISTANCE_TEXTS if args.texts == "all" else [])

    def encode(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    letter_ids = {L: encode(f" {L}")[-1] for L in "ABCD"}
    eq_id = encode(" =")[-1]

    def row(rng):
        options = rng.sample(texts, 4)
        k = rng.randrange(4)
        letter, text = "ABCD"[k], options[k]
        user = f"Which option says {text}?\n" + "\n".join(render_options(options))
        head = "<|vision_start|>" if args.noise_tokens else ""
        if args.prompt == "chat":
            head = f"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{head}"
            user = f"{user}\n{PROMPT_SUFFIX}"
        noise = [rng.randrange(256) for _ in range(args.noise_tokens)]  # byte-level symbols, ids 0-255
        if args.noise_tokens:
            user = "<|vision_end|>" + user
        prompt = encode(head) + noise + encode(user + "\n")
        answer = encode(ANSWERS[args.answer].format(text=text, letter=letter, scan=option_scan(options, letter)))
        return prompt, answer, letter

    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=1024,
        rope_theta=10000.0,
        tie_word_embeddings=False,
    )
    model = Qwen2ForCausalLM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.98), weight_decay=0.01)
    warm = 80  # learning-rate warm-up steps, then cosine to 0
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps))
    )
    held_rng = random.Random(999)
    held = [row(held_rng) for _ in range(args.held)]
    pool = [row(random.Random(10**6 + i)) for i in range(args.pool)]
    rng = random.Random(1 + args.seed)

    @torch.no_grad()
    def letter_accuracy() -> float:
        model.eval()
        hits = 0
        for prompt, answer, letter in held:
            ids = prompt + answer
            cut = len(prompt) + answer.index(eq_id) + 1  # the letter's position
            logits = model(torch.tensor([ids[:cut]])).logits[0, -1]
            hits += max("ABCD", key=lambda x: logits[letter_ids[x]].item()) == letter
        model.train()
        return hits / len(held)

    @torch.no_grad()
    def generated_letter_accuracy() -> float:
        """Greedy decoding from the prompt alone; the letter after the first " = " of the decoded answer."""
        model.eval()
        hits = 0
        budget = max(len(a) for _, a, _ in held) + 8
        for prompt, _, letter in held:
            out = model.generate(
                torch.tensor([prompt]),
                max_new_tokens=budget,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
            )
            text = tok.decode(out[0, len(prompt) :])
            found = re.search(r"= ([A-D])\.", text)
            right = bool(found) and found.group(1) == letter
            hits += right
            if args.show_misses and not right:
                print("MISS", letter, repr(tok.decode(prompt[-40:])), repr(text), flush=True)
        model.train()
        return hits / len(held)

    history, t0 = [], time.time()
    for step in range(1, args.steps + 1):
        batch = [rng.choice(pool) if pool else row(rng) for _ in range(16)]
        width = max(len(p) + len(a) for p, a, _ in batch)
        ids = torch.full((16, width), tok.pad_token_id)
        labels = torch.full((16, width), -100)
        mask = torch.zeros((16, width), dtype=torch.long)
        for i, (p, a, _) in enumerate(batch):
            ids[i, : len(p) + len(a)] = torch.tensor(p + a)
            labels[i, len(p) : len(p) + len(a)] = torch.tensor(a)
            mask[i, : len(p) + len(a)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if step % 200 == 0 or step == args.steps:
            point = {
                "step": step,
                "loss": round(loss.item(), 4),
                "letter_accuracy": letter_accuracy(),
                "seconds": round(time.time() - t0, 1),
            }
            history.append(point)
            print(json.dumps(point), flush=True)
    summary = {
        "settings": vars(args),
        "final_letter_accuracy": history[-1]["letter_accuracy"],
        "generated_letter_accuracy": generated_letter_accuracy(),
        "history": history,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
