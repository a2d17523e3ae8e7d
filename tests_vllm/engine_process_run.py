"""Decode the reference prompts with the vLLM engine in its own process (vLLM's default,
`VLLM_ENABLE_V1_MULTIPROCESSING=1`), so the latents cross a process boundary; saves the completions.

    python tests_vllm/engine_process_run.py REFERENCE_DIR OUT_FILE
"""

import os
import sys
from pathlib import Path


if __name__ == "__main__":  # vLLM starts its engine process with spawn: this module is imported again there
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"
    import torch

    from conftest import greedy_params, make_llm

    reference_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    reference = torch.load(reference_dir / "reference.pt")
    llm = make_llm(reference_dir, kv_cache_memory_bytes=64 << 20)
    completions = llm.generate(
        [row["prompt"] for row in reference["rows"]],
        greedy_params(reference),
        max_imagery_blocks=reference["settings"]["max_imagery_blocks"],
    )
    rows = [dict(token_ids=c.token_ids, positions=c.latent_positions, latents=c.latents) for c in completions]
    torch.save(rows, out)
