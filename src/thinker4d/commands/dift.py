"""`thinker4d dift`: Dynamic-Imagery Fine-Tuning of a Qwen2.5-VL / Qwen3-VL checkpoint on 4D CoT data.

Every [`DIFTConfig`] / `TrainingArguments` field is a flag, and so is every field of trl's `ModelConfig` (`--dtype`,
`--use_peft`, `--lora_r`, ..., as in `trl sft`); `--config x.yaml` (or `--config=x.yaml`) supplies defaults that flags
override. The former `--model`, `--dataset`, `--dataset_split` and `--eval_split` still work, with a deprecation
warning. `--resume_from_checkpoint` takes a `checkpoint-N` folder, an output folder or `true` (the last
complete checkpoint of `--output_dir`); incomplete checkpoints (a run killed while writing one) are skipped with a
warning. The terminal shows a progress bar with the latest loss; the log dicts go to `<output_dir>/log_history.jsonl`.

```bash
thinker4d dift --model_name_or_path Qwen/Qwen2.5-VL-3B-Instruct --dataset_name my/4d-cot --output_dir out/dift
thinker4d dift --model_name_or_path Qwen/Qwen2.5-VL-3B-Instruct --dataset_name train.jsonl --image_root data/ \\
    --mode text_cot --use_peft --lora_r 16 ...
accelerate launch --config_file examples/accelerate/zero2.yaml -m thinker4d.cli dift --model_name_or_path ... ...
```
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field


@dataclass
class DIFTScriptArguments:
    """Arguments of `thinker4d dift` besides training and model flags (trl's `ScriptArguments` names)."""

    dataset_name: str = field(
        default=None,
        metadata={"help": "4D CoT data: Hub id, save_to_disk folder, parquet file(s), or a paper-layout .jsonl file."},
    )
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_test_split: str = field(
        default="test", metadata={"help": "Split to evaluate on; used when --eval_strategy is not 'no'."}
    )
    image_root: str | None = field(
        default=None, metadata={"help": "Folder for relative image paths of a .jsonl file."}
    )


# Deprecated flag names (and --config keys) -> the current ones; they still work, with a warning, for one release.
RENAMED = {
    "model": "model_name_or_path",
    "dataset": "dataset_name",
    "dataset_split": "dataset_train_split",
    "eval_split": "dataset_test_split",
}


def make_parser():
    from transformers import TrainingArguments
    from trl import ModelConfig, TrlParser

    from thinker4d.trainers import DIFTConfig

    from .options import trainer_parser
    from .trainer_args import ModelArguments

    return trainer_parser(
        TrlParser,
        (DIFTScriptArguments, DIFTConfig, ModelArguments),
        "dift",
        __doc__,
        "--model_name_or_path MODEL --dataset_name DATA --output_dir DIR [--config YAML] [options]",
        "--model_name_or_path Qwen/Qwen2.5-VL-3B-Instruct --dataset_name my/4d-cot --output_dir out/dift",
        ("Model and LoRA options (trl.ModelConfig)", ModelConfig),
        ("Trainer options (transformers.TrainingArguments)", TrainingArguments),
    )


def _parse(argv: list[str] | None):
    """`(script, training, model)` arguments of `thinker4d dift`."""
    from .trainer_args import parse_trainer_args

    return parse_trainer_args(make_parser(), argv, "dift", RENAMED)


def _load_dataset(script: DIFTScriptArguments):
    import os

    import datasets

    from .options import require_path

    data, split = script.dataset_name, script.dataset_train_split
    if script.image_root is not None:
        require_path(script.image_root, "--image_root", "folder")
    if data.endswith((".jsonl", ".parquet")):
        require_path(data, "--dataset_name", "file")
    if data.endswith(".jsonl"):
        from thinker4d.data.paper_jsonl import load_paper_jsonl

        return {split: load_paper_jsonl(data, image_root=script.image_root)}
    if os.path.isdir(data) and os.path.isfile(os.path.join(data, "dataset_dict.json")):
        return datasets.load_from_disk(data)
    if os.path.isdir(data) and os.path.isfile(os.path.join(data, "dataset_info.json")):
        return {split: datasets.load_from_disk(data)}
    if data.endswith(".parquet"):
        return datasets.load_dataset("parquet", data_files={split: data})
    from thinker4d.datasets_io import load_thinker4d_dataset

    return load_thinker4d_dataset(data)


def _splits(data, script: DIFTScriptArguments, evaluate: bool):
    """The training split and, when the run evaluates (`--eval_strategy` not `no`, as in `trl sft`), the test split."""
    from thinker4d.errors import UserValueError

    names = [("--dataset_train_split", script.dataset_train_split)]
    if evaluate:
        names.append(("--dataset_test_split", script.dataset_test_split))
    for flag, name in names:
        if name not in data:
            raise UserValueError(
                f"{flag} {name}: {script.dataset_name} has no such split; it has {sorted(data)}. Pass one of them."
            )
    return data[script.dataset_train_split], data[script.dataset_test_split] if evaluate else None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    script, args, model_args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not model_args.model_name_or_path or not script.dataset_name:
        make_parser().error("--model_name_or_path and --dataset_name are required (or set them in --config).")

    from transformers import set_seed

    from thinker4d.trainers import DIFTTrainer, use_training_progress
    from thinker4d.trainers.checkpointing import resolve_resume_checkpoint

    from .options import check_model, input_errors
    from .trainer_args import model_init_kwargs, peft_config

    check_model(model_args.model_name_or_path)
    resume = resolve_resume_checkpoint(args.resume_from_checkpoint, args.output_dir)
    set_seed(args.seed)
    with input_errors():
        train_data, eval_data = _splits(_load_dataset(script), script, evaluate=args.eval_strategy != "no")
    args.model_init_kwargs = model_init_kwargs(model_args, args)
    trainer = DIFTTrainer(
        model=model_args.model_name_or_path,
        args=args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        peft_config=peft_config(model_args),
    )
    use_training_progress(trainer, description="dift")  # a bar instead of a printed dict per log; dicts go to a file
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(args.output_dir)
    if trainer.accelerator.is_main_process:
        trainer.processing_class.save_pretrained(args.output_dir)
    if args.push_to_hub:
        trainer.push_to_hub()
    return 0


if __name__ == "__main__":
    from thinker4d.cli import main as cli_main

    sys.exit(cli_main(["dift", *sys.argv[1:]]))
