"""The quickstart's evaluation: every model on held-out SynthDSR, with its controls (blind frames for every model,
latent interventions for the DIFT models), chance, the answer-text diagnostic, and one reasoning trace of the final
model on a held-out question."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .config import QuickstartConfig
from .report import _strip
from .stages import Stage
from .warmup import _option_texts


# The models whose imagery the interventions test (the others are trained without imagery blocks).
LATENT_MODELS = ("dift", "dift_grpo", "probe_dift")


def interventions(name: str, cfg: QuickstartConfig) -> list[str]:
    """The latent interventions run for model `name`: all four for the DIFT models (`shuffle` needs batches of two or
    more questions), none for the others."""
    if name not in LATENT_MODELS:
        return []
    return ["zero", "gaussian", *(["shuffle"] if cfg.batch_size > 1 else []), "mean"]


def stage_eval(root: Path, cfg: QuickstartConfig, name: str, model_dir: Path, bench_dir: Path, max_new_tokens: int):
    """Evaluate model `name` (`eval_<name>/run`), then its controls in `eval_<name>/blind` and `eval_<name>/<intervention>`
    (`mean` is calibrated on the real run's fed-back vectors, `run/latent_mean.pt`). Returns the real run's summary."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    import thinker4d.models  # noqa: F401 -- registers the thinker4d auto classes
    from thinker4d.eval import EvalConfig, evaluate_model, load_task

    stage = Stage(root, f"eval_{name}")
    if not stage.done or not stage.info().get("controls"):  # a stage finished without controls runs only them
        model = AutoModelForImageTextToText.from_pretrained(str(model_dir)).eval()
        processor = AutoProcessor.from_pretrained(str(model_dir))
        task = load_task("synthdsr")
        examples = task.load(str(bench_dir))
        config = EvalConfig(
            batch_size=cfg.batch_size, max_new_tokens=max_new_tokens, fps=0, max_frames=cfg.num_frames, max_pixels=0
        )

        def run(folder: str, **controls) -> dict:
            settings = dataclasses.replace(config, **controls)
            return evaluate_model(
                model, processor, task, examples, stage.dir / folder, settings, model_name=name, data=str(bench_dir)
            )

        summary = run("run")
        run("blind", blind=True)
        done = ["blind"]
        for intervention in interventions(name, cfg):
            if intervention == "mean" and not (stage.dir / "run" / "latent_mean.pt").is_file():
                continue  # the model opened no imagery block: there is no mean to feed (and nothing to replace)
            mean = str(stage.dir / "run") if intervention == "mean" else None
            run(intervention, latent_intervention=intervention, latent_mean=mean)
            done.append(intervention)
        stage.finish(accuracy=summary["accuracy"], subtask_accuracy=summary["subtask_accuracy"], controls=done)
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


def reasoning_trace(root: Path, name: str, bench_dir: Path, task: str = "camera_motion") -> dict:
    """Model `name`'s answer to a held-out SynthDSR question (the first of `task`, else the first question), as its
    evaluation wrote it (`eval_<name>/run/results.jsonl`, greedy), with the question and its frames."""
    from thinker4d.datasets_io import load_thinker4d_dataset
    from thinker4d.eval.metrics import read_results

    bench = load_thinker4d_dataset(bench_dir, split="test")
    index = next((i for i, t in enumerate(bench["task"]) if t == task), 0)
    records = read_results(root / f"eval_{name}" / "run" / "results.jsonl", tolerate_partial_last_line=False)
    rec = next(r for r in records if r["index"] == index and int(r.get("sample", 0)) == 0)
    row = bench[index]
    generated = (rec.get("raw") or "").replace("<|im_end|>", "").replace("<|endoftext|>", "")
    return {
        "model": name,
        "id": row["id"],
        "index": index,
        "task": row["task"],
        "question": row["question"],
        "options": row["options"],
        "answer": row["answer"],
        "generated": generated,
        "pred": rec.get("pred"),
        "hit": rec.get("hit"),
        "imagery_blocks": generated.count("<|latent_start|>"),
        "frames_png": _strip(row["frames"]),
    }
