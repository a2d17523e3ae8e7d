"""`thinker4d <verb>`: `--config FILE` and `--config=FILE` on every verb that reads a config, and user errors (one
line, exit status 2, `--debug` / `THINKER4D_DEBUG=1` for the traceback) while bugs keep their traceback."""

import json
import os
import subprocess
import sys

import pytest

from thinker4d import cli


@pytest.fixture
def no_debug_env(monkeypatch):
    monkeypatch.delenv("THINKER4D_DEBUG", raising=False)


# ------------------------------------------------------------------------------------------------ --config
@pytest.mark.parametrize("spelling", ["space", "equals"])
def test_dift_config_both_spellings(tmp_path, spelling):
    from thinker4d.commands import dift

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "model_name_or_path: m/x\ndataset_name: d.jsonl\nlearning_rate: 3.0e-4\nlatent_size: 6\nlora_r: 4\n"
    )
    flag = ["--config", str(cfg)] if spelling == "space" else [f"--config={cfg}"]
    script, args, model_args = dift._parse([*flag, "--output_dir", str(tmp_path / "o"), "--latent_size", "2"])
    assert (model_args.model_name_or_path, script.dataset_name, args.learning_rate) == ("m/x", "d.jsonl", 3e-4)
    assert (args.latent_size, model_args.lora_r) == (2, 4)  # flags override the file


@pytest.mark.parametrize("spelling", ["space", "equals"])
def test_grpo_config_both_spellings(tmp_path, spelling, no_debug_env, capsys):
    from thinker4d.commands import grpo

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "model_name_or_path: ./no-such-checkpoint\ndataset_name: rows.jsonl\nnum_generations: 4\n"
        "env:\n  THINKER4D_TEST_ENV: from-config\n"
    )
    flag = ["--config", str(cfg)] if spelling == "space" else [f"--config={cfg}"]
    rest = ["--output_dir", str(tmp_path / "o"), "--use_cpu", "true", "--bf16", "false", "--report_to", "none"]
    _, script, args, model_args = grpo._parse(
        [*flag, *rest, "--num_generations", "2", "--per_device_train_batch_size", "2"]
    )
    assert (script.dataset_name, args.num_generations, model_args.dtype) == ("rows.jsonl", 2, "bfloat16")
    assert os.environ.pop("THINKER4D_TEST_ENV") == "from-config"
    # the model path of the file is the one checked
    assert cli.main(["grpo", *flag, *rest]) == 2
    assert "--model_name_or_path ./no-such-checkpoint: the local path does not exist" in capsys.readouterr().err


