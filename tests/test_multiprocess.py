"""Real multi-process runs on the CPU: 2 processes started by `accelerate launch` with the recipes' DDP config (gloo),
or 2 `thinker4d synthesize` shards, each compared with one process.

The launch uses `examples/accelerate/ddp.yaml` with `--num_processes 2 --mixed_precision no --main_process_port 0`
(fp32 so that the numbers can be compared, and a free port). `--cpu` is not used: with it `accelerate launch` starts
one process whatever `--num_processes` says; the processes find the CPU themselves (`use_cpu=True` in the trainers,
no GPU in the eval runner) and form a gloo group.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest


pytestmark = pytest.mark.multiprocess

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("_multiprocess_worker.py")
DDP_CONFIG = ROOT / "examples" / "accelerate" / "ddp.yaml"
LAUNCH_TIMEOUT = 240  # a deadlocked collective fails the test instead of hanging the suite


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return env


def _launch_cmd(*script):
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(DDP_CONFIG),
        "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", "0", *script,
    ]  # fmt: skip


def start(cmd) -> subprocess.Popen:
    """`cmd` in a session of its own, so that `finish` can end the launcher and every process it started."""
    return subprocess.Popen(
        cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def finish(proc: subprocess.Popen, timeout=LAUNCH_TIMEOUT) -> str:
    """Waits for `proc`; on timeout (e.g. ranks hung in a collective) kills its whole process group and fails."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{' '.join(proc.args[-6:])} did not finish in {timeout} s (hung ranks?)")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return err


def run_to_end(cmd) -> None:
    """Runs `cmd` (see `start` / `finish`) and fails the test if it exits non-zero."""
    proc = start(cmd)
    err = finish(proc)
    assert proc.returncode == 0, err[-4000:]


def launch(*script):
    run_to_end(_launch_cmd(*script))


def ranks(out: Path, name: str) -> list[dict]:
    found = [json.loads((out / f"{name}_rank{k}.json").read_text()) for k in (0, 1)]
    assert [(r["rank"], r["world"]) for r in found] == [(0, 2), (1, 2)]  # really two processes
    return found


def close(a, b, rel=1e-5):
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


# ------------------------------------------------------------------------------------------------------------- DIFT
def test_dift_two_processes_equal_one_process_with_twice_the_batch(tmp_path):
    import _multiprocess_worker as worker

    launch(str(WORKER), "dift", str(tmp_path / "ddp"), "1")
    two = ranks(tmp_path / "ddp", "dift")
    # the one-process reference runs in a fresh process too: in this process, state that earlier tests left behind
    # (accelerate's shared state, torch's thread count) would make its numbers differ from the launched ranks'
    run_to_end([sys.executable, str(WORKER), "dift", str(tmp_path / "single"), "2"])
    one = json.loads((tmp_path / "single" / "dift_rank0.json").read_text())
    assert (one["rank"], one["world"]) == (0, 1)

    # sharding: at each step the ranks see disjoint rows, together the rows the single process sees at that step
    for run in ("full", "resumed"):
        for step, rows in enumerate(one[run]["seen"]):
            r0, r1 = two[0][run]["seen"][step], two[1][run]["seen"][step]
            assert not set(r0) & set(r1) and sorted(r0 + r1) == sorted(rows), (run, step)
    assert sorted(sum(one["full"]["seen"], [])) == sorted(r["id"] for r in worker.dift_rows())

    # the loss curve (and the gradient norm, i.e. the DDP-averaged gradient) of 2 x 1 equals 1 x 2
    for rank in two:
        for run in ("full", "resumed"):
            logs_two, logs_one = rank[run]["logs"], one[run]["logs"]
            assert [h["step"] for h in logs_two] == [h["step"] for h in logs_one]
            for a, b in zip(logs_two, logs_one):
                for key in ("loss", "grad_norm", "ce_loss", "imagery_loss"):
                    assert close(a[key], b[key]), (run, a["step"], key, a[key], b[key])

    # resume from checkpoint-2 continues at step 3 with the rows and the losses of the uninterrupted run
    for rank in two:
        trained = [h for h in rank["resumed"]["logs"] if h["step"] > 2]  # log_history also holds the checkpoint's
        assert [h["step"] for h in trained] == [3, 4] and rank["resumed"]["global_step"] == 4
        assert rank["resumed"]["seen"] == rank["full"]["seen"][2:]
        for a, b in zip(trained, rank["full"]["logs"][2:]):
            assert close(a["loss"], b["loss"]) and close(a["grad_norm"], b["grad_norm"])

    # one rank's micro-batch has an imagery block and the other's has none: it trains (no collective mismatch) and
    # the logged imagery loss is the one of the rank that had imagery
    with_imagery = {f"clip{i}/camera_motion/0" for i in range(8) if i not in worker.NO_IMAGERY}
    for step in range(2):
        has = [bool(set(rank["mixed"]["seen"][step]) & with_imagery) for rank in two]
        assert sorted(has) == [False, True], "the mixed case was not exercised"
    mixed = two[0]["mixed"]["logs"]
    assert len(mixed) == 2 and all(h["imagery_loss"] > 0 for h in mixed)


