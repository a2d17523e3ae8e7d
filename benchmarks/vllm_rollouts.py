"""Rollout throughput of the vLLM latent backend (`thinker4d.vllm.LatentLLM`) vs thinker4d's `latent_generate`, on
the same tiny text model (the one tests_vllm/make_reference.py builds), same prompts, greedy, a fixed number of new
tokens per row (no EOS), imagery blocks opening where the model samples them.

Prints one JSON object: per batch size, tokens/s of each backend (new tokens over wall time, best of the repeats (the machine it ran on is shared; the best run is the least disturbed)
after a warm-up; the vLLM engine's start-up is not counted) and `ratio` = vLLM over `latent_generate`.

Run it with the project's main environment; the vLLM side runs in a second environment (vLLM pins its own torch and
transformers), made by `.ci/vllm-venv.sh`:

    python benchmarks/vllm_rollouts.py [--batch 8 32 --new-tokens 64 --repeats 5 --hidden 128 --layers 2 --threads 1 --vllm-python .ci/venv-vllm/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def prompts(batch: int, seed: int = 0) -> list[list[int]]:
    import torch
    from make_reference import TEXT_VOCAB

    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randint(4, TEXT_VOCAB, (int(n),), generator=generator).tolist()
        for n in torch.randint(4, 16, (batch,), generator=generator)
    ]


def time_latent_generate(model, batch: int, new_tokens: int, repeats: int) -> tuple[float, int]:
    import torch

    import thinker4d

    rows = prompts(batch)
    width = max(map(len, rows))
    input_ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    attention_mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    times, blocks = [], 0
    for i in range(repeats + 1):
        start = time.perf_counter()
        out = thinker4d.latent_generate(
            model,
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0,
        )
        if i:
            times.append(time.perf_counter() - start)
        blocks = int((out[:, width:] == model.config.latent_start_id).sum())
    return batch * new_tokens / min(times), blocks


def vllm_side(model_dir: str, batches: list[int], new_tokens: int, repeats: int) -> dict:
    """Runs in the vLLM environment: tokens/s of LatentLLM per batch size."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    # No pinning of vLLM's threads to chosen cores: the OS schedules both backends alike (on a shared machine a pinned
    # core may be the busy one).
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    from make_reference import START_ID
    from vllm import SamplingParams

    from thinker4d.vllm import LatentLLM

    llm = LatentLLM(
        model_dir,
        dtype="float32",
        enforce_eager=True,
        skip_tokenizer_init=True,
        max_model_len=256,
        kv_cache_memory_bytes=256 << 20,
        seed=0,
    )
    params = SamplingParams(
        max_tokens=new_tokens, min_tokens=new_tokens, temperature=0.0, ignore_eos=True, detokenize=False
    )
    import torch

    result = {"torch_threads": torch.get_num_threads()}  # after vLLM's own CPU thread binding
    for batch in batches:
        rows = prompts(batch)
        times = []
        for i in range(repeats + 1):
            start = time.perf_counter()
            out = llm.generate(rows, params)
            if i:
                times.append(time.perf_counter() - start)
        result[batch] = {
            "tokens_per_s": sum(len(c.token_ids) for c in out) / min(times),
            "blocks_opened": sum(c.token_ids.count(START_ID) for c in out),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=128, help="hidden size of the model (a multiple of 64)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads of each backend")
    parser.add_argument("--vllm-python", default=str(ROOT / ".ci" / "venv-vllm" / "bin" / "python"))
    parser.add_argument("--vllm-side", metavar="MODEL_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # read by the vLLM side's OpenMP runtime at start
    sys.path.insert(0, str(ROOT / "tests_vllm"))
    if args.vllm_side:
        print(json.dumps(vllm_side(args.vllm_side, args.batch, args.new_tokens, args.repeats)))
        return

    if not Path(args.vllm_python).exists():
        sys.exit(
            f"No vLLM environment at {args.vllm_python}: create it with `bash .ci/vllm-venv.sh` or pass --vllm-python."
        )
    import torch
    from make_reference import build_model

    torch.set_num_threads(args.threads)
    model = build_model(hidden_size=args.hidden, num_layers=args.layers)
    model.generation_config.eos_token_id = None  # every row decodes --new-tokens tokens, as ignore_eos does in vLLM
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        command = [args.vllm_python, __file__, "--vllm-side", folder, "--new-tokens", str(args.new_tokens)]
        command += ["--repeats", str(args.repeats), "--batch", *map(str, args.batch)]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": str(args.threads)}
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"The vLLM side failed:\n{done.stderr[-4000:]}")
        vllm_result = json.loads(done.stdout.strip().splitlines()[-1])
    result = {
        "new_tokens": args.new_tokens,
        "hidden": args.hidden,
        "layers": args.layers,
        "device": "cpu",
        "torch_threads_latent_generate": torch.get_num_threads(),
        "torch_threads_vllm": vllm_result["torch_threads"],
    }
    for batch in args.batch:
        reference, blocks = time_latent_generate(model, batch, args.new_tokens, args.repeats)
        fast = vllm_result[str(batch)]
        result[f"bs{batch}"] = {
            "latent_generate_tokens_per_s": round(reference, 1),
            "vllm_tokens_per_s": round(fast["tokens_per_s"], 1),
            "ratio": round(fast["tokens_per_s"] / reference, 2),
            "blocks_opened_latent_generate": blocks,
            "blocks_opened_vllm": fast["blocks_opened"],
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
