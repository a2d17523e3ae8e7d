"""One CLI style: the same flag names for the same things on every verb (trl / transformers names), the former names
still accepted with one deprecation line, `--config FILE` / `--config=FILE` on every verb with flags overriding the
file, a one-line example in every verb's `--help`, and trl's `ModelConfig` / `get_peft_config` for the LoRA flags."""

import importlib
import logging
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from thinker4d import cli


REPO = Path(__file__).resolve().parents[1]


def _parse(verb: str, argv: list[str]):
    """The parsed arguments of `thinker4d <verb> argv`, without running the verb."""
    return importlib.import_module(f"thinker4d.commands.{verb}")._parse(argv)


def _deprecations(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "is deprecated" in r.getMessage()]


# verb, the former spelling, the current spelling, and (result attribute, value) pairs both must give. An attribute
# `a.b` reads field `b` of result number `a` (the training verbs return several dataclasses).
RENAMES = [
    (
        "dift",
        "--model m/x --dataset d.jsonl --dataset_split tr --eval_split va --output_dir o",
        "--model_name_or_path m/x --dataset_name d.jsonl --dataset_train_split tr --dataset_test_split va --output_dir o",
        [("2.model_name_or_path", "m/x"), ("0.dataset_name", "d.jsonl"), ("0.dataset_train_split", "tr")],
    ),
    (
        "grpo",
        "--model_name_or_path m/x --dataset_name d.jsonl --dataset-split tr --output_dir o --use_cpu true --bf16 false",
        "--model_name_or_path m/x --dataset_name d.jsonl --dataset_train_split tr --output_dir o --use_cpu true "
        "--bf16 false",
        [("1.dataset_train_split", "tr"), ("3.model_name_or_path", "m/x")],
    ),
    (
        "eval",
        "--model m/x --benchmark synthdsr --data=bench --output runs/x --split val",
        "--model_name_or_path m/x --benchmark synthdsr --dataset_name=bench --output_dir runs/x --dataset_test_split val",
        [("model_name_or_path", "m/x"), ("dataset_name", "bench"), ("output_dir", "runs/x")],
    ),
    ("quickstart", "--output q --train-clips 4", "--output_dir q --train_clips 4", [("output_dir", "q")]),
    ("world", "--out clips --num-clips 2", "--output_dir clips --num_clips 2", [("output_dir", "clips")]),
    ("synthdsr", "--out bench --size 32", "--output_dir bench --size 32", [("output_dir", "bench")]),
    ("synthesize", "--output cot --num-proc 2", "--output_dir cot --num_proc 2", [("output_dir", "cot")]),
    ("push", "ckpt --dataset --repo-id me/x", "ckpt --repo_type dataset --repo_id me/x", [("repo_type", "dataset")]),
]


def _get(result, attribute: str):
    index, _, name = attribute.rpartition(".")
    return getattr(result[int(index)] if index else result, name)


@pytest.mark.parametrize("verb, old, new, expected", RENAMES, ids=[r[0] for r in RENAMES])
def test_former_flag_names_work_with_one_deprecation_line(verb, old, new, expected, caplog):
    caplog.set_level(logging.WARNING)
    with_new = _parse(verb, shlex.split(new))
    assert _deprecations(caplog) == []
    with_old = _parse(verb, shlex.split(old))
    for attribute, value in expected:
        assert _get(with_new, attribute) == value == _get(with_old, attribute), attribute
    lines = _deprecations(caplog)
    renamed = importlib.import_module(f"thinker4d.commands.{verb}").RENAMED
    old_names = [a.split("=")[0][2:].replace("-", "_") for a in shlex.split(old) if a.startswith("--")]
    assert len(lines) == sum(name in renamed for name in old_names) > 0
    for line in lines:
        assert line.startswith(f"thinker4d {verb}: `--") and "will be removed in the next release; use `--" in line


def test_deprecation_line_on_stderr_of_the_command(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "THINKER4D_DEBUG"}
    argv = ["world", "--out", str(tmp_path / "w"), "--num-clips", "1", "--size", "32", "--num-frames", "4"]
    proc = subprocess.run(
        [sys.executable, "-m", "thinker4d.cli", *argv], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "deprecated" in line]
    assert lines == [
        "thinker4d world: `--out` is deprecated and will be removed in the next release; use `--output_dir`."
    ]
    assert [p.name for p in (tmp_path / "w").iterdir()] == ["world-0000000"]


