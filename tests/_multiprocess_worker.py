"""Training runs that tests/test_multiprocess.py starts with `accelerate launch` (2 CPU processes, gloo) and, for the
one-process reference, calls in-process. Each run writes what every rank saw to `<out>/<task>_rank<k>.json`.

Usage: `python _multiprocess_worker.py {dift,grpo} OUTPUT_DIR [per_device_batch]`
"""

import json
import os
import sys
from pathlib import Path

import torch


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _tiny_model(latent_size=2):
    import thinker4d
    from thinker4d.tiny import build_tiny_model, build_tiny_processor

    processor = build_tiny_processor("qwen2_5_vl")
    return thinker4d.from_base(build_tiny_model("qwen2_5_vl", processor), processor, latent_size=latent_size)


def _dump(out: Path, name: str, trainer, record: dict) -> None:
    rank, world = trainer.accelerator.process_index, trainer.accelerator.num_processes
    (out / f"{name}_rank{rank}.json").write_text(json.dumps({"rank": rank, "world": world, **record}))


class _RecordingCollator:
    """The trainer's collator, noting the ids of the rows this rank is given."""

    def __init__(self, collator, seen):
        self.collator, self.seen = collator, seen

    def __call__(self, rows):
        self.seen.append([r["id"] for r in rows])
        return self.collator(rows)


# ------------------------------------------------------------------------------------------------------------- DIFT
# Rows without imagery in the "mixed" run: with seed 0 the sampler pairs rows (4, 0), (7, 3), (2, 5), (1, 6), so at
# each step one rank gets a row with an imagery block and the other a row without (the test checks that it happened).
NO_IMAGERY = {0, 3, 5, 6}


def dift_rows(n=8, mixed=False):
    """`n` rows with identical token and latent-slot counts (so a per-rank mean equals the global mean) but their own
    frames and overlays; `mixed`: the `NO_IMAGERY` rows have no imagery block."""
    from test_dift import make_row

    return [make_row(i, n_imagery=0 if mixed and i in NO_IMAGERY else 1, n_frames=2) for i in range(n)]


def run_dift(out: Path, per_device_batch: int, max_steps: int = 4, resume_at: int = 2) -> dict:
    """Trains `max_steps` steps saving every `resume_at` ("full"), then again from `checkpoint-<resume_at>` with a
    fresh model ("resumed"), then 2 steps on rows where the `NO_IMAGERY` ones have no imagery block ("mixed": one
    rank's micro-batch has imagery, the other's none). Returns (and writes) each run's logged losses and the rows each
    step saw on this rank."""
    import datasets

    from thinker4d.trainers import DIFTConfig, DIFTTrainer

    result = {}
    for phase in ("full", "resumed", "mixed"):
        data = dift_rows(mixed=phase == "mixed")
        model, processor = _tiny_model()
        args = DIFTConfig(
            output_dir=str(out / f"dift-{phase}" if phase == "mixed" else out / "dift"),
            max_steps=max_steps if phase != "mixed" else 2,
            per_device_train_batch_size=per_device_batch,
            logging_steps=1,
            learning_rate=1e-3,
            warmup_steps=0,
            weight_decay=0.0,
            report_to="none",
            activation_checkpointing=False,
            save_strategy="steps" if phase != "mixed" else "no",
            save_steps=resume_at,
            use_cpu=True,
            disable_tqdm=True,
            seed=0,
            latent_size=2,
            dataloader_num_workers=0,
        )
        trainer = DIFTTrainer(
            model=model, args=args, train_dataset=datasets.Dataset.from_list(data), processing_class=processor
        )
        seen = []
        trainer.data_collator = _RecordingCollator(trainer.data_collator, seen)
        resume = str(out / "dift" / f"checkpoint-{resume_at}") if phase == "resumed" else None
        trainer.train(resume_from_checkpoint=resume)
        result[phase] = {
            "logs": [h for h in trainer.state.log_history if "loss" in h],
            "seen": seen,
            "global_step": trainer.state.global_step,
        }
    _dump(out, "dift", trainer, result)
    return result


