"""from_base and DIFT under parameter sharding on 2 CPU processes: FSDP2 (the recipe's accelerate config) and DeepSpeed
ZeRO-3 (when deepspeed is installed).

tests/_sharded_dift.py converts a stock tiny checkpoint with `DIFTTrainer(model=<path>)` (from_base adds the latent
tokens, grows the untied embeddings and mean-initialises the new rows), shards it and trains 3 DIFT steps; the same
script runs unsharded in this process. The gathered latent-token rows of the input embeddings and `lm_head`, before
and after training, and the per-step losses must match the unsharded run.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from _sharded_dift import run
from test_dift import make_row


datasets = pytest.importorskip("datasets")
ROOT = Path(__file__).resolve().parents[1]
FSDP_CONFIG = ROOT / "examples" / "accelerate" / "fsdp.yaml"
WORKER = ROOT / "tests" / "_sharded_dift.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(command, workdir, name):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(
        [*command, str(WORKER), str(workdir), name], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((workdir / f"{name}.json").read_text())


def _workdir(path, padded):
    """A stock tiny checkpoint (untied lm_head), its processor and 6 DIFT rows. `padded=False`: the vocabulary is the
    tokenizer, so from_base must grow the matrices. `padded=True`: 8 spare rows past the tokenizer, like Qwen's
    151,936 for 151,665 tokens, so from_base must keep the matrices and mean-initialise 3 of the spare rows."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    from thinker4d.tiny import build_tiny_config, build_tiny_processor

    processor = build_tiny_processor("qwen2_5_vl")
    config = build_tiny_config("qwen2_5_vl", processor)
    config.text_config.vocab_size = len(processor.tokenizer) + (8 if padded else 0)
    torch.manual_seed(0)
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(path / "base")
    processor.save_pretrained(path / "base")
    datasets.Dataset.from_list([make_row(i, n_imagery=1) for i in range(6)]).save_to_disk(str(path / "data"))
    return path


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    workdir = _workdir(tmp_path_factory.mktemp("grown"), padded=False)
    return workdir, run(str(workdir), "unsharded")


@pytest.fixture(scope="module")
def padded(tmp_path_factory):
    pytest.importorskip("deepspeed")
    workdir = _workdir(tmp_path_factory.mktemp("padded"), padded=True)
    return workdir, run(str(workdir), "unsharded")


@pytest.fixture(scope="module")
def fsdp(grown):
    # the recipe's file, overridden on the command line to 2 processes, fp32 and a free port
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(FSDP_CONFIG),
              "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(_free_port())]  # fmt: skip
    return _launch(launch, grown[0], "sharded"), grown[1]


def _zero3(workdir):
    pytest.importorskip("deepspeed")
    launch = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
    ]
    return _launch(launch, workdir, "zero3")


@pytest.fixture(scope="module")
def zero3_grown(grown):
    return _zero3(grown[0]), grown[1]


@pytest.fixture(scope="module")
def zero3_padded(padded):
    return _zero3(padded[0]), padded[1]


def _rows(run_result, when, key):
    return torch.tensor(run_result[when][key]["new_rows"], dtype=torch.float64)


def _check_against_unsharded(sharded, unsharded, grew):
    assert sharded["world_size"] == 2 and sharded["latent_ids"] == unsharded["latent_ids"]
    n_rows = sharded["before"]["embed"]["full_shape"][0]
    assert n_rows == unsharded["before"]["embed"]["full_shape"][0]
    assert (n_rows == max(sharded["latent_ids"]) + 1) == grew, n_rows  # grown to fit, or kept (never shrunk)
    for key in ("embed", "lm_head"):
        assert sharded["before"][key]["full_shape"] == unsharded["before"][key]["full_shape"]
        mean = torch.tensor(sharded["before"][key]["old_mean"], dtype=torch.float64)
        torch.testing.assert_close(_rows(sharded, "before", key), mean.expand(3, -1), rtol=0, atol=1e-6)
        torch.testing.assert_close(_rows(sharded, "before", key), _rows(unsharded, "before", key))
    # fp32 tolerance: only the order of the gradient reduction differs (across 2 ranks vs accumulation)
    assert len(sharded["losses"]) == 3 and len(set(unsharded["losses"])) == 3
    torch.testing.assert_close(torch.tensor(sharded["losses"]), torch.tensor(unsharded["losses"]))
    for key in ("embed", "lm_head"):
        assert not torch.allclose(_rows(sharded, "after", key), _rows(sharded, "before", key))
        torch.testing.assert_close(_rows(sharded, "after", key), _rows(unsharded, "after", key))


def test_fsdp2_shards_the_model(fsdp):
    sharded, _ = fsdp
    assert sharded["cpu_ram_efficient_loading"] is True
    assert sharded["fsdp_modules"] >= 5  # 2 decoder layers, 2 vision blocks and the root
    for key in ("embed", "lm_head"):
        full, local = sharded["before"][key]["full_shape"], sharded["before"][key]["local_shape"]
        assert local[0] == (full[0] + 1) // 2, key


def test_fsdp2_from_base_and_dift_steps_match_unsharded(fsdp):
    _check_against_unsharded(*fsdp, grew=True)


def test_zero3_partitions_the_model(zero3_grown):
    sharded, _ = zero3_grown
    assert sharded["zero_stage"] == 3
    # zero.Init partitioned the checkpoint while it loaded; the grown matrices are partitioned by initialize
    assert 0 < sharded["partitioned_at_load"] < sharded["num_params"]
    for key in ("embed", "lm_head"):
        rows, cols = sharded["before"][key]["full_shape"]
        assert sharded["before"][key]["local_shape"] == [rows * cols // 2], key


def test_zero3_from_base_grows_and_dift_steps_match_unsharded(zero3_grown):
    _check_against_unsharded(*zero3_grown, grew=True)


def test_zero3_from_base_keeps_a_padded_vocabulary(zero3_padded):
    """The matrices stay partitioned through from_base (no resize), which must neither shrink them nor skip the
    mean-initialisation of the new rows."""
    sharded, unsharded = zero3_padded
    assert sharded["partitioned_at_load"] == sharded["num_params"]
    _check_against_unsharded(sharded, unsharded, grew=False)
