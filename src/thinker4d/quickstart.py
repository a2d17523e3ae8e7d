"""The offline end-to-end main job: synthetic world -> 4D CoT synthesis -> DIFT -> 4DRL -> SynthDSR evaluation against
the untrained model and the paper's supervised ablations (raw-QA SFT, text-only CoT SFT), with a report.

Paper: https://huggingface.co/papers/2605.05997 (Table 3: Raw QA SFT / CoT SFT / DIFT / DIFT + 4DRL). What differs
from the paper, and why:

1. Scale. Everything runs on a CPU in minutes: a tiny Qwen2.5-VL (random init, 2 text layers) instead of
   Qwen2.5-VL-3B, a few hundred synthetic clips of 8 frames at 56 px instead of 38K SpatialVID samples, a few hundred
   optimizer steps. The numbers say whether the *mechanism* trains, not what the paper's model scores.
2. The tokenizer is byte-level BPE learned from the training texts in milliseconds (a real Qwen vocabulary would
   make the tiny model's output layer dominate the compute).
3. The learning rate is the one that trains a tiny random model (2e-3, cosine), not the paper's 1e-5 for a
   pretrained 3B model, and the CE weight is 1.0 instead of 0.1 (a model from scratch must also learn the language).
   All three supervised variants get the same data, steps, batch, learning rate and loss weights.
4. The rule teacher writes its compact CoT (`cot_style="compact"`), and the world's camera motion is restricted to
   four rotations (`camera_motions`), which a tiny model learns in minutes; SynthDSR is built with the same
   restriction, so training and evaluation match.
5. The RL phase is short (tens of steps) and only shows that 4DRL runs on-policy from the DIFT model (rollouts
   sample with the paper's temperature 1.0 and top_p 0.9).
6. A random model cannot read a multiple-choice list, and a pretrained LLM can: every model (the "untrained" one
   included) starts from a short option-reading warm-up ([`option_reading_rows`]: "Which option says Tilt Up?"
   over the training set's option texts; the clip carries no information about the answer), because mapping the
   motion it names to the shuffled option letter is what a random model fails to learn within the budget
   (docs/quickstart.md).
7. DIFT scales every vector at a latent slot to the token-embedding norm (`DIFTConfig.latent_norm="embedding"`), in
   training and decoding alike; unscaled (the paper), the slots carry pooled vision features in training and
   last-layer hidden states at inference, whose norms can be far from the token embeddings' (docs/dift.md).
8. Reading the shuffled option letter was this tiny model's bottleneck: it named the motion and paired it with a
   wrong letter. The compact CoT therefore ends with an option scan, "The camera: Pan Right. A. Tilt Up? No. B. Pan
   Right? Yes = B." ([`thinker4d.data.cot.option_scan`]), and the warm-up trains the same scan (docs/quickstart.md).
   `--num-kv-heads`, `--warmup-steps` and `--option-orders` are knobs for experiments on this bottleneck.

Every stage writes its results under the output folder and a `DONE.json` marker last; a rerun (for instance after
Ctrl-C) reuses finished stages, which keep the times recorded when they ran, and resumes unfinished ones (synthesis per
clip, training from the last checkpoint, evaluation per question). While it runs, `datasets_cache/` in the output folder holds the datasets cache of the
training data (its Arrow copy and pre-encoded rows); the folder is removed when the run finishes.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path


logger = logging.getLogger(__name__)

MODELS = ("untrained", "raw_qa", "text_cot", "dift", "dift_grpo")
LATENT_SIZE = 4  # K of the quickstart model (the paper's)
CACHE_DIR = "datasets_cache"  # under the output folder; removed when the run finishes
TRAINED = {"warmup": "text_cot", "raw_qa": "raw_qa", "text_cot": "text_cot", "dift": "dift"}
LABELS = {
    "warmup": "option-reading warm-up",
    "chance": "chance",
    "untrained": "untrained",
    "raw_qa": "raw-QA SFT",
    "text_cot": "text CoT SFT",
    "dift": "DIFT",
    "dift_grpo": "DIFT + 4DRL",
}


@dataclass
class QuickstartConfig:
    """Settings of `thinker4d quickstart` (every field is also a `--flag`).

    > Parameters that control the data

    Args:
        train_clips (`int`): synthetic training clips (world seeds 0..N-1).
        eval_questions (`int`): held-out SynthDSR questions (seeds >= 1,000,000).
        tasks (`list[str]`): question tasks, the same for training and SynthDSR.
        camera_motions (`list[str]`): the camera-motion classes of this small world (default the four rotations,
            which the tiny model learns within the default budget); distractors come from the same list, for
            training and SynthDSR alike. Pass all twelve SpatialVID classes for the full world.
        num_frames (`int`), size (`int`), fps (`float`): clip shape.

    > Parameters that control the models and training

    Args:
        hidden_size, num_layers, vision_hidden_size, vision_depth (`int`): the tiny Qwen2.5-VL.
        num_heads, num_kv_heads (`int`): its text attention heads (default grouped-query, 4 query and 2 key/value
            heads, the Qwen ratio).
        vocab_size (`int`): BPE vocabulary learned from the training texts.
        warmup_steps (`int`): steps of the option-reading warm-up ([`option_reading_rows`]) that every model, the
            untrained one included, starts from; 0 skips it.
        option_orders (`int`): copies of every training row with its options in other orders
            ([`option_order_variants`]; the warm-up gets as many draws); 1 trains on the rows as synthesized.
        sft_steps, batch_size (`int`), learning_rate (`float`): the same for raw-QA, text-CoT and DIFT.
        grpo_steps, num_generations (`int`), grpo_learning_rate (`float`): the 4DRL phase.
        max_new_tokens (`int`): generation budget of evaluation and rollouts; 0 derives it from the training CoTs.
        seed (`int`).
    """

    train_clips: int = field(default=1600, metadata={"help": "synthetic training clips"})
    eval_questions: int = field(default=180, metadata={"help": "held-out SynthDSR questions"})
    tasks: list = field(
        default_factory=lambda: ["camera_motion", "object_distance"],
        metadata={"help": "question tasks (training and SynthDSR)"},
    )
    camera_motions: list = field(
        default_factory=lambda: ["Pan Left", "Pan Right", "Tilt Up", "Tilt Down"],
        metadata={"help": "camera-motion classes of the quickstart world (training and SynthDSR alike)"},
    )
    num_frames: int = field(default=8, metadata={"help": "frames per clip"})
    size: int = field(default=56, metadata={"help": "clip height and width in pixels"})
    fps: float = field(default=4.0, metadata={"help": "clip frame rate"})
    hidden_size: int = field(default=128, metadata={"help": "text hidden size"})
    num_layers: int = field(default=2, metadata={"help": "text layers"})
    num_heads: int = field(default=4, metadata={"help": "text attention heads"})
    num_kv_heads: int = field(default=2, metadata={"help": "text key/value heads (grouped-query attention)"})
    vision_hidden_size: int = field(default=64, metadata={"help": "vision hidden size"})
    vision_depth: int = field(default=2, metadata={"help": "vision layers"})
    vocab_size: int = field(default=1024, metadata={"help": "BPE vocabulary size"})
    warmup_steps: int = field(
        default=800, metadata={"help": "option-reading warm-up steps before every model (0: none)"}
    )
    option_orders: int = field(
        default=1, metadata={"help": "copies of every training row, each with its options in another order (1: none)"}
    )
    sft_steps: int = field(default=800, metadata={"help": "optimizer steps per supervised model"})
    batch_size: int = field(default=16, metadata={"help": "rows per step"})
    learning_rate: float = field(default=2e-3, metadata={"help": "supervised learning rate"})
    grpo_steps: int = field(default=12, metadata={"help": "4DRL optimizer steps"})
    num_generations: int = field(default=4, metadata={"help": "4DRL group size G"})
    grpo_learning_rate: float = field(default=2e-5, metadata={"help": "4DRL learning rate"})
    max_new_tokens: int = field(
        default=0, metadata={"help": "generation budget for evaluation and 4DRL (0: from the longest training CoT)"}
    )
    seed: int = field(default=0, metadata={"help": "random seed"})

    def __post_init__(self):
        if self.train_clips < 8 or self.eval_questions < len(self.tasks):
            raise ValueError("Need train_clips >= 8 and eval_questions >= the number of tasks.")
        if self.sft_steps < 1 or self.batch_size < 1 or self.grpo_steps < 0 or self.warmup_steps < 0:
            raise ValueError("Need sft_steps >= 1, batch_size >= 1, grpo_steps >= 0 and warmup_steps >= 0.")
        if self.option_orders < 1:
            raise ValueError(f"option_orders must be >= 1, got {self.option_orders}.")
        if self.num_heads < 1 or self.num_kv_heads < 1 or self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must be a positive multiple of num_kv_heads ({self.num_kv_heads})."
            )
        if self.batch_size % self.num_generations:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of num_generations ({self.num_generations}) for "
                "the 4DRL phase."
            )


class Stage:
    """A stage folder with a `DONE.json` marker written last; `done` tells whether to skip it."""

    def __init__(self, root: Path, name: str):
        self.name, self.dir = name, root / name
        self.marker = self.dir / "DONE.json"

    @property
    def done(self) -> bool:
        return self.marker.is_file()

    def info(self) -> dict:
        return json.loads(self.marker.read_text())

    def finish(self, **info) -> dict:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.marker.with_suffix(".tmp")
        tmp.write_text(json.dumps(info, indent=2, default=str))
        os.replace(tmp, self.marker)
        return info

    def record_seconds(self, seconds: float) -> None:
        """Add the stage's wall time (`seconds`) to its finished marker, so a rerun that reuses it reports it."""
        self.finish(**{**self.info(), "seconds": seconds})


