"""`thinker4d grpo`: 4DRL (GRPO with latent imagery rollouts) on DSR-Train or docs/design.md RL rows.

```bash
thinker4d grpo --config examples/recipes/Qwen2.5-VL-3B/grpo/config_paper.yaml
accelerate launch --num_processes 8 -m thinker4d.commands.grpo --config ... --model_name_or_path out/dift-3b
```
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field


@dataclass
class GRPOScriptArguments:
    model_name_or_path: str = field(default=None, metadata={"help": "thinker4d checkpoint (e.g. a DIFT output)."})
    dataset_name: str = field(
        default=None, metadata={"help": "DSR-Train JSONL, a parquet/JSONL of RL rows, or a Hub id."}
    )
    dataset_split: str = field(default="train", metadata={"help": "Split of a Hub dataset."})
    video_root: str | None = field(
        default=None, metadata={"help": "Folder the DSR-Train video paths are relative to."}
    )
    dtype: str = field(default="bfloat16", metadata={"help": "Model dtype."})


def make_parser() -> argparse.ArgumentParser:
    from trl import TrlParser

    from thinker4d.trainers.latent_grpo_config import LatentGRPOConfig

    return TrlParser((GRPOScriptArguments, LatentGRPOConfig), prog="thinker4d grpo")


def _load_rows(script):
    from datasets import load_dataset

    from thinker4d.data.dsr_train import convert_dsr_train

    path = script.dataset_name
    if path.endswith((".jsonl", ".json")):
        ds = load_dataset("json", data_files=path, split="train")
    elif path.endswith(".parquet"):
        ds = load_dataset("parquet", data_files=path, split="train")
    else:
        from thinker4d.datasets_io import load_thinker4d_dataset

        ds = load_thinker4d_dataset(path, split=script.dataset_split)
    if "Question" in ds.column_names:
        ds = convert_dsr_train(ds, video_root=script.video_root)
    return ds


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    script, args = parser.parse_args_and_config(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not script.model_name_or_path or not script.dataset_name:
        parser.error("--model_name_or_path and --dataset_name are required (or set them in --config).")
    from transformers import set_seed

    import thinker4d  # noqa: F401 -- registers the thinker4d auto classes
    from thinker4d.trainers.latent_grpo_trainer import LatentGRPOTrainer

    set_seed(args.seed)
    train = _load_rows(script)
    args.model_init_kwargs = {**(args.model_init_kwargs or {}), "dtype": script.dtype}
    trainer = LatentGRPOTrainer(script.model_name_or_path, args=args, train_dataset=train)
    trainer.train()
    trainer.save_model(args.output_dir)
    if args.push_to_hub:
        trainer.push_to_hub()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