# ------------------------------------------------------------------------------------------------------------- GRPO
class _Imagery:
    """Rank 0's rollouts open an imagery block at their first step; rank 1's never open one and end after 3 tokens."""

    def __init__(self, trainer):
        self.start_id, self.eos_id = trainer.latent_start_id, trainer.eos_token_ids[0]
        self.rank, self.prompt_len = trainer.accelerator.process_index, None

    def __call__(self, input_ids, scores):
        if self.prompt_len is None or input_ids.shape[1] < self.prompt_len:  # a new rollout batch
            self.prompt_len = input_ids.shape[1]
        step, scores = input_ids.shape[1] - self.prompt_len, scores.clone()
        if self.rank != 0:
            scores[:, self.start_id] = -float("inf")
        forced = (
            self.start_id if self.rank == 0 and step == 0 else self.eos_id if self.rank != 0 and step == 2 else None
        )
        if forced is not None:
            scores[:] = -float("inf")
            scores[:, forced] = 0.0
        return scores


def run_grpo(out: Path, max_steps: int = 2, resume_at: int = 1) -> dict:
    """LatentGRPO with 2 prompts x 2 generations per step over all ranks; rank 0's rollouts open imagery blocks and
    rank 1's do not. Trains `max_steps`, then again from `checkpoint-<resume_at>`; records per step the prompts, the
    rewards this rank computed, its advantages and its latent slots."""
    from datasets import Dataset

    from test_grpo import make_rows
    from thinker4d.rewards import completion_text
    from thinker4d.trainers import LatentGRPOConfig, LatentGRPOTrainer

    result, steps = {}, []

    def length_reward(completions, **kwargs):
        rewards = [float(len(completion_text(c)) % 5) for c in completions]
        steps[-1]["rewards"] = rewards
        return rewards

    class Recording(LatentGRPOTrainer):
        def _generate_and_score_completions(self, inputs):
            steps.append({"ids": [x["id"] for x in inputs]})
            output = super()._generate_and_score_completions(inputs)
            ids = output["completion_ids"]
            steps[-1].update(
                advantages=output["advantages"].tolist(),
                lengths=[int(m.sum()) for m in output["completion_mask"]],
                latent_slots=[int((row == self.latent_pad_id).sum()) for row in ids],
            )
            return output

    for phase in ("full", "resumed"):
        steps.clear()
        model, processor = _tiny_model(latent_size=2)
        args = LatentGRPOConfig(
            output_dir=str(out / "grpo"),
            max_steps=max_steps,
            per_device_train_batch_size=2,
            num_generations=2,
            max_completion_length=8,
            learning_rate=1e-2,
            logging_steps=1,
            report_to="none",
            save_strategy="steps",
            save_steps=resume_at,
            use_cpu=True,
            beta=0.0,
            scale_rewards="batch",  # the std is over the gathered batch, so a rank that did not gather would differ
            disable_tqdm=True,
            dataloader_num_workers=0,
            seed=0,
            bf16=False,
        )
        trainer = Recording(
            model,
            reward_funcs=[length_reward],
            args=args,
            train_dataset=Dataset.from_list(make_rows(4, frames=2)),
            processing_class=processor,
        )
        trainer.rollout_logits_processor = [_Imagery(trainer)]
        resume = str(out / "grpo" / f"checkpoint-{resume_at}") if phase == "resumed" else None
        trainer.train(resume_from_checkpoint=resume)
        result[phase] = {
            "steps": list(steps),
            "logs": [h for h in trainer.state.log_history if "loss" in h],
            "global_step": trainer.state.global_step,
        }
    _dump(out, "grpo", trainer, result)
    return result


if __name__ == "__main__":
    torch.set_num_threads(1)
    task, output = sys.argv[1], Path(sys.argv[2])
    if task == "dift":
        run_dift(output, int(sys.argv[3]))
    elif task == "grpo":
        run_grpo(output)
    else:
        raise SystemExit(f"unknown task {task!r}; use dift or grpo")