def _settings_guard(root: Path, cfg: QuickstartConfig) -> None:
    path = root / "quickstart_config.json"
    current = dataclasses.asdict(cfg)
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != current:
            changed = sorted(k for k in current if previous.get(k) != current[k])
            raise ValueError(
                f"{root} holds a quickstart run with other settings ({', '.join(changed)}). Use another --output, or "
                "rerun with the same settings to resume."
            )
    else:
        root.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(current, indent=2))


# ---------------------------------------------------------------------------------------------------------- stages
def stage_data(root: Path, cfg: QuickstartConfig) -> Path:
    from thinker4d.data.pipeline import SynthesisConfig, run_synthesis

    stage = Stage(root, "data")
    if not stage.done:
        synth = SynthesisConfig(
            world_num_clips=cfg.train_clips,
            world_seed_start=0,
            world_num_frames=cfg.num_frames,
            world_size=cfg.size,
            world_fps=cfg.fps,
            world_camera_motions=list(cfg.camera_motions),
            max_frames=cfg.num_frames,
            tasks=list(cfg.tasks),
            cot_style="compact",
            seed=cfg.seed,
        )
        report = run_synthesis(synth, stage.dir / "dataset", resume=True)
        stage.finish(report={k: v for k, v in report.items() if k in ("rows", "stats", "errors", "timings")})
    return stage.dir / "dataset"