# ------------------------------------------------------------------------------------------------------------- GRPO
def test_latent_grpo_two_processes(tmp_path):
    import torch

    launch(str(WORKER), "grpo", str(tmp_path))
    two = ranks(tmp_path, "grpo")
    full = [rank["full"]["steps"] for rank in two]
    assert [len(steps) for steps in full] == [2, 2]

    seen = []
    for step in range(2):
        r0, r1 = full[0][step], full[1][step]
        # each rank rolls out its own prompt (num_generations == per-device batch: a group stays on its rank)
        assert len(set(r0["ids"])) == 1 and len(set(r1["ids"])) == 1 and set(r0["ids"]) != set(r1["ids"])
        seen += [r0["ids"][0], r1["ids"][0]]
        # rank 0's rollouts opened imagery blocks, rank 1's did not and are shorter: the ranks' batches differ in
        # length and in latent slots, and the step still completed on both
        assert min(r0["latent_slots"]) > 0 and max(r1["latent_slots"]) == 0
        assert min(r0["lengths"]) > max(r1["lengths"])
        # advantages are trl's over the gathered batch: group mean, std over all ranks' rewards (scale_rewards="batch")
        rewards = torch.tensor(r0["rewards"] + r1["rewards"])
        group_mean = rewards.view(-1, 2).mean(1).repeat_interleave(2)
        expected = (rewards - group_mean) / (rewards.std() + 1e-4)
        got = torch.tensor(r0["advantages"] + r1["advantages"])
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert sorted(seen) == [f"clip{i}/camera_motion/0" for i in range(4)]

    logs = two[0]["full"]["logs"]
    assert len(logs) == 2 and all(h["imagery/frac_with_block"] == 0.5 for h in logs)  # gathered over both ranks
    for step, h in enumerate(logs):
        assert close(h["reward"], sum(full[0][step]["rewards"] + full[1][step]["rewards"]) / 4)

    # resume from checkpoint-1: step 2 rolls out the same prompts and gets the same rewards and advantages
    for rank in two:
        resumed = rank["resumed"]
        assert resumed["global_step"] == 2 and len(resumed["steps"]) == 1
        assert resumed["steps"][0] == rank["full"]["steps"][1]
        assert close(resumed["logs"][-1]["grad_norm"], rank["full"]["logs"][-1]["grad_norm"])


# ------------------------------------------------------------------------------------------------------- evaluation
OPTS = ["A. (1) Become larger.", "B. (1) Become smaller.", "C. (1) Keep constant.", "D. (1) Cannot tell."]


@pytest.fixture
def eval_setup(tmp_path):
    """7 DSR-Bench rows (one with a missing video) and a saved tiny thinker4d model."""
    import thinker4d
    from test_eval import make_mp4
    from thinker4d.tiny import build_tiny_model, build_tiny_processor

    root = tmp_path / "dsr"
    (root / "videos").mkdir(parents=True)
    for v in ("v0", "v1", "v2"):
        make_mp4(root / "videos" / f"{v}.mp4", n_frames=8, size=32, fps=4)
    videos = ["v0", "v1", "v2", "gone", "v0", "v1", "v2"]
    rows = [
        {"videoID": v, "question": f"Question {i}: how does the distance change?", "options": OPTS,
         "answer": "ABCD"[i % 4], "type": "abs_dis"}
        for i, v in enumerate(videos)
    ]  # fmt: skip
    pd.DataFrame(rows).to_parquet(root / "benchmark.parquet")
    processor = build_tiny_processor("qwen2_5_vl")
    model, processor = thinker4d.from_base(build_tiny_model("qwen2_5_vl", processor), processor, latent_size=2)
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    args = [
        "--model_name_or_path",
        str(tmp_path / "model"),
        "--benchmark",
        "dsr_bench",
        "--dataset_name",
        str(root / "benchmark.parquet"),
    ]
    args += ["--batch-size", "1", "--max-new-tokens", "12", "--max-frames", "4", "--dtype", "float32"]
    return args, len(rows)


