"""The training recipes (examples/recipes/<Model>/<method>/config_<variant>.yaml) and accelerate configs.

Every recipe is parsed by the verb's own parser (the `--config` code path of `thinker4d dift` / `thinker4d grpo`) into
its config objects; nothing is trained. The recipes ask for bf16, which `TrainingArguments` refuses on a machine
without a bf16 GPU unless `use_cpu` is set, so every parse adds `--use_cpu true` (it changes no hyper-parameter and
keeps `bf16=True` as written). The launch command in each header is parsed by accelerate's own `launch` parser and
its config-file validation.
"""

from __future__ import annotations

import runpy
import shlex
import sys
import warnings
from pathlib import Path

import pytest
import yaml


ROOT = Path(__file__).resolve().parents[1]
RECIPE_DIR = ROOT / "examples" / "recipes"
ACCELERATE_DIR = ROOT / "examples" / "accelerate"
RECIPES = sorted(RECIPE_DIR.glob("*/*/*.yaml"))
ACCELERATE_CONFIGS = sorted(ACCELERATE_DIR.glob("*.yaml"))
MODELS = {"Qwen2.5-VL-3B", "Qwen2.5-VL-7B", "Qwen3-VL-8B"}
CPU = ["--use_cpu", "true"]  # bf16 needs a GPU otherwise; changes no hyper-parameter


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _method(path: Path) -> str:
    return path.parent.name


def parse_recipe(path: Path | str, *flags: str):
    """`(script_args, config, model_args)` exactly as `thinker4d <verb> --config path [flags]` builds them."""
    path = Path(path)
    argv = ["--config", str(path), *flags, *CPU]
    if _method(path) == "dift":
        from thinker4d.commands import dift

        out = dift._parse(argv)
        if len(out) != 3:  # HfArgumentParser returns the keys no dataclass took as an extra Namespace
            raise ValueError(f"{path}: keys that are not `thinker4d dift` options: {sorted(vars(out[-1]))}")
        return out
    if _method(path) == "grpo":
        from thinker4d.commands import grpo

        return grpo._parse(argv)[1:]
    raise ValueError(f"{path}: the folder above a recipe names its verb ('dift' or 'grpo'), got {_method(path)!r}.")


def launch_command(path: Path | str) -> list[str]:
    """The tokens after `accelerate launch` of the first launch command in the recipe's header comment."""
    header = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        header.append(line[1:].strip())
    for i, line in enumerate(header):
        if line.startswith("accelerate launch "):
            parts = [line]
            while parts[-1].endswith("\\") and i + 1 < len(header):
                i += 1
                parts[-1] = parts[-1][:-1]
                parts.append(header[i])
            return shlex.split(" ".join(parts))[2:]
    raise ValueError(
        f"{path}: the header comment has no `accelerate launch ...` command; add the exact launch command."
    )


