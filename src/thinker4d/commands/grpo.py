"""`thinker4d grpo`: 4DRL (GRPO with latent imagery rollouts) on DSR-Train or docs/design.md RL rows.

Every [`LatentGRPOConfig`] field is a flag, and so is every field of trl's `ModelConfig` (`--dtype`, default
`bfloat16` here; `--use_peft`, `--lora_r`, ..., as in `trl grpo`); `--config x.yaml` (or `--config=x.yaml`) supplies
defaults that flags override (an `env:` mapping in it sets environment variables, as in trl). The former
`--dataset_split` still works, with a deprecation warning. `--resume_from_checkpoint` takes a
`checkpoint-N` folder, an output folder or `true` (the last complete checkpoint of `--output_dir`) and continues that
run's step count, optimizer and RNG states; incomplete checkpoints are skipped with a warning. The terminal shows a
progress bar with the latest loss and reward; the log dicts go to `<output_dir>/log_history.jsonl`.

```bash
thinker4d grpo --config examples/recipes/Qwen2.5-VL-3B/grpo/config_paper.yaml
accelerate launch --num_processes 8 -m thinker4d.commands.grpo --config ... --model_name_or_path out/dift-3b
```
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field


@dataclass
class GRPOScriptArguments:
    """Arguments of `thinker4d grpo` besides training and model flags (trl's `ScriptArguments` names)."""

    dataset_name: str = field(
        default=None, metadata={"help": "DSR-Train JSONL, a parquet/JSONL of RL rows, or a Hub id."}
    )
    dataset_train_split: str = field(default="train", metadata={"help": "Split of a Hub dataset."})
    video_root: str | None = field(
        default=None, metadata={"help": "Folder the DSR-Train video paths are relative to."}
    )


# Deprecated flag names (and --config keys) -> the current ones; they still work, with a warning, for one release.
RENAMED = {"dataset_split": "dataset_train_split"}


def make_parser() -> argparse.ArgumentParser:
    from transformers import TrainingArguments
    from trl import GRPOConfig, ModelConfig, TrlParser

    from thinker4d.trainers.latent_grpo_config import LatentGRPOConfig

    from .options import trainer_parser
    from .trainer_args import ModelArguments

    parser = trainer_parser(
        TrlParser,
        (GRPOScriptArguments, LatentGRPOConfig, ModelArguments),
        "grpo",
        __doc__,
        "--model_name_or_path CKPT --dataset_name DATA --output_dir DIR [--config YAML] [options]",
        "--config examples/recipes/Qwen2.5-VL-3B/grpo/config_paper.yaml",
        ("Model and LoRA options (trl.ModelConfig)", ModelConfig),
        ("GRPO options (trl.GRPOConfig)", GRPOConfig),
        ("Trainer options (transformers.TrainingArguments)", TrainingArguments),
    )
    parser.set_defaults(dtype="bfloat16")  # rollouts in bfloat16 unless asked otherwise
    return parser


def _parse(argv: list[str] | None):
    """`(parser, script, training, model)` arguments of `thinker4d grpo`."""
    from .trainer_args import parse_trainer_args

    parser = make_parser()
    return parser, *parse_trainer_args(parser, argv, "grpo", RENAMED)


def _load_rows(script):
    from datasets import load_dataset

    from thinker4d.data.dsr_train import convert_dsr_train

    from .options import require_path

    path = script.dataset_name
    if script.video_root is not None:
        require_path(script.video_root, "--video_root", "folder")
    if path.endswith((".jsonl", ".json", ".parquet")):
        require_path(path, "--dataset_name", "file")
    if path.endswith((".jsonl", ".json")):
        ds = load_dataset("json", data_files=path, split="train")
    elif path.endswith(".parquet"):
        ds = load_dataset("parquet", data_files=path, split="train")
    else:
        from thinker4d.datasets_io import load_thinker4d_dataset

        ds = load_thinker4d_dataset(path, split=script.dataset_train_split)
    if "Question" in ds.column_names:
        ds = convert_dsr_train(ds, video_root=script.video_root)
    return ds


def main(argv: list[str] | None = None) -> int:
    parser, script, args, model_args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not model_args.model_name_or_path or not script.dataset_name:
        parser.error("--model_name_or_path and --dataset_name are required (or set them in --config).")
    from transformers import set_seed

    import thinker4d.models  # noqa: F401 -- registers the thinker4d auto classes
    from thinker4d.trainers.checkpointing import resolve_resume_checkpoint
    from thinker4d.trainers.latent_grpo_trainer import LatentGRPOTrainer
    from thinker4d.trainers.progress import use_training_progress

    from .options import check_model, input_errors
    from .trainer_args import model_init_kwargs, peft_config

    check_model(model_args.model_name_or_path)
    resume = resolve_resume_checkpoint(args.resume_from_checkpoint, args.output_dir)
    set_seed(args.seed)
    with input_errors():
        train = _load_rows(script)
    args.model_init_kwargs = model_init_kwargs(model_args, args)
    trainer = LatentGRPOTrainer(
        model_args.model_name_or_path, args=args, train_dataset=train, peft_config=peft_config(model_args)
    )
    use_training_progress(trainer, description="grpo")  # a bar instead of a printed dict per log; dicts go to a file
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(args.output_dir)
    if args.push_to_hub:
        trainer.push_to_hub()
    return 0


if __name__ == "__main__":
    from thinker4d.cli import main as cli_main

    raise SystemExit(cli_main(["grpo", *sys.argv[1:]]))