def test_eval_config(tmp_path, capsys):
    from thinker4d.commands import eval as eval_cmd

    cfg = tmp_path / "e.yaml"
    cfg.write_text(
        "model_name_or_path: m/x\nbenchmark: dsr_bench\nvideo-root: /v\nmax_new_tokens: 64\nbatch_size: 4\n"
    )
    for flag in (["--config", str(cfg)], [f"--config={cfg}"]):
        args = eval_cmd._parse([*flag, "--batch-size", "2"])
        assert (args.model_name_or_path, args.benchmark, args.video_root, args.max_new_tokens) == (
            "m/x",
            "dsr_bench",
            "/v",
            64,
        )
        assert args.batch_size == 2  # flags override the file
    # a whole command from the file: re-score a paper-layout results file
    rows = [{"raw": "<answer>B</answer>", "gt": "B", "subtask_type": "abs_dis"}]
    (tmp_path / "paper.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "r.yaml").write_text(f"rescore_paper: {tmp_path / 'paper.jsonl'}\n")
    assert eval_cmd.main([f"--config={tmp_path / 'r.yaml'}"]) == 0
    assert json.loads(capsys.readouterr().out)["correct"] == 1
    (tmp_path / "bad.yaml").write_text("modle: m/x\n")
    with pytest.raises(
        ValueError, match=r"bad.yaml: unknown settings \['modle'\]; every key must be a `thinker4d eval`"
    ):
        eval_cmd._parse(["--config", str(tmp_path / "bad.yaml")])


@pytest.mark.parametrize("verb", ["quickstart", "synthesize"])
def test_argparse_verbs_take_config_with_equals(verb):
    import importlib

    parser = importlib.import_module(f"thinker4d.commands.{verb}").make_parser()
    extra = ["--output_dir", "o"] if verb == "synthesize" else []
    assert parser.parse_args(["--config=x.yaml", *extra]).config == "x.yaml"


# ------------------------------------------------------------------------------------------------ user errors
def _one_error(capsys, verb: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"thinker4d {verb}: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# A bad --config file of each verb that reads one: (file text or None for no file, what the error must say).
BAD_CONFIGS = {
    "missing": (None, "the file does not exist; pass the path of a YAML file"),
    "not_yaml": (
        "seed: 1\ntasks: [camera_motion, object_speed\nbatch_size: 4\n",
        "is not valid YAML: line 3, column 11: expected ',' or ']'",
    ),
    "not_a_mapping": ("- seed\n- 1\n", "must hold a YAML mapping of"),
    "unknown_key": ("seed: 1\nbogus_key: 2\n", "['bogus_key']; every key must be a"),
}
# the verb, its other arguments, and a key the unknown-key message must list as allowed
CONFIG_VERBS = {
    "quickstart": (["--output_dir", "OUT"], "train_clips"),
    "dift": (["--output_dir", "OUT"], "learning_rate"),
    "synthesize": (["--output_dir", "OUT"], "world_num_clips"),
}


def _exit_status(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as e:  # `thinker4d synthesize` reports its settings errors through argparse
        return e.code


@pytest.mark.parametrize("verb", list(CONFIG_VERBS))
@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_files_are_one_line_errors(tmp_path, verb, case, no_debug_env, capsys):
    text, expected = BAD_CONFIGS[case]
    path = tmp_path / "c.yaml"
    if text is not None:
        path.write_text(text)
    extra, allowed = CONFIG_VERBS[verb]
    out = tmp_path / "out"
    argv = [verb, "--config", str(path), *[str(out) if a == "OUT" else a for a in extra]]
    assert _exit_status(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"thinker4d {verb}: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(path) in lines[0] and expected in err, err
    if case == "unknown_key":
        assert allowed in err and "'bogus_key': did you mean" not in err  # allowed keys listed; no wild guess
    assert not out.exists()


def test_quickstart_config_merges_with_flags_and_refuses_bad_values(tmp_path, monkeypatch, no_debug_env, capsys):
    import thinker4d.quickstart

    seen = []

    class Stop(Exception):
        pass

    def fake_run(cfg, output):  # stop before any work: only the settings are checked here
        seen.append(cfg)
        raise Stop

    monkeypatch.setattr(thinker4d.quickstart, "run_quickstart", fake_run)
    cfg = tmp_path / "q.yaml"
    cfg.write_text("train_clips: 16\nsft-steps: 3\nbatch_size: 8\n")
    for flag in (["--config", str(cfg)], [f"--config={cfg}"]):
        with pytest.raises(Stop):
            cli.main(["quickstart", *flag, "--batch-size", "4", "--output_dir", str(tmp_path / "o")])
    assert [(c.train_clips, c.sft_steps, c.batch_size) for c in seen] == [(16, 3, 4)] * 2  # flags override the file
    cfg.write_text("batch_size: 6\nnum_generations: 4\n")
    assert cli.main(["quickstart", "--config", str(cfg), "--output_dir", str(tmp_path / "o")]) == 2
    assert "multiple of num_generations" in _one_error(capsys, "quickstart")
    cfg.write_text("train_clips: 16\nsft_step: 3\n")
    assert cli.main(["quickstart", "--config", str(cfg), "--output_dir", str(tmp_path / "o")]) == 2
    assert "unknown settings ['sft_step']" in (line := _one_error(capsys, "quickstart"))
    assert "'sft_step': did you mean 'sft_steps'?" in line


def test_read_config_reads_yaml_json_and_empty_files(tmp_path):
    from thinker4d.configfile import read_config
    from thinker4d.errors import UserFileNotFoundError, UserValueError

    (tmp_path / "c.json").write_text(json.dumps({"world_num_clips": 2, "tasks": ["camera_motion"]}))
    assert read_config(tmp_path / "c.json") == {"world_num_clips": 2, "tasks": ["camera_motion"]}
    (tmp_path / "e.yaml").write_text("# only a comment\n")
    assert read_config(tmp_path / "e.yaml", allowed_keys=set()) == {}
    (tmp_path / "d.yaml").write_text("video-root: /v\n")
    assert read_config(tmp_path / "d.yaml", allowed_keys={"video_root"}, dashes=True) == {"video_root": "/v"}
    with pytest.raises(
        UserValueError, match=r"d.yaml: unknown settings \['video-root'\]; every key must be a x: a, b\."
    ):
        read_config(tmp_path / "d.yaml", allowed_keys={"b", "a"}, what="x")
    with pytest.raises(UserValueError, match="is a folder, not a file"):
        read_config(tmp_path)
    with pytest.raises(UserFileNotFoundError, match="--config nope.yaml: the file does not exist"):
        read_config("nope.yaml", flag="--config")
    (tmp_path / "b.yaml").write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(UserValueError, match="b.yaml cannot be read as a UTF-8 text file"):
        read_config(tmp_path / "b.yaml")


def test_user_errors_exit_2_with_one_line(tmp_path, no_debug_env, capsys):
    out = ["--output_dir", str(tmp_path / "o")]
    assert cli.main(["dift", "--model_name_or_path", "/nonexistent", "--dataset_name", "d.jsonl", *out]) == 2
    line = _one_error(capsys, "dift")
    assert (
        "--model_name_or_path /nonexistent: the local path does not exist; pass an existing checkpoint folder" in line
    )
    assert "repo" not in line.lower()  # not Hugging Face's "Repo id must be ..." message

    assert cli.main(["dift", "--config", str(tmp_path / "missing.yaml"), *out]) == 2
    assert f"--config {tmp_path / 'missing.yaml'}: the file does not exist" in _one_error(capsys, "dift")

    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    assert cli.main(["grpo", f"--config={tmp_path / 'list.yaml'}"]) == 2
    assert "must hold a YAML mapping of `thinker4d grpo` flags" in _one_error(capsys, "grpo")

    # a value the config's __post_init__ refuses
    assert (
        cli.main(["dift", "--model_name_or_path", "m/x", "--dataset_name", "d", *out, "--imagery_pooling", "max"]) == 2
    )
    assert "imagery_pooling" in _one_error(capsys, "dift")

    (tmp_path / "m").mkdir()
    assert (
        cli.main(
            ["dift", "--model_name_or_path", str(tmp_path / "m"), "--dataset_name", str(tmp_path / "no.jsonl"), *out]
        )
        == 2
    )
    assert f"--dataset_name {tmp_path / 'no.jsonl'}: the local path does not exist" in _one_error(capsys, "dift")

    args = ["--benchmark", "dsr_bench", "--dataset_name", str(tmp_path), "--output_dir", str(tmp_path / "r")]
    assert cli.main(["eval", "--model_name_or_path", "./nope", *args]) == 2
    assert "--model_name_or_path ./nope: the local path does not exist" in _one_error(capsys, "eval")
    assert cli.main(["eval", "--model_name_or_path", str(tmp_path / "m"), *args[:1], "mmlu", *args[2:]]) == 2
    assert "Unknown benchmark 'mmlu'" in _one_error(capsys, "eval")
    assert cli.main(["eval", "--model_name_or_path", str(tmp_path / "m"), *args]) == 2
    assert "benchmark.parquet not found" in _one_error(capsys, "eval")


def test_debug_prints_the_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("THINKER4D_DEBUG", raising=False)
    argv = ["--model_name_or_path", "/nonexistent", "--dataset_name", "d.jsonl", "--output_dir", str(tmp_path / "o")]
    for command in (["--debug", "dift", *argv], ["dift", *argv, "--debug"], ["dift", "--debug", *argv]):
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert "Traceback" in err and "UserFileNotFoundError" in err and "the local path does not exist" in err
    monkeypatch.setenv("THINKER4D_DEBUG", "1")
    assert (
        cli.main(
            [
                "eval",
                "--model_name_or_path",
                "/nonexistent",
                "--benchmark",
                "x",
                "--dataset_name",
                "d",
                "--output_dir",
                "o",
            ]
        )
        == 2
    )
    assert "Traceback" in capsys.readouterr().err


def test_debug_flag_of_training_arguments_is_left_to_them():
    from thinker4d.commands import dift, eval

    assert cli._take_debug(dift, ["--debug", "underflow_overflow", "--seed", "1"], False) == (
        False,
        ["--debug", "underflow_overflow", "--seed", "1"],
    )
    assert cli._take_debug(dift, ["--seed", "1", "--debug"], False) == (True, ["--seed", "1"])
    assert cli._take_debug(eval, ["--debug", "x"], False) == (True, ["x"])


def test_bugs_keep_their_traceback(monkeypatch, no_debug_env):
    from thinker4d.commands import demo

    def broken(argv):
        raise RuntimeError("an internal bug")

    monkeypatch.setattr(demo, "main", broken)
    with pytest.raises(RuntimeError, match="an internal bug"):
        cli.main(["demo"])
    # a ValueError that is not a user error is not hidden either
    monkeypatch.setattr(demo, "main", lambda argv: int("x"))
    with pytest.raises(ValueError, match="invalid literal"):
        cli.main(["demo"])


def test_console_entry_point_exit_status(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "THINKER4D_DEBUG"}
    args = [
        "eval",
        "--model_name_or_path",
        "/nonexistent",
        "--benchmark",
        "dsr_bench",
        "--dataset_name",
        "d",
        "--output_dir",
        "o",
    ]
    proc = subprocess.run([sys.executable, "-m", "thinker4d.cli", *args], capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert proc.stderr.startswith(
        "thinker4d eval: error: --model_name_or_path /nonexistent: the local path does not exist"
    )
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------------ --help
_HEAVY = ("torch", "transformers", "datasets", "trl", "thinker4d.models", "thinker4d.commands.dift")


def test_help_lists_the_verbs_without_importing_them_or_torch():
    """`thinker4d --help` imports neither the verbs' modules nor torch / transformers (it starts at once)."""
    code = (
        "import json, sys\n"
        "from thinker4d import cli\n"
        "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps([m for m in {_HEAVY!r} if m in sys.modules]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
    for verb, description in cli.VERBS.items():
        assert f"  {verb:<12} {description}" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "thinker4d.cli", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "quickstart" in proc.stdout, proc.stderr


@pytest.mark.parametrize(
    "verb, own, inherited",
    [
        (
            "dift",
            ["--dataset_name", "--latent_size", "--mode"],
            {"Model and LoRA options": "--lora_r", "Trainer options": "--learning_rate"},
        ),
        (
            "grpo",
            ["--dataset_name", "--max_imagery_blocks"],
            {
                "Model and LoRA options": "--use_peft",
                "GRPO options": "--num_generations",
                "Trainer options": "--learning_rate",
            },
        ),
    ],
)
def test_trainer_verbs_help_shows_their_own_options_first(verb, own, inherited):
    """The verb's own flags come first (right after the usage and a one-line example); the flags inherited from trl /
    transformers follow in their own groups."""
    import importlib

    text = importlib.import_module(f"thinker4d.commands.{verb}").make_parser().format_help()
    lines = text.splitlines()
    assert lines[0].startswith(f"usage: thinker4d {verb} ") and len(lines[0]) < 120
    example = lines.index("example:")
    assert example < 8 and lines[example + 1].startswith(f"  thinker4d {verb} --")
    first_group = min(text.index(f"\n{title} (") for title in inherited)
    for flag in own:
        assert text.index(f"  {flag} ") < first_group, flag
    for title, flag in inherited.items():
        assert text.index(f"\n{title} (") < text.index(f"  {flag} "), (title, flag)