def test_former_names_as_config_keys(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    (tmp_path / "c.yaml").write_text("model: m/x\ndataset: d.jsonl\noutput_dir: o\n")
    script, _, model_args = _parse("dift", ["--config", str(tmp_path / "c.yaml")])
    assert (model_args.model_name_or_path, script.dataset_name) == ("m/x", "d.jsonl")
    (tmp_path / "e.yaml").write_text("data: bench\nout: x\n")
    with pytest.raises(ValueError, match=r"unknown settings \['out'\]"):  # only the former names are accepted
        _parse("eval", [f"--config={tmp_path / 'e.yaml'}"])
    (tmp_path / "p.yaml").write_text("path: ckpt\nrepo_id: me/x\ndataset: true\n")
    assert _parse("push", ["--config", str(tmp_path / "p.yaml")]).repo_type == "dataset"
    (tmp_path / "p.yaml").write_text("path: ckpt\nrepo_id: me/x\ndataset: false\n")
    assert _parse("push", ["--config", str(tmp_path / "p.yaml")]).repo_type == "model"
    assert _deprecations(caplog) == [
        "thinker4d dift: the --config key `model` is deprecated and will be removed in the next release; use "
        "`model_name_or_path`.",
        "thinker4d dift: the --config key `dataset` is deprecated and will be removed in the next release; use "
        "`dataset_name`.",
        "thinker4d push: the --config key `dataset` is deprecated and will be removed in the next release; use "
        "`repo_type: dataset`.",
        "thinker4d push: the --config key `dataset` is deprecated and will be removed in the next release; use "
        "`repo_type: dataset`.",
    ]


# verb, YAML text, command-line flags, and what the result must hold (file values, then a flag that overrides one)
CONFIGS = {
    "demo": ("seed: 3\nlatent_size: 6\n", "--latent-size 2", {"seed": 3, "latent_size": 2}),
    "world": (
        "output_dir: w\nnum_clips: 3\nsize: 64\n",
        "--num_clips 2",
        {"output_dir": "w", "size": 64, "num_clips": 2},
    ),
    "synthdsr": ("output_dir: s\nsize: 64\nfps: 4.0\n", "--size 32", {"output_dir": "s", "fps": 4.0, "size": 32}),
    "eval": ("model_name_or_path: m/x\nbatch_size: 4\nseed: 1\n", "--batch-size 2", {"seed": 1, "batch_size": 2}),
    "push": (
        "path: ckpt\nrepo-id: me/a\nprivate: true\n",
        "--repo-id me/b",
        {"path": "ckpt", "private": True, "repo_id": "me/b"},
    ),
    "quickstart": ("train_clips: 16\noutput_dir: q\n", "--train-clips 8", {"output_dir": "q", "train_clips": 8}),
    "dift": (
        "model_name_or_path: m/x\nlora_r: 4\nseed: 5\n",
        "--lora_r 8 --output_dir o",
        {"2.lora_r": 8, "1.seed": 5},
    ),
    "grpo": (
        "model_name_or_path: m/x\nnum_generations: 4\nseed: 5\n",
        "--num_generations 2 --output_dir o --use_cpu true --bf16 false --per_device_train_batch_size 2",
        {"2.num_generations": 2, "2.seed": 5, "3.model_name_or_path": "m/x"},
    ),
}


@pytest.mark.parametrize("spelling", ["space", "equals"])
@pytest.mark.parametrize("verb", list(CONFIGS))
def test_every_verb_reads_config_and_flags_override_it(tmp_path, verb, spelling):
    text, flags, expected = CONFIGS[verb]
    (tmp_path / "c.yaml").write_text(text)
    config = ["--config", str(tmp_path / "c.yaml")] if spelling == "space" else [f"--config={tmp_path / 'c.yaml'}"]
    result = _parse(verb, [*config, *shlex.split(flags)])
    assert {k: _get(result, k) for k in expected} == expected


@pytest.mark.parametrize("spelling", ["space", "equals"])
def test_synthesize_config_and_override_flags(tmp_path, monkeypatch, spelling):
    """`thinker4d synthesize --config` is a file of `SynthesisConfig` fields; its override flags win over it."""
    import thinker4d.data.pipeline

    seen = []

    class Stop(Exception):
        pass

    def fake_run(config, output_dir, **kwargs):
        seen.append((config, output_dir))
        raise Stop

    monkeypatch.setattr(thinker4d.data.pipeline, "run_synthesis", fake_run)
    (tmp_path / "c.yaml").write_text("world_num_clips: 4\nteacher: rule\n")
    config = ["--config", str(tmp_path / "c.yaml")] if spelling == "space" else [f"--config={tmp_path / 'c.yaml'}"]
    with pytest.raises(Stop):
        cli.main(["synthesize", *config, "--world_num_clips", "2", "--output_dir", str(tmp_path / "o")])
    assert (seen[0][0].world_num_clips, seen[0][0].teacher, seen[0][1]) == (2, "rule", str(tmp_path / "o"))


def _example(verb: str, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        cli.main([verb, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    match = re.search(r"^example:(?:\n| )\s*(thinker4d " + verb + r" .*)$", text, re.MULTILINE)
    assert match, text[:2000]
    return match.group(1)


@pytest.mark.parametrize("verb", list(cli.VERBS))
def test_every_verb_help_shows_a_one_line_example_that_parses(verb, capsys, caplog, monkeypatch):
    """`thinker4d <verb> --help` shows one example command, and it uses the current flag names (it parses without a
    deprecation line)."""
    caplog.set_level(logging.WARNING)
    example = _example(verb, capsys)
    monkeypatch.chdir(REPO)  # the examples name recipe files by their path in the repository
    on_cpu = ["--use_cpu", "true", "--bf16", "false"] if verb in ("dift", "grpo") else []  # recipes assume GPUs
    _parse(verb, shlex.split(example, comments=True)[2:] + on_cpu)
    assert _deprecations(caplog) == []


# ------------------------------------------------------------------------------------------------ ModelConfig / LoRA
@pytest.mark.parametrize("verb", ["dift", "grpo"])
def test_training_verbs_take_trl_model_config_and_build_lora_with_trl(verb, tmp_path):
    from peft import LoraConfig
    from trl import ModelConfig, get_peft_config

    from thinker4d.commands.trainer_args import LLM_PROJECTIONS, peft_config

    rest = ["--model_name_or_path", "m/x", "--output_dir", str(tmp_path / "o"), "--use_cpu", "true", "--bf16", "false"]
    lora = ["--use_peft", "--lora_r", "8", "--lora_alpha", "16", "--lora_dropout", "0.1", "--use_rslora"]
    result = _parse(verb, [*rest, *lora, "--lora_target_modules", "q_proj", "v_proj"])
    model_args = result[-1]
    assert isinstance(model_args, ModelConfig)
    config = peft_config(model_args)
    assert isinstance(config, LoraConfig)
    assert config.to_dict() == get_peft_config(model_args).to_dict()  # trl's own builder, nothing added
    assert (config.r, config.lora_alpha, config.lora_dropout, config.use_rslora) == (8, 16, 0.1, True)
    assert config.target_modules == {"q_proj", "v_proj"}
    # one comma-separated string (a recipe's YAML) is a list of modules too; without any, the LLM's projections
    (tmp_path / "c.yaml").write_text("use_peft: true\nlora_target_modules: q_proj,k_proj\n")
    model_args = _parse(verb, ["--config", str(tmp_path / "c.yaml"), *rest])[-1]
    assert peft_config(model_args).target_modules == {"q_proj", "k_proj"}
    assert peft_config(_parse(verb, [*rest, "--use_peft"])[-1]).target_modules == set(LLM_PROJECTIONS)
    assert peft_config(_parse(verb, rest)[-1]) is None


def test_grpo_passes_the_lora_and_model_flags_to_the_trainer(tmp_path, monkeypatch):
    import thinker4d.trainers.latent_grpo_trainer as module

    seen = {}

    class Stop(Exception):
        pass

    class FakeTrainer:
        def __init__(self, model, args=None, train_dataset=None, **kwargs):
            seen.update(model=model, args=args, **kwargs)
            raise Stop

    monkeypatch.setattr(module, "LatentGRPOTrainer", FakeTrainer)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "rows.jsonl").write_text('{"prompt": "Q?", "solution": "A"}\n')
    argv = ["--model_name_or_path", str(tmp_path / "ckpt"), "--dataset_name", str(tmp_path / "rows.jsonl")]
    argv += ["--output_dir", str(tmp_path / "o"), "--use_cpu", "true", "--bf16", "false", "--report_to", "none"]
    with pytest.raises(Stop):
        importlib.import_module("thinker4d.commands.grpo").main([*argv, "--use_peft", "--lora_r", "4"])
    assert seen["model"] == str(tmp_path / "ckpt") and seen["peft_config"].r == 4
    assert seen["args"].model_init_kwargs == {"dtype": "bfloat16"}
