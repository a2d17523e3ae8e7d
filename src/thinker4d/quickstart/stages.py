"""The quickstart's stage folders (a `DONE.json` marker written last, so a rerun reuses finished stages) and the stages
before training: synthesis, SynthDSR, and the shared tiny model."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

from .config import CACHE_DIR, LATENT_SIZE, QuickstartConfig


logger = logging.getLogger(__name__)


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
        # A setting added after the folder was written counts as its default there (the run it describes).
        defaults = dataclasses.asdict(QuickstartConfig())
        previous = {**{k: defaults[k] for k in current}, **json.loads(path.read_text())}
        if previous != current:
            changed = sorted(k for k in current if previous.get(k) != current[k])
            raise ValueError(
                f"{root} holds a quickstart run with other settings ({', '.join(changed)}). Use another --output_dir, or "
                "rerun with the same settings to resume."
            )
    else:
        root.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(current, indent=2))


# ---------------------------------------------------------------------------------------------------------- stages
def stage_data(root: Path, cfg: QuickstartConfig, cot_style: str = "compact") -> Path:
    """The training data (`data/`), or with `cot_style="imagery_only"` the imagery-only probe's (`data_imagery_only/`:
    the same clips and questions, other CoTs)."""
    from thinker4d.data.pipeline import SynthesisConfig, run_synthesis

    stage = Stage(root, "data" if cot_style == "compact" else f"data_{cot_style}")
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
            cot_style=cot_style,
            seed=cfg.seed,
        )
        report = run_synthesis(synth, stage.dir / "dataset", resume=True, progress=False)
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
            progress=False,
        )
        stage.finish(rows=len(ds))
    return stage.dir / "benchmark"


def _load_train(data_dir: Path, cache_dir: Path | None = None):
    from thinker4d.datasets_io import load_thinker4d_dataset

    return load_thinker4d_dataset(data_dir, split="train", cache_dir=cache_dir)


def _check_same_rows(train, probe, probe_dir: Path) -> None:
    """The imagery-only probe must see the training rows (ids, options, answers, overlays) with other CoTs only."""
    keys = ["id", "options", "answer"]
    a, b = train.select_columns(keys), probe.select_columns(keys)
    # The validator keeps a CoT only with one `<imagery>` per overlay, so equal marker counts mean equal overlays.
    markers = [[c.count("<imagery>") for c in ds["cot"]] for ds in (train, probe)]
    if len(a) != len(b) or a[:] != b[:] or markers[0] != markers[1]:
        raise ValueError(
            f"{probe_dir} does not hold the same rows as the training data (ids, options, answers, overlays); delete "
            "that folder and rerun to synthesize it again."
        )


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
