"""The vLLM backend decodes as thinker4d's `latent_generate` does: same greedy tokens, same latent positions, the same
fed latents, in a batch whose requests open blocks at different steps, and after vLLM preempts and recomputes
requests."""

import copy
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from vllm import SamplingParams

from conftest import greedy_params, make_llm
from thinker4d.vllm import latent_engine_kwargs, latent_sampling_params
from thinker4d.vllm.worker import check_engine_config


@pytest.fixture(scope="module")
def llm(reference_dir):
    return make_llm(reference_dir, kv_cache_memory_bytes=64 << 20)


def assert_matches_reference(completions, reference):
    rows = reference["rows"]
    assert len(completions) == len(rows)
    for i, (completion, row) in enumerate(zip(completions, rows)):
        assert completion.token_ids == row["completion"], f"prompt {i}"
        assert completion.latent_positions == row["positions"], f"prompt {i}"
        assert completion.latents.shape == row["latents"].shape, f"prompt {i}"
        torch.testing.assert_close(completion.latents, row["latents"], atol=1e-4, rtol=1e-4, msg=f"prompt {i}")


def test_reference_covers_the_cases(reference):
    """The reference decodes what the comparison must cover, so the comparison cannot pass on a trivial case."""
    start, pad = 96, 98
    rows = reference["rows"]
    first_open = {row["completion"].index(start) for row in rows if start in row["completion"]}
    assert len(first_open) >= 4, "blocks open at different steps"
    limit = reference["settings"]["max_imagery_blocks"]
    assert any(row["completion"].count(start) == limit for row in rows), "a row reaches the block limit"
    assert any(start not in row["completion"] for row in rows), "a row opens no block"
    assert any(row["prompt"][-1] == start and row["completion"][0] == pad for row in rows), "a prompt opens a block"
    assert any(row["completion"][-1] == reference["settings"]["eos_token_id"] for row in rows), "a row stops at EOS"


def test_batch_matches_latent_generate(llm, reference):
    completions = llm.generate(
        [row["prompt"] for row in reference["rows"]],
        greedy_params(reference),
        max_imagery_blocks=reference["settings"]["max_imagery_blocks"],
    )
    assert_matches_reference(completions, reference)
    assert llm.stats()["held_requests"] == 0  # the latents were handed back and forgotten


def test_block_limit_zero_suppresses_blocks(llm, reference):
    rows = [row for row in reference["rows"] if row["prompt"][-1] != 96]
    completions = llm.generate([row["prompt"] for row in rows], greedy_params(reference), max_imagery_blocks=0)
    for completion in completions:
        assert 96 not in completion.token_ids and len(completion.latents) == 0


def test_sampled_blocks_are_well_formed(llm, reference):
    """Sampling (temperature 0.5) follows the same rule: every block is start, K slots, end; no pad or end outside a
    block; at most `max_imagery_blocks` blocks; one latent per slot."""
    start, pad, end, k, limit = 96, 98, 97, 3, 2
    prompts = [row["prompt"] for row in reference["rows"]] * 3
    params = SamplingParams(max_tokens=40, temperature=0.5, seed=7, detokenize=False)
    completions = llm.generate(prompts, params, max_imagery_blocks=limit)
    opened = 0
    for completion in completions:
        sequence = completion.prompt_token_ids + completion.token_ids
        i, slots = len(completion.prompt_token_ids) - (sequence[len(completion.prompt_token_ids) - 1] == start), []
        while i < len(sequence):
            if sequence[i] == start:
                block = sequence[i + 1 : i + 2 + k]
                expected = ([pad] * k + [end])[: len(block)]
                assert block == expected, completion.token_ids
                slots += [p for p in range(i + 1, i + 1 + k) if p < len(sequence)]
                i += k + 2
            else:
                assert sequence[i] not in (pad, end), completion.token_ids
                i += 1
        assert completion.latent_positions == slots
        assert completion.latents.shape == (len(slots), 128)
        assert torch.allclose(completion.latents.norm(dim=-1), torch.tensor(4.0), atol=1e-4)  # latent_norm
        assert completion.imagery_blocks <= limit
        opened += completion.imagery_blocks
    assert opened >= 5, f"only {opened} blocks opened: too few for the check to mean anything"


def test_preempted_requests_get_their_latents_back(reference_dir, reference):
    """A KV cache of 5 blocks of 32 tokens cannot hold 9 requests: vLLM preempts some and recomputes them later (in
    chunks of 32 tokens), and the runner writes their stored latents back at their slots."""
    llm = make_llm(reference_dir, kv_cache_memory_bytes=5 * 32 * 1024, block_size=32, max_num_batched_tokens=32)
    try:
        completions = llm.generate(
            [row["prompt"] for row in reference["rows"]],
            greedy_params(reference),
            max_imagery_blocks=reference["settings"]["max_imagery_blocks"],
        )
        assert llm.stats()["reinserted_latents"] > 0, (
            "no request was recomputed after a block: the test proves nothing"
        )
        assert_matches_reference(completions, reference)
    finally:
        del llm


def test_engine_in_its_own_process(reference_dir, reference, tmp_path):
    """vLLM's default: the engine in another process, the latents coming back through collective_rpc."""
    out = tmp_path / "completions.pt"
    script = Path(__file__).with_name("engine_process_run.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(script.parent), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, str(script), str(reference_dir), str(out)], check=True, env=env, timeout=600)
    rows = torch.load(out)
    completions = [
        SimpleNamespace(token_ids=r["token_ids"], latent_positions=r["positions"], latents=r["latents"]) for r in rows
    ]
    assert_matches_reference(completions, reference)


def test_bad_settings_and_inputs_are_refused(llm, reference):
    with pytest.raises(ValueError, match="enable_prefix_caching=False"):
        latent_engine_kwargs(enable_prefix_caching=True)
    with pytest.raises(ValueError, match="repeat the prompt"):
        latent_sampling_params(SamplingParams(n=2))
    with pytest.raises(ValueError, match="prompt 1 has a <\\|latent_pad\\|>"):
        llm.generate([[5, 6], [5, 96, 98, 98, 98, 97, 7]], greedy_params(reference))
    with pytest.raises(ValueError, match="prompt 0 opens an imagery block"):
        llm.generate([[5, 96, 7]], greedy_params(reference))

    config = llm.llm.llm_engine.vllm_config
    check_engine_config(config, use_v2_model_runner=False)
    with pytest.raises(ValueError, match="VLLM_USE_V2_MODEL_RUNNER=0"):
        check_engine_config(config, use_v2_model_runner=True)
    for section, name, value, message in [
        ("cache_config", "enable_prefix_caching", True, "prefix caching"),
        ("parallel_config", "tensor_parallel_size", 2, "tensor_parallel_size=2"),
        ("scheduler_config", "async_scheduling", True, "async scheduling"),
        ("model_config", "enable_prompt_embeds", False, "enable_prompt_embeds=True"),
    ]:
        changed = copy.copy(config)
        setattr(changed, section, copy.copy(getattr(config, section)))
        object.__setattr__(getattr(changed, section), name, value)
        with pytest.raises(ValueError, match=message):
            check_engine_config(changed, use_v2_model_runner=False)