def stage_synthdsr(root: Path, cfg: QuickstartConfig) -> Path:
    from thinker4d.world import build_synthdsr

    stage = Stage(root, "synthdsr")
    if not stage.done:
        ds = build_synthdsr(
            stage.dir / "benchmark",
            num_questions=cfg.eval_questions,
            seed=0,
            num_frames=cfg.num_frames,
            size=cfg.size,
            fps=cfg.fps,
            tasks=list(cfg.tasks),
            camera_motions=list(cfg.camera_motions),
        )
        stage.finish(rows=len(ds))
    return stage.dir / "benchmark"


def _load_train(data_dir: Path, cache_dir: Path | None = None):
    from thinker4d.datasets_io import load_thinker4d_dataset

    return load_thinker4d_dataset(data_dir, split="train", cache_dir=cache_dir)


def _drop_map_caches(train) -> None:
    """Delete the `.map` caches beside `train`'s Arrow copy (pre-encoded rows of a finished stage); only a cache."""
    try:
        train.cleanup_cache_files()
    except OSError as err:  # e.g. a file still mapped on Windows: it stays until the run's end removes the folder
        logger.warning("Could not remove dataset caches under %s: %s", CACHE_DIR, err)


def stage_init(root: Path, cfg: QuickstartConfig, train) -> Path:
    """The shared starting point: a BPE processor learned from the training texts and a random tiny model."""
    stage = Stage(root, "init")
    if not stage.done:
        import torch

        import thinker4d
        from thinker4d.prompting import PROMPT_SUFFIX, render_options
        from thinker4d.tiny import build_tiny_model, build_tiny_processor

        text = train.select_columns(["question", "options", "cot"])
        corpus = [PROMPT_SUFFIX, "You are a helpful assistant."]
        for row in text:
            corpus += [row["question"], "\n".join(render_options(row["options"])), row["cot"]]
        processor = build_tiny_processor(
            "qwen2_5_vl", max_pixels=cfg.size * cfg.size, corpus=corpus, vocab_size=cfg.vocab_size
        )
        torch.manual_seed(cfg.seed)
        base = build_tiny_model(
            "qwen2_5_vl",
            processor,
            seed=cfg.seed,
            hidden_size=cfg.hidden_size,
            num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads,
            num_key_value_heads=cfg.num_kv_heads,
            vision_hidden_size=cfg.vision_hidden_size,
            vision_depth=cfg.vision_depth,
        )
        model, processor = thinker4d.from_base(base, processor, latent_size=LATENT_SIZE)
        model.save_pretrained(stage.dir / "model")
        processor.save_pretrained(stage.dir / "model")
        stage.finish(parameters=model.num_parameters(), vocab=len(processor.tokenizer))
    return stage.dir / "model"


def _token_budget(train, processor, cfg: QuickstartConfig) -> int:
    """Generation budget of rollouts and evaluation: the longest training CoT with its blocks expanded, plus 25%."""
    if cfg.max_new_tokens > 0:
        return cfg.max_new_tokens
    longest = max(len(processor.tokenizer(c)["input_ids"]) for c in train["cot"])
    markers = max(c.count("<imagery>") for c in train["cot"])
    return int((longest + markers * (LATENT_SIZE + 2)) * 1.25) + 8