def _part_keys(out: Path, rank: int) -> list[int]:
    path = out / "parts" / f"rank{rank}.jsonl"
    return [json.loads(line)["index"] for line in path.read_text().splitlines()] if path.exists() else []


def _kill_rank(launcher: subprocess.Popen, rank: int, out: Path) -> int:
    """SIGKILL the process of `rank` once it has written its first result; returns its finished rows then."""
    import psutil

    deadline = time.monotonic() + LAUNCH_TIMEOUT
    while time.monotonic() < deadline and launcher.poll() is None:
        if _part_keys(out, rank):
            for child in psutil.Process(launcher.pid).children(recursive=True):
                try:
                    if child.environ().get("RANK") == str(rank):
                        os.kill(child.pid, signal.SIGKILL)
                        return len(_part_keys(out, rank))
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
        time.sleep(0.02)
    raise AssertionError(f"rank {rank} wrote no result or could not be found; launcher exit {launcher.poll()}")


def test_eval_sharded_over_two_processes_resumes_after_a_killed_rank(tmp_path, eval_setup):
    from thinker4d.commands.eval import main as eval_main
    from thinker4d.eval.metrics import read_results

    args, n = eval_setup
    assert eval_main([*args, "--output_dir", str(tmp_path / "one")]) == 0
    one = read_results(tmp_path / "one" / "results.jsonl")

    out = tmp_path / "two"
    cmd = _launch_cmd("-m", "thinker4d.commands.eval", *args, "--output_dir", str(out))
    launcher = start(cmd)
    try:
        done_when_killed = _kill_rank(launcher, 1, out)
    finally:
        finish(launcher)
    assert launcher.returncode != 0, "the run with a killed rank must fail"
    assert not (out / "summary.json").exists() and not (out / "results.jsonl").exists()
    assert 0 < done_when_killed < n // 2, "rank 1 was not killed mid-way; nothing was left to resume"

    launch("-m", "thinker4d.commands.eval", *args, "--output_dir", str(out))  # the same command resumes
    two = read_results(out / "results.jsonl")
    # the contiguous shards of split_between_processes, without padding: every question exactly once, in one part
    first, second = _part_keys(out, 0), _part_keys(out, 1)
    assert sorted(first) == list(range((n + 1) // 2)) and sorted(second) == list(range((n + 1) // 2, n))
    assert len(first) == len(set(first)) and len(second) == len(set(second))
    assert [r["index"] for r in two] == list(range(n))
    for a, b in zip(one, two):  # question by question: same prediction, same raw text, same error
        assert {k: a[k] for k in ("id", "pred", "raw", "hit", "error")} == {
            k: b[k] for k in ("id", "pred", "raw", "hit", "error")
        }
    s1 = json.loads((tmp_path / "one" / "summary.json").read_text())
    s2 = json.loads((out / "summary.json").read_text())
    assert s2["total"] == n and {k: s1[k] for k in ("correct", "errors", "accuracy")} == {
        k: s2[k] for k in ("correct", "errors", "accuracy")
    }


# -------------------------------------------------------------------------------------------------------- synthesis
def test_synthesis_two_shard_processes_merge_to_the_unsharded_run(tmp_path):
    from test_synthesis import _rows
    from thinker4d.commands.synthesize import main as synth_main

    common = ["--config", str(ROOT / "examples" / "synthesis" / "offline.yaml"), "--world-num-clips", "4"]
    procs = [
        start(
            [
                sys.executable,
                "-m",
                "thinker4d.cli",
                "synthesize",
                *common,
                "--num-shards",
                "2",
                "--shard-index",
                str(i),
                "--output_dir",
                str(tmp_path / f"s{i}"),
                "--no-progress",
            ]
        )  # fmt: skip
        for i in range(2)
    ]
    for p in procs:
        err = finish(p)
        assert p.returncode == 0, err[-4000:]
    assert synth_main([*common, "--output_dir", str(tmp_path / "one"), "--no-progress"]) == 0
    assert synth_main(["merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--output_dir", str(tmp_path / "m")]) == 0

    shard_ids = [{r["id"] for r in _rows(tmp_path / f"s{i}")} for i in range(2)]
    assert all(shard_ids) and not shard_ids[0] & shard_ids[1]  # both shards did work, none twice
    assert _rows(tmp_path / "m") == _rows(tmp_path / "one")  # ids, order and content
    stats = [json.loads((tmp_path / d / "synthesis_stats.json").read_text()) for d in ("m", "one")]
    assert {k: stats[0][k] for k in ("kept", "candidates", "rejected")} == {
        k: stats[1][k] for k in ("kept", "candidates", "rejected")
    }
