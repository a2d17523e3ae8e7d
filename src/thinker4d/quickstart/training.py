"""The quickstart's training stages: the supervised variants (and the warm-up) with [`DIFTTrainer`], then 4DRL with
[`LatentGRPOTrainer`]. Each resumes from its last checkpoint."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .config import TRAINED, QuickstartConfig
from .stages import Stage
from .warmup import option_order_variants, option_reading_rows


def stage_train(root: Path, cfg: QuickstartConfig, name: str, init_dir: Path, train) -> Path:
    """Supervised training of one variant (`raw_qa`, `text_cot`, `dift`, the probe's `probe_text_cot` and
    `probe_dift` on the imagery-only rows, or the `warmup`) from `init_dir`."""
    stage = Stage(root, f"train_{name}")
    out = stage.dir / "model"
    if stage.done:
        return out
    from thinker4d.trainers import DIFTConfig, DIFTTrainer, use_training_progress

    steps = cfg.warmup_steps if name == "warmup" else cfg.sft_steps
    args = DIFTConfig(
        output_dir=str(stage.dir / "checkpoints"),
        mode=TRAINED[name],
        # A model trained from scratch must learn the language too: CE gets the same weight as the imagery term
        # (the paper's 0.1 / 1.0 is for a pretrained 3B model). All three variants use the same weights.
        ce_weight=1.0,
        imagery_weight=1.0,
        max_steps=steps,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=max(1, steps // 10),
        weight_decay=0.01,
        adam_beta2=0.98,
        max_grad_norm=1.0,
        logging_steps=5,
        save_steps=max(10, steps // 4),
        save_total_limit=1,
        report_to="none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        dataloader_num_workers=0,
        pre_encode=True,
        cache_imagery_targets=TRAINED[name] == "dift",
        # Slot vectors on the token-embedding scale, in training and decoding alike (see DIFTConfig.latent_norm).
        latent_norm="embedding" if TRAINED[name] == "dift" else None,
    )
    if name == "warmup":
        from datasets import concatenate_datasets

        copies = [option_reading_rows(train, cfg.seed * cfg.option_orders + v) for v in range(cfg.option_orders)]
        rows = concatenate_datasets(copies)
    else:
        rows = option_order_variants(train, cfg.option_orders, cfg.seed)
    trainer = DIFTTrainer(model=str(init_dir), args=args, train_dataset=rows)
    use_training_progress(trainer, description=stage.name, log_file=stage.dir / "log_history.jsonl")
    last = _last_checkpoint(stage.dir / "checkpoints")
    t0 = time.time()
    trainer.train(resume_from_checkpoint=last)
    trainer.save_model(str(out))
    trainer.processing_class.save_pretrained(str(out))
    history = trainer.state.log_history
    (stage.dir / "log_history.json").write_text(json.dumps(history, indent=1))
    stage.finish(train_seconds=round(time.time() - t0, 1), resumed_from=last, steps=trainer.state.global_step)
    return out


def _last_checkpoint(folder: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def stage_grpo(root: Path, cfg: QuickstartConfig, dift_dir: Path, train, budget: int) -> Path:
    stage = Stage(root, "train_dift_grpo")
    out = stage.dir / "model"
    if stage.done:
        return out
    from transformers import AutoProcessor

    from thinker4d.trainers import LatentGRPOConfig, LatentGRPOTrainer, use_training_progress

    processor = AutoProcessor.from_pretrained(str(dift_dir))
    rl_rows = train.remove_columns([c for c in ("cot", "imagery") if c in train.column_names])
    args = LatentGRPOConfig(
        output_dir=str(stage.dir / "checkpoints"),
        max_steps=cfg.grpo_steps,
        per_device_train_batch_size=cfg.batch_size,
        num_generations=cfg.num_generations,
        max_completion_length=budget,
        learning_rate=cfg.grpo_learning_rate,
        beta=0.0,
        temperature=1.0,
        top_p=0.9,  # the paper's rollout sampling
        logging_steps=1,
        save_steps=max(4, cfg.grpo_steps // 2),
        save_total_limit=1,
        report_to="none",
        seed=cfg.seed,
        use_cpu=True,
        bf16=False,
        dataloader_num_workers=0,
        video_fps=cfg.fps,
        video_max_frames=cfg.num_frames,
        video_max_pixels=None,
        activation_checkpointing=False,
    )
    trainer = LatentGRPOTrainer(model=str(dift_dir), args=args, train_dataset=rl_rows, processing_class=processor)
    use_training_progress(trainer, description=stage.name, log_file=stage.dir / "log_history.jsonl")
    last = _last_checkpoint(stage.dir / "checkpoints")
    t0 = time.time()
    trainer.train(resume_from_checkpoint=last)
    trainer.save_model(str(out))
    processor.save_pretrained(str(out))
    (stage.dir / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    stage.finish(train_seconds=round(time.time() - t0, 1), resumed_from=last, steps=trainer.state.global_step)
    return out