def _option_texts(options) -> list[str]:
    """The option texts without their letters, in order (`["A. Pan Left", ...]` or `["Pan Left", ...]` -> `["Pan Left",
    ...]`)."""
    from thinker4d.prompting import render_options

    return [line.split(". ", 1)[1] for line in render_options(options)]


def option_reading_rows(train, seed: int = 0):
    """The warm-up data: for every training row, a question answered from the option list alone.

    A pretrained LLM can already read a multiple-choice list; the quickstart's random tiny model cannot, and without
    this warm-up it does not learn, within the budget, to copy the letter of the option its reasoning named
    (docs/quickstart.md). Each row keeps the clip (so the prompt has its usual shape) and gets "Which option says
    <text>?" over options drawn from the option texts of the training set, with the row's option count, and the
    answer `<think>It says <text>. A. <option A>? No. B. <text>? Yes = B.</think><answer>B. <text></answer>` (the
    same option scan, [`thinker4d.data.cot.option_scan`], as the compact CoT ends with). The clip carries no
    information about the answer.

    Args:
        train (`datasets.Dataset`): 4D CoT rows (`id`, `frames`, `fps`, `options`, ...).
        seed (`int`): the draw of texts and letters (row `i` uses `seed * 1_000_003 + i`).

    Returns:
        `datasets.Dataset` with the columns `id, frames, fps, question, options, answer, cot, imagery`.
    """
    import random

    from thinker4d.data.cot import option_scan
    from thinker4d.prompting import LETTERS

    texts = sorted({text for opts in train["options"] for text in _option_texts(opts)})
    if len(texts) < 2:
        raise ValueError(f"The option-reading warm-up needs at least 2 distinct option texts; the data has {texts}.")

    def make(row, i):
        rng = random.Random(seed * 1_000_003 + i)
        n = min(len(row["options"]), len(texts))
        options = rng.sample(texts, n)
        k = rng.randrange(n)
        letter, text = LETTERS[k], options[k]
        return {
            "id": f"{row['id']}/option-reading",
            "question": f"Which option says {text}?",
            "options": options,
            "answer": letter,
            "cot": f"<think>It says {text}. " + option_scan(options, letter),
            "imagery": [],
        }

    keep = ["id", "frames", "fps", "options"]
    rows = train.select_columns(keep)
    return rows.map(make, with_indices=True, desc="Option-reading warm-up rows")


def option_order_variants(train, copies: int, seed: int = 0):
    """Every training row `copies` times: as synthesized, then with its options in `copies - 1` other random orders.

    The answer letter, and the CoT's option scan (`A. <option A>? No. B. <text>? Yes = B.</think><answer>B.
    <text></answer>`, the ending of the compact RuleTeacher CoT, [`thinker4d.data.cot.option_scan`]), follow the
    correct option to its new place, so a clip seen several times does not always come with the same letter.

    Args:
        train (`datasets.Dataset`): rows with `id`, `options`, `answer` and a compact `cot`.
        copies (`int`): 1 returns `train` as it is.
        seed (`int`): the draw of orders (copy `v` of row `i` uses `seed * 1_000_003 + 7919 * v + i`). An order may
            repeat by chance; the copy is kept, so every row has the same weight.

    Returns:
        `datasets.Dataset`: `copies * len(train)` rows, the copies of row `i` with ids `<id>/order<v>` (`v >= 1`).

    Raises:
        ValueError: if a CoT does not end with the option scan of its options and answer (other CoTs may mention the
            letter elsewhere, which this function cannot rewrite; use `copies=1`).
    """
    import random

    from datasets import concatenate_datasets

    from thinker4d.data.cot import option_scan
    from thinker4d.prompting import LETTERS, render_options

    if copies < 1:
        raise ValueError(f"copies must be >= 1, got {copies}.")
    if copies == 1:
        return train

    def reorder(row, i, v):
        texts = _option_texts(row["options"])
        old = row["answer"]
        text = texts[LETTERS.index(old)]
        ending = option_scan(texts, old)
        if not row["cot"].endswith(ending):
            raise ValueError(
                f"Row {row['id']!r}: option_order_variants rewrites CoTs that end with {ending!r} (the compact "
                f"RuleTeacher CoT); this one ends with {row['cot'][-60:]!r}. Use copies=1 (--option-orders 1)."
            )
        rng = random.Random(seed * 1_000_003 + 7919 * v + i)
        rng.shuffle(texts)
        new = LETTERS[texts.index(text)]
        cot = row["cot"][: -len(ending)] + option_scan(texts, new)
        return {"id": f"{row['id']}/order{v}", "options": render_options(texts), "answer": new, "cot": cot}

    # The first copy is `train` itself; the second copy's map checks every row's ending (and raises) on the way.
    parts = [
        train.map(reorder, with_indices=True, fn_kwargs={"v": v}, desc=f"Option order {v + 1}/{copies}")
        for v in range(1, copies)
    ]
    return concatenate_datasets([train, *parts])