def parse_launch(tokens: list[str]):
    """accelerate's own parsing and validation of `accelerate launch <tokens>` (config file merged in)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(tokens)
    if args.config_file is None or not (ROOT / args.config_file).is_file():
        raise ValueError(f"the launch command must name an existing accelerate config file, got {args.config_file!r}.")
    args.config_file = str(ROOT / args.config_file)
    args, defaults, _ = _validate_launch_command(args)
    return args, defaults


def _plain(value):
    value = getattr(value, "value", value)  # enums (lr_scheduler_type, ...)
    return value


def test_recipe_tree():
    found = {(p.parts[-3], p.parts[-2]) for p in RECIPES}
    assert {m for m, _ in found} == MODELS
    assert found == {(m, method) for m in MODELS for method in ("dift", "grpo")}
    names = {p.name for p in (RECIPE_DIR / "Qwen2.5-VL-3B" / "dift").glob("*.yaml")}
    assert {
        "config_paper.yaml",
        "config_raw_qa.yaml",
        "config_text_cot.yaml",
        "config_k2.yaml",
        "config_k8.yaml",
    } <= names


@pytest.mark.parametrize("path", RECIPES, ids=_rel)
def test_recipe_builds_config_objects(path):
    from thinker4d.trainers import DIFTConfig
    from thinker4d.trainers.latent_grpo_config import LatentGRPOConfig

    script, args, model_args = parse_recipe(path)
    assert isinstance(args, DIFTConfig if _method(path) == "dift" else LatentGRPOConfig)
    assert args.bf16 is True and args.gradient_checkpointing is True
    # every key reached its dataclass field unchanged
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key, value in raw.items():
        target = next(t for t in (script, model_args, args) if hasattr(t, key))
        got = _plain(getattr(target, key))
        if key == "report_to":
            value = [value]
        assert got == value, f"{_rel(path)}: {key} parsed as {got!r}, the YAML says {value!r}"


@pytest.mark.parametrize("path", RECIPES, ids=_rel)
def test_recipe_header_launch_command(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    tokens = launch_command(path)
    launch, accel = parse_launch(tokens)
    assert launch.module and launch.training_script == "thinker4d.cli"
    verb, *rest = launch.training_script_args
    assert verb == _method(path)
    assert rest[rest.index("--config") + 1] == _rel(path)
    # the exact command line, as the verb would receive it
    if verb == "dift":
        from thinker4d.commands import dift

        out = dift._parse([*rest, *CPU])
        assert len(out) == 3
        model = out[2].model_name_or_path
    else:
        from thinker4d.commands import grpo

        model = grpo._parse([*rest, *CPU])[3].model_name_or_path
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert accel.mixed_precision == ("bf16" if raw.get("bf16") else "no")
    if (accel.deepspeed_config or {}).get("zero3_init_flag") and verb == "dift":
        # zero.Init partitions weights while from_pretrained runs, before from_base could add the latent tokens
        assert not model.startswith("Qwen/"), f"{_rel(path)}: ZeRO-3 needs a converted thinker4d checkpoint"
    if raw.get("use_peft"):
        assert accel.distributed_type.value == "MULTI_GPU"


def test_module_invocation_runs(monkeypatch, capsys):
    # `accelerate launch -m thinker4d.cli <verb>` runs the module as `python -m` does
    for verb in ("dift", "grpo"):
        monkeypatch.setattr(sys, "argv", ["thinker4d.cli", verb, "--help"])
        with warnings.catch_warnings(), pytest.raises(SystemExit) as exit_info:
            warnings.simplefilter("ignore", RuntimeWarning)  # "found in sys.modules": the package is imported already
            runpy.run_module("thinker4d.cli", run_name="__main__", alter_sys=True)
        assert exit_info.value.code == 0
        assert f"usage: thinker4d {verb}" in capsys.readouterr().out


def test_paper_hparams_3b_dift():
    path = RECIPE_DIR / "Qwen2.5-VL-3B" / "dift" / "config_paper.yaml"
    _, args, model_args = parse_recipe(path)
    assert model_args.model_name_or_path == "Qwen/Qwen2.5-VL-3B-Instruct" and not model_args.use_peft
    assert args.mode == "dift" and args.latent_size == 4 and args.imagery_pooling == "raster"
    assert (args.ce_weight, args.imagery_weight) == (0.1, 1.0)
    assert args.learning_rate == 1e-5 and args.num_train_epochs == 1 and args.max_steps == -1
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (1, 1)
    assert args.warmup_steps == 10 and args.weight_decay == 0.01 and _plain(args.lr_scheduler_type) == "linear"
    assert args.bf16 and args.activation_checkpointing
    assert args.frame_max_pixels == args.imagery_max_pixels == 200704
    launch, accel = parse_launch(launch_command(path))
    assert Path(launch.config_file).name == "zero2.yaml" and accel.deepspeed_config["zero_stage"] == 2
    assert launch.num_processes == 8  # 8 GPUs x 1 row = the paper's global batch of 8


def test_paper_hparams_3b_grpo():
    path = RECIPE_DIR / "Qwen2.5-VL-3B" / "grpo" / "config_paper.yaml"
    _, args, _ = parse_recipe(path)
    assert args.learning_rate == 1e-6 and args.num_train_epochs == 1
    assert args.num_generations == 8 and args.beta == 0.01
    assert args.temperature == 1.0 and args.top_p == 0.9
    assert args.reward_weights == [1.0, 0.2] and args.max_completion_length == 8192
    assert args.bf16 and args.gradient_checkpointing and not args.use_vllm
    launch, accel = parse_launch(launch_command(path))
    assert Path(launch.config_file).name == "zero2.yaml" and accel.deepspeed_config["zero_stage"] == 2
    # trl counts completions: 128 prompts x 8 generations per optimizer step, the paper's intended batch
    completions = args.per_device_train_batch_size * args.gradient_accumulation_steps * launch.num_processes
    assert completions // args.num_generations == 128 and completions % args.num_generations == 0
    assert args.per_device_train_batch_size % args.num_generations == 0  # whole groups per micro-batch


@pytest.mark.parametrize("model", sorted(MODELS - {"Qwen2.5-VL-3B"}))
def test_larger_models_keep_paper_rl_batch(model):
    path = RECIPE_DIR / model / "grpo" / "config_full.yaml"
    _, args, _ = parse_recipe(path)
    launch, _ = parse_launch(launch_command(path))
    completions = args.per_device_train_batch_size * args.gradient_accumulation_steps * launch.num_processes
    assert completions == 1024 and args.per_device_train_batch_size % 8 == 0
    assert (args.learning_rate, args.beta, args.num_generations, args.top_p) == (1e-6, 0.01, 8, 0.9)


@pytest.mark.parametrize(
    "variant, field, value",
    [
        ("raw_qa", "mode", "raw_qa"),
        ("text_cot", "mode", "text_cot"),
        ("k2", "latent_size", 2),
        ("k8", "latent_size", 8),
    ],
)
def test_dift_ablation_is_one_field(variant, field, value):
    folder = RECIPE_DIR / "Qwen2.5-VL-3B" / "dift"
    paper = yaml.safe_load((folder / "config_paper.yaml").read_text(encoding="utf-8"))
    ablation = yaml.safe_load((folder / f"config_{variant}.yaml").read_text(encoding="utf-8"))
    changed = {k for k in paper.keys() | ablation.keys() if paper.get(k) != ablation.get(k)}
    assert changed == {field, "output_dir"}
    _, args, _ = parse_recipe(folder / f"config_{variant}.yaml")
    assert getattr(args, field) == value
    # the documented one-flag override of the paper recipe gives the same config
    _, flagged, _ = parse_recipe(
        folder / "config_paper.yaml", f"--{field}", str(value), "--output_dir", args.output_dir
    )
    assert flagged.to_dict() == args.to_dict()


@pytest.mark.parametrize("method", ["dift", "grpo"])
def test_unknown_recipe_key_is_rejected(tmp_path, method):
    (tmp_path / method).mkdir()
    path = tmp_path / method / "config_typo.yaml"
    path.write_text("output_dir: out\nlearning_rat: 1.0e-5\n", encoding="utf-8")
    with pytest.raises(ValueError, match="learning_rat"):
        parse_recipe(path)


def test_header_without_launch_command_is_rejected(tmp_path):
    path = tmp_path / "config_x.yaml"
    path.write_text(
        "# Hardware: one GPU.\n#   thinker4d dift --config config_x.yaml\noutput_dir: out\n", encoding="utf-8"
    )
    with pytest.raises(ValueError, match="no `accelerate launch"):
        launch_command(path)
    with pytest.raises(ValueError, match="existing accelerate config file, got 'examples/accelerate/nope.yaml'"):
        parse_launch(["--config_file", "examples/accelerate/nope.yaml", "-m", "thinker4d.cli", "dift"])


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_config_loads(path, monkeypatch):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import launch_command_parser

    config = ClusterConfig.from_yaml_file(str(path))  # raises on keys accelerate does not know
    assert config.compute_environment.value == "LOCAL_MACHINE"
    assert config.mixed_precision == "bf16" and config.num_machines == 1 and config.num_processes == 8
    expected = {
        "ddp.yaml": ("MULTI_GPU", None),
        "fsdp.yaml": ("FSDP", None),
        "zero2.yaml": ("DEEPSPEED", 2),
        "zero3.yaml": ("DEEPSPEED", 3),
    }
    kind, stage = expected[path.name]
    assert config.distributed_type.value == kind
    if kind == "FSDP":
        _check_fsdp_env(path, monkeypatch)
        return
    if stage is None:
        assert config.deepspeed_config == {}
        return
    launch_options = {a.dest for a in launch_command_parser()._actions}
    assert set(config.deepspeed_config) <= launch_options, set(config.deepspeed_config) - launch_options
    assert config.deepspeed_config["zero_stage"] == stage
    # what `accelerate launch` hands the training processes (deepspeed itself is not needed to build it)
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    for name in ("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "ACCELERATE_GRADIENT_CLIPPING"):
        monkeypatch.delenv(name, raising=False)
    args, defaults = parse_launch(["--config_file", _rel(path), "-m", "thinker4d.cli", "dift"])
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)  # as launch_command sets it
    _, env = prepare_deepspeed_cmd_env(args)
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true" and env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == str(stage)
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    # left to the recipe's TrainingArguments ("auto"), so GRPO's gradient_accumulation_steps is never contradicted
    assert "ACCELERATE_GRADIENT_ACCUMULATION_STEPS" not in env and "ACCELERATE_GRADIENT_CLIPPING" not in env


def _check_fsdp_env(path, monkeypatch):
    """What `accelerate launch` hands the training processes for the FSDP config, and the plugin they build from it."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    args, _ = parse_launch(["--config_file", _rel(path), "-m", "thinker4d.cli", "dift"])
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert env["FSDP_VERSION"] == "2" and env["FSDP_CPU_RAM_EFFICIENT_LOADING"] == "true"
    # activation checkpointing comes from the recipe (Trainer's gradient_checkpointing); both at once is an error
    assert env["FSDP_ACTIVATION_CHECKPOINTING"] == "false"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True and plugin.cpu_ram_efficient_loading
    assert plugin.state_dict_type.name == "FULL_STATE_DICT"
