"""`thinker4d dift`: Dynamic-Imagery Fine-Tuning of a Qwen2.5-VL / Qwen3-VL checkpoint on 4D CoT data.

Every [`DIFTConfig`] / `TrainingArguments` field is a flag; `--config x.yaml` (or `--config=x.yaml`) supplies defaults
that flags override. `--resume_from_checkpoint` takes a `checkpoint-N` folder, an output folder or `true` (the last
complete checkpoint of `--output_dir`); incomplete checkpoints (a run killed while writing one) are skipped with a
warning. The terminal shows a progress bar with the latest loss; the log dicts go to `<output_dir>/log_history.jsonl`.

```bash
thinker4d dift --model Qwen/Qwen2.5-VL-3B-Instruct --dataset my/4d-cot --output_dir Qwen2.5-VL-3B-DIFT
thinker4d dift --model Qwen/Qwen2.5-VL-3B-Instruct --dataset train.jsonl --image_root data/ --mode text_cot ...
accelerate launch --config_file examples/accelerate/zero2.yaml -m thinker4d.cli dift --model ... --dataset ...
```
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field


@dataclass
class DIFTScriptArguments:
    """Arguments of `thinker4d dift` that are not training knobs."""

    model: str = field(
        default=None, metadata={"help": "Hub id or folder of a Qwen2.5-VL / Qwen3-VL or thinker4d model."}
    )
    dataset: str = field(
        default=None,
        metadata={"help": "4D CoT data: Hub id, save_to_disk folder, parquet file(s), or a paper-layout .jsonl file."},
    )
    dataset_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str | None = field(default=None, metadata={"help": "Split to evaluate on (optional)."})
    image_root: str | None = field(
        default=None, metadata={"help": "Folder for relative image paths of a .jsonl file."}
    )
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters instead of the full LLM."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    lora_target_modules: str = field(
        default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj",
        metadata={"help": "Comma-separated LLM module names for LoRA (the vision tower stays frozen)."},
    )
    config: str | None = field(default=None, metadata={"help": "YAML file with defaults for any flag."})


def make_parser():
    from transformers import HfArgumentParser, TrainingArguments

    from thinker4d.trainers import DIFTConfig

    from .options import trainer_parser

    return trainer_parser(
        HfArgumentParser,
        (DIFTScriptArguments, DIFTConfig),
        "dift",
        __doc__,
        "--model MODEL --dataset DATASET --output_dir DIR [--config YAML] [options]",
        "--model Qwen/Qwen2.5-VL-3B-Instruct --dataset my/4d-cot --output_dir out/dift",
        ("Trainer options (transformers.TrainingArguments)", TrainingArguments),
    )


def _parse(argv: list[str]):
    from .options import input_errors, read_config, split_config

    parser = make_parser()
    path, argv = split_config(argv)
    if path is not None:
        defaults = read_config(path, "dift", known={action.dest for action in parser._actions})
        parser.set_defaults(**defaults)
    with input_errors(ValueError):  # e.g. a DIFTConfig / TrainingArguments value its __post_init__ refuses
        return parser.parse_args_into_dataclasses(argv)


def _load_dataset(script: DIFTScriptArguments):
    import os

    import datasets

    from .options import require_path

    if script.image_root is not None:
        require_path(script.image_root, "--image_root", "folder")
    if script.dataset.endswith((".jsonl", ".parquet")):
        require_path(script.dataset, "--dataset", "file")
    if script.dataset.endswith(".jsonl"):
        from thinker4d.data.paper_jsonl import load_paper_jsonl

        return {script.dataset_split: load_paper_jsonl(script.dataset, image_root=script.image_root)}
    if os.path.isdir(script.dataset) and os.path.isfile(os.path.join(script.dataset, "dataset_dict.json")):
        return datasets.load_from_disk(script.dataset)
    if os.path.isdir(script.dataset) and os.path.isfile(os.path.join(script.dataset, "dataset_info.json")):
        return {script.dataset_split: datasets.load_from_disk(script.dataset)}
    if script.dataset.endswith(".parquet"):
        return datasets.load_dataset("parquet", data_files={script.dataset_split: script.dataset})
    from thinker4d.datasets_io import load_thinker4d_dataset

    return load_thinker4d_dataset(script.dataset)


def _splits(data, script: DIFTScriptArguments):
    from thinker4d.errors import UserValueError

    names = [script.dataset_split] + ([script.eval_split] if script.eval_split else [])
    for flag, name in zip(("--dataset_split", "--eval_split"), names):
        if name not in data:
            raise UserValueError(
                f"{flag} {name}: {script.dataset} has no such split; it has {sorted(data)}. Pass one of them."
            )
    return data[script.dataset_split], data[script.eval_split] if script.eval_split else None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    script, args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not script.model or not script.dataset:
        make_parser().error("--model and --dataset are required")

    from transformers import set_seed

    from thinker4d.trainers import DIFTTrainer, use_training_progress
    from thinker4d.trainers.checkpointing import resolve_resume_checkpoint

    from .options import check_model, input_errors

    check_model(script.model)
    resume = resolve_resume_checkpoint(args.resume_from_checkpoint, args.output_dir)
    set_seed(args.seed)
    with input_errors():
        train_data, eval_data = _splits(_load_dataset(script), script)
    peft_config = None
    if script.use_peft:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=script.lora_r,
            lora_alpha=script.lora_alpha,
            target_modules=[m.strip() for m in script.lora_target_modules.split(",") if m.strip()],
            task_type="CAUSAL_LM",
        )
    trainer = DIFTTrainer(
        model=script.model,
        args=args,
        train_dataset=train_data,
        eval_dataset=eval_data,
        peft_config=peft_config,
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