def stage_train(root: Path, cfg: QuickstartConfig, name: str, init_dir: Path, train) -> Path:
    """Supervised training of one variant (`raw_qa`, `text_cot`, `dift`, or the `warmup`) from `init_dir`."""
    stage = Stage(root, f"train_{name}")
    out = stage.dir / "model"
    if stage.done:
        return out
    from thinker4d.trainers import DIFTConfig, DIFTTrainer

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
        cache_imagery_targets=name == "dift",
        # Slot vectors on the token-embedding scale, in training and decoding alike (see DIFTConfig.latent_norm).
        latent_norm="embedding" if name == "dift" else None,
    )
    if name == "warmup":
        from datasets import concatenate_datasets

        copies = [option_reading_rows(train, cfg.seed * cfg.option_orders + v) for v in range(cfg.option_orders)]
        rows = concatenate_datasets(copies)
    else:
        rows = option_order_variants(train, cfg.option_orders, cfg.seed)
    trainer = DIFTTrainer(model=str(init_dir), args=args, train_dataset=rows)
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

    from thinker4d.trainers import LatentGRPOConfig, LatentGRPOTrainer

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
    last = _last_checkpoint(stage.dir / "checkpoints")
    t0 = time.time()
    trainer.train(resume_from_checkpoint=last)
    trainer.save_model(str(out))
    processor.save_pretrained(str(out))
    (stage.dir / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    stage.finish(train_seconds=round(time.time() - t0, 1), resumed_from=last, steps=trainer.state.global_step)
    return out


def stage_eval(root: Path, cfg: QuickstartConfig, name: str, model_dir: Path, bench_dir: Path, max_new_tokens: int):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import thinker4d.models  # noqa: F401 -- registers the thinker4d auto classes
    from thinker4d.eval import EvalConfig, evaluate_model, load_task

    stage = Stage(root, f"eval_{name}")
    if not stage.done:
        model = AutoModelForImageTextToText.from_pretrained(str(model_dir)).eval()
        processor = AutoProcessor.from_pretrained(str(model_dir))
        task = load_task("synthdsr")
        examples = task.load(str(bench_dir))
        config = EvalConfig(
            batch_size=cfg.batch_size, max_new_tokens=max_new_tokens, fps=0, max_frames=cfg.num_frames, max_pixels=0
        )
        summary = evaluate_model(
            model, processor, task, examples, stage.dir / "run", config, model_name=name, data=str(bench_dir)
        )
        stage.finish(accuracy=summary["accuracy"], subtask_accuracy=summary["subtask_accuracy"])
    return json.loads((stage.dir / "run" / "summary.json").read_text())


def answer_text_accuracy(run_dir: Path, bench_dir: Path) -> dict:
    """Diagnostic, not a headline number: the share of completions whose final `<answer>` names the correct option's
    text, whatever letter it carries. It separates "saw the motion" from "mapped it to the shuffled letter"."""
    import re

    from thinker4d.datasets_io import load_thinker4d_dataset

    ds = load_thinker4d_dataset(bench_dir, split="test").select_columns(["options", "answer"])
    truth = {}
    for i, row in enumerate(ds):
        truth[i] = _option_texts(row["options"])[ord(row["answer"]) - ord("A")].strip().lower()
    hits: dict[str, list[int]] = {}
    for line in (run_dir / "results.jsonl").read_text().splitlines():
        rec = json.loads(line)
        answers = re.findall(r"<answer>(.*?)</answer>", rec.get("raw") or "", flags=re.S)
        text = re.sub(r"^\s*\(?[A-H][.):]\s*", "", answers[-1]).strip().lower() if answers else ""
        hits.setdefault(rec["task"], []).append(int(text == truth[rec["index"]]))
    out = {t: sum(v) / len(v) for t, v in hits.items()}
    out["all"] = sum(sum(v) for v in hits.values()) / max(1, sum(len(v) for v in hits.values()))
    return out


def chance_accuracy(bench_dir: Path) -> dict:
    from thinker4d.datasets_io import load_thinker4d_dataset

    ds = load_thinker4d_dataset(bench_dir, split="test").select_columns(["task", "options"])
    per: dict[str, list[float]] = {}
    for row in ds:
        per.setdefault(row["task"], []).append(1.0 / len(row["options"]))
    out = {t: sum(v) / len(v) for t, v in per.items()}
    out["all"] = sum(sum(v) for v in per.values()) / sum(len(v) for v in per.values())
    return out


# ---------------------------------------------------------------------------------------------------------- report
def _png_b64(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def plot_losses(root: Path, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    drawn = False
    for name in ("warmup", "raw_qa", "text_cot", "dift"):
        hist = root / f"train_{name}" / "log_history.json"
        if not hist.is_file():
            continue
        logs = [h for h in json.loads(hist.read_text()) if "ce_loss" in h or "loss" in h]
        steps = [h["step"] for h in logs if "ce_loss" in h]
        axes[0].plot(steps, [h["ce_loss"] for h in logs if "ce_loss" in h], label=LABELS[name])
        img = [(h["step"], h["imagery_loss"]) for h in logs if "imagery_loss" in h]
        if img:
            axes[0].plot(*zip(*img), "--", label="DIFT imagery (1 - cos)")
        drawn = True
    axes[0].set(xlabel="step", ylabel="loss", title="Supervised training (CE on assistant tokens)", yscale="log")
    axes[0].legend(fontsize=8)
    hist = root / "train_dift_grpo" / "log_history.json"
    if hist.is_file():
        logs = [h for h in json.loads(hist.read_text()) if "reward" in h]
        axes[1].plot([h["step"] for h in logs], [h["reward"] for h in logs], label="total reward")
        for key, label in (("rewards/accuracy_reward/mean", "accuracy"), ("rewards/format_reward/mean", "format")):
            if any(key in h for h in logs):
                axes[1].plot([h["step"] for h in logs], [h.get(key) for h in logs], "--", label=label)
        axes[1].legend(fontsize=8)
    axes[1].set(xlabel="step", ylabel="reward", title="4DRL (GRPO with imagery)")
    if not drawn:
        plt.close(fig)
        return None
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_accuracy(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = [t for t in results["chance"] if t != "all"] + ["all"]
    names = [n for n in LABELS if n in results]
    fig, ax = plt.subplots(figsize=(max(8, 1.7 * len(tasks)), 4))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        vals = [results[name].get(t, 0.0) * 100 for t in tasks]
        ax.bar(np.arange(len(tasks)) + i * width, vals, width, label=LABELS[name])
    ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2, [t.replace("_", " ") for t in tasks])
    ax.set(ylabel="accuracy on held-out SynthDSR (%)", ylim=(0, 100))
    ax.legend(fontsize=8, ncol=3)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _strip(images, height=72) -> str:
    """A row of images as one inline PNG."""
    import numpy as np
    from PIL import Image

    tiles = [np.asarray(im.convert("RGB").resize((height, height))) for im in images]
    sep = np.full((height, 4, 3), 255, np.uint8)
    row = np.concatenate([x for t in tiles for x in (t, sep)][:-1], axis=1)
    buf = io.BytesIO()
    Image.fromarray(row).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def reasoning_trace(root: Path, model_dir: Path, train, max_new_tokens: int) -> dict:
    """Run the final model on one training row with imagery and return what a person wants to see."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import thinker4d.models  # noqa: F401 -- registers the thinker4d auto classes
    from thinker4d.prompting import build_messages, frames_to_array, video_kwargs

    idx = next(i for i, r in enumerate(train.select_columns(["task"])) if r["task"] == "camera_motion")
    row = train[idx]
    model = AutoModelForImageTextToText.from_pretrained(str(model_dir)).eval()
    processor = AutoProcessor.from_pretrained(str(model_dir))
    text = processor.apply_chat_template(
        build_messages(row["question"], row["options"]), add_generation_prompt=True, tokenize=False
    )
    frames = frames_to_array(row["frames"])
    inputs = processor(text=[text], return_tensors="pt", **video_kwargs(processor, [frames], row["fps"]))
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, return_dict_in_generate=True)
    gen = processor.tokenizer.decode(out.sequences[0, inputs["input_ids"].shape[1] :], skip_special_tokens=False)
    gen = gen.replace("<|im_end|>", "").replace("<|endoftext|>", "")
    return {
        "id": row["id"],
        "question": row["question"],
        "options": row["options"],
        "answer": row["answer"],
        "reference_cot": row["cot"],
        "generated": gen,
        "imagery_blocks": int(out.imagery_blocks[0]),
        "frames_png": _strip(row["frames"]),
        "imagery_png": _strip(row["imagery"]) if row["imagery"] else None,
    }


def _mark_imagery(text: str, as_html: bool) -> str:
    if as_html:
        text = html.escape(text)
        text = text.replace(html.escape("<|latent_start|>"), '<span class="img">[imagery: ')
        text = text.replace(html.escape("<|latent_end|>"), "]</span>")
        return text.replace(html.escape("<|latent_pad|>"), "z ")
    text = text.replace("<|latent_start|>", "[imagery: ").replace("<|latent_end|>", "]")
    return text.replace("<|latent_pad|>", "z ")


def _percent_table(data: dict, names: list, tasks: list, as_html: bool) -> str:
    """`data[name][task]` (fractions) as a task x model table of percentages, in markdown or HTML."""
    head = [LABELS[n] for n in names]
    rows = [[t] + [f"{data[n].get(t, float('nan')) * 100:.1f}" for n in names] for t in tasks]
    if as_html:
        cells = "".join(f"<th>{h}</th>" for h in ["task", *head])
        body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><tr>{cells}</tr>{body}</table>"
    lines = ["| task | " + " | ".join(head) + " |", "|" + "---|" * (len(names) + 1)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def write_report(
    root: Path, cfg: QuickstartConfig, results: dict, trace: dict | None, timings: dict, named: dict | None = None
) -> None:
    fig_dir = root / "figures"
    fig_dir.mkdir(exist_ok=True)
    loss_png = plot_losses(root, fig_dir / "losses.png")
    acc_png = plot_accuracy(results, fig_dir / "accuracy.png")
    tasks = [t for t in results["chance"] if t != "all"] + ["all"]
    names = [n for n in LABELS if n in results]
    diagnostic = (
        "Diagnostic (not the headline): % of answers that name the correct option's text, whatever their letter. A gap "
        "to the table above means the model saw the motion but did not map it to the shuffled letter."
    )
    verdict = _verdict(results, named)
    md = [
        "# thinker4d quickstart report",
        "",
        "Tiny Qwen2.5-VL trained from random weights (after an option-reading warm-up, which is the 'untrained' "
        "model) on synthetic 4D-world clips, evaluated on held-out SynthDSR (strict answer parsing; accuracy in %). "
        "Settings: " + ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(cfg).items()) + ".",
        "",
        _percent_table(results, names, tasks, as_html=False),
        "",
        verdict,
        "",
        f"![accuracy](figures/{acc_png.name})",
    ]
    if named:
        md += ["", diagnostic, "", _percent_table(named, list(named), tasks, as_html=False)]
    if loss_png:
        md += ["", f"![losses](figures/{loss_png.name})"]
    if trace:
        md += [
            "",
            "## One reasoning trace (DIFT + 4DRL model, a training clip)",
            "",
            f"Question: {trace['question']}",
            "",
            "Options: " + "; ".join(trace["options"]) + f" (correct: {trace['answer']})",
            "",
            "Reference CoT (imagery targets = the overlays, in order):",
            "",
            "> " + trace["reference_cot"],
            "",
            f"Generated ({trace['imagery_blocks']} imagery blocks; each z is a fed-back hidden state):",
            "",
            "> " + _mark_imagery(trace["generated"], as_html=False),
        ]
    md += ["", "## Stage timings (s)", "", json.dumps(timings, indent=1)]
    (root / "report.md").write_text("\n".join(md) + "\n")

    def img(path):
        return f'<img src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">' if path else ""

    body = [
        "<h1>thinker4d quickstart report</h1>",
        "<p>Tiny Qwen2.5-VL trained from random weights (after an option-reading warm-up, which is the 'untrained' "
        "model) on synthetic 4D-world clips, evaluated on held-out SynthDSR (strict answer parsing; accuracy in %).</p>",
        _percent_table(results, names, tasks, as_html=True),
        f"<p>{html.escape(verdict)}</p>",
    ]
    if named:
        body += [f"<p>{html.escape(diagnostic)}</p>", _percent_table(named, list(named), tasks, as_html=True)]
    body += [img(acc_png), img(loss_png)]
    if trace:
        body += [
            "<h2>One reasoning trace (DIFT + 4DRL model, a training clip)</h2>",
            f"<p><b>Question:</b> {html.escape(trace['question'])}<br><b>Options:</b> "
            + html.escape("; ".join(trace["options"]))
            + f" (correct: {trace['answer']})</p>",
            "<p><b>Frames</b></p>",
            f'<img src="data:image/png;base64,{trace["frames_png"]}">',
        ]
        if trace["imagery_png"]:
            body += [
                "<p><b>Overlays (the imagery targets)</b></p>",
                f'<img src="data:image/png;base64,{trace["imagery_png"]}">',
            ]
        body += [
            f"<p><b>Reference CoT:</b> {html.escape(trace['reference_cot'])}</p>",
            f"<p><b>Generated</b> ({trace['imagery_blocks']} imagery blocks; each z is a fed-back hidden state):<br>"
            f'<span class="gen">{_mark_imagery(trace["generated"], as_html=True)}</span></p>',
        ]
    style = (
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}.img{background:#fdd;color:#900}"
        ".gen{font-family:monospace}</style>"
    )
    (root / "report.html").write_text(
        "<html><head><meta charset='utf-8'>" + style + "</head><body>" + "\n".join(body) + "</body></html>"
    )


def _verdict(results: dict, named: dict | None = None) -> str:
    chance = results["chance"].get("camera_motion")
    dift = results.get("dift", {}).get("camera_motion")
    text = results.get("text_cot", {}).get("camera_motion")
    parts = []
    if chance is not None and dift is not None:
        gap = (dift - chance) * 100
        parts.append(
            f"DIFT camera-motion accuracy is {dift * 100:.1f}% vs {chance * 100:.1f}% chance ({gap:+.1f} points; "
            f"target +30)."
        )
    if dift is not None and text is not None:
        if dift > text:
            parts.append(f"DIFT beats the text-only CoT baseline on camera motion ({text * 100:.1f}%).")
        else:
            parts.append(
                f"At this scale DIFT does not beat the text-only CoT baseline on camera motion ({text * 100:.1f}%): "
                "the imagery supervision did not help here."
            )
    rl = results.get("dift_grpo", {}).get("camera_motion")
    if dift is not None and rl is not None:
        parts.append(
            f"After the 4DRL phase, DIFT + 4DRL scores {rl * 100:.1f}% on camera motion ({(rl - dift) * 100:+.1f} "
            "points)."
        )
    if named and "dift" in named and named["dift"].get("camera_motion") is not None:
        right_name = named["dift"]["camera_motion"]
        parts.append(
            f"The DIFT model names the correct camera motion in {right_name * 100:.0f}% of its answers (diagnostic "
            "table below)"
            + (
                ", so what it misses is mostly the mapping to the shuffled option letter."
                if dift is not None and right_name - dift >= 0.1
                else "."
            )
        )
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------------------- main
def run_quickstart(
    cfg: QuickstartConfig | None = None, output_dir: str | os.PathLike = "thinker4d_quickstart"
) -> dict:
    """Run (or resume) the whole quickstart; returns `summary.json`'s content."""
    import torch

    cfg = cfg or QuickstartConfig()
    root = Path(output_dir)
    _settings_guard(root, cfg)
    torch.manual_seed(cfg.seed)
    timings: dict[str, float | None] = {}
    reused: list[str] = []

    def timed(name, fn, *a):
        # A reused stage keeps the time recorded when it ran (None for a marker written without one).
        stage = Stage(root, name)
        if stage.done:
            out = fn(*a)
            timings[name] = stage.info().get("seconds")
            reused.append(name)
            return out
        t0 = time.time()
        out = fn(*a)
        timings[name] = round(time.time() - t0, 1)
        stage.record_seconds(timings[name])
        return out

    data_dir = timed("data", stage_data, root, cfg)
    bench_dir = timed("synthdsr", stage_synthdsr, root, cfg)
    # The Arrow copy of the training data and the caches of every `.map` on it (pre-encoded videos: about 0.7 GB per
    # trained model) live in the output folder, not in the user's datasets cache, and go when they are no longer needed.
    cache_dir = root / CACHE_DIR
    train = _load_train(data_dir, cache_dir)
    init_dir = timed("init", stage_init, root, cfg, train)
    from transformers import AutoProcessor

    budget = _token_budget(train, AutoProcessor.from_pretrained(str(init_dir)), cfg)
    if cfg.warmup_steps > 0:
        init_dir = timed("train_warmup", stage_train, root, cfg, "warmup", init_dir, train)
        _drop_map_caches(train)
    models = {"untrained": init_dir}
    for name in ("raw_qa", "text_cot", "dift"):
        models[name] = timed(f"train_{name}", stage_train, root, cfg, name, init_dir, train)
        _drop_map_caches(train)
    if cfg.grpo_steps > 0:
        models["dift_grpo"] = timed("train_dift_grpo", stage_grpo, root, cfg, models["dift"], train, budget)
        _drop_map_caches(train)

    results = {"chance": chance_accuracy(bench_dir)}
    summaries, named = {}, {}
    for name, model_dir in models.items():
        summary = timed(f"eval_{name}", stage_eval, root, cfg, name, model_dir, bench_dir, budget)
        summaries[name] = summary
        results[name] = dict(summary["subtask_accuracy"], all=summary["accuracy"])
        named[name] = answer_text_accuracy(root / f"eval_{name}" / "run", bench_dir)
    trace = None
    final = models.get("dift_grpo", models["dift"])
    try:
        trace = reasoning_trace(root, final, train, budget)
    except StopIteration:
        logger.warning("No camera-motion training row to show as a reasoning trace.")
    summary = dict(results)
    summary["settings"] = dataclasses.asdict(cfg)
    summary["eval_errors"] = {n: s.get("errors", 0) for n, s in summaries.items()}
    summary["answer_text_accuracy"] = named
    summary["timings_s"] = timings
    summary["reused_stages"] = reused
    tmp = root / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, root / "summary.json")
    write_report(root, cfg, results, trace, timings, named)
    shutil.rmtree(cache_dir, ignore_errors=True)
    return summary
