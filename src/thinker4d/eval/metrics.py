"""Accuracy from per-record results: strict (headline) and lenient, per subtask, macro and micro, with errors counted
wrong and counted by reason; plus re-scoring of the paper's own result files with the paper's rule.

Paper: https://huggingface.co/papers/2605.05997

What differs from the paper's `aggregate_subtask_metrics` (docs/paper_differences.md, section 9):

1. Every question is in the denominator. Rows with a missing video, a bad row or a generation error count as wrong;
   `error_counts` says how many of each (the paper excluded 37 missing videos from every denominator).
2. With `n` samples per question, accuracies are averaged over samples and `accuracy_stderr` is the standard error
   over the `n` per-sample runs; with one sample it is the binomial standard error `sqrt(p (1 - p) / N)`.
3. Accuracies are fractions in [0, 1] (the paper's files use percentages; the table printer shows percentages).
4. Each accuracy also gets a 95% interval by bootstrap over questions (`ci95`), and a control run (blind frames, a
   latent intervention) its difference to the real run with a paired bootstrap interval ([`paired_bootstrap_ci`]);
   the paper reports point estimates only.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..answers import extract_choice, paper_extract_choice


LENIENT_LABEL = "lenient: also reads answers written outside <answer> tags (not the headline number)"


def error_reason(error: str | None) -> str | None:
    """`"missing_video: /x.mp4 ..."` -> `"missing_video"`."""
    if not error:
        return None
    return str(error).split(":", 1)[0].strip() or "error"


def _accuracies(records: Sequence[dict], hit_key: str, order: Sequence[str]) -> dict:
    by_task_hits: dict[str, list[int]] = defaultdict(list)
    for r in records:
        by_task_hits[r["task"]].append(int(bool(r.get(hit_key))))
    keys = [k for k in order if k in by_task_hits] + sorted(k for k in by_task_hits if k not in order)
    sub = {k: sum(by_task_hits[k]) / len(by_task_hits[k]) for k in keys}
    correct = sum(int(bool(r.get(hit_key))) for r in records)
    return {
        "correct": correct,
        "accuracy": correct / len(records) if records else 0.0,
        "subtask_accuracy": sub,
        "subtask_correct": {k: sum(by_task_hits[k]) for k in keys},
        "macro_accuracy": sum(sub.values()) / len(sub) if sub else 0.0,
    }


BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
CI_METHOD = f"percentile bootstrap over questions, {BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}"


def _bootstrap_means(values, resamples: int, seed: int):
    """`(resamples,)` means of `values` resampled with replacement; the same `seed` and length draw the same
    resamples, so two runs over the same questions are resampled together."""
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or not len(values):
        raise ValueError(f"bootstrap needs a non-empty 1-D list of per-question values, got shape {values.shape}.")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // len(values))  # bounded memory for large benchmarks
    for lo in range(0, resamples, chunk):
        n = min(chunk, resamples - lo)
        means[lo : lo + n] = values[rng.integers(0, len(values), size=(n, len(values)))].mean(axis=1)
    return means


def bootstrap_ci(
    values: Sequence[float], level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> list[float]:
    """Percentile bootstrap interval of the mean of per-question values (hits, or the mean hit over samples).

    Questions are resampled with replacement `resamples` times with a fixed `seed`, so the interval is reproducible.

    Args:
        values (`Sequence[float]`): one value per question.
        level (`float`, *optional*, defaults to 0.95): coverage of the interval.
        resamples (`int`, *optional*, defaults to 10000), seed (`int`, *optional*, defaults to 0): bootstrap settings.

    Returns:
        `[low, high]`.

    Example:

    ```python
    >>> bootstrap_ci([1, 1, 1, 1])
    [1.0, 1.0]
    ```
    """
    import numpy as np

    means = _bootstrap_means(values, resamples, seed)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return [float(low), float(high)]


def paired_bootstrap_ci(
    control: Sequence[float],
    reference: Sequence[float],
    level: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, list[float]]:
    """The difference `mean(control) - mean(reference)` over the same questions and its paired bootstrap interval
    (each resample draws the same questions from both runs, so question difficulty cancels out).

    Args:
        control, reference (`Sequence[float]`): per-question values of two runs, in the same question order.

    Returns:
        `(difference, [low, high])`.

    Example:

    ```python
    >>> paired_bootstrap_ci([0, 1, 1], [0, 1, 1])
    (0.0, [0.0, 0.0])
    ```
    """
    if len(control) != len(reference):
        raise ValueError(
            f"A paired interval needs the same questions in both runs, got {len(control)} and {len(reference)}."
        )
    diffs = [float(c) - float(r) for c, r in zip(control, reference)]
    return sum(diffs) / len(diffs), bootstrap_ci(diffs, level, resamples, seed)


def question_hits(records: Iterable[dict], hit_key: str = "hit") -> dict[str, dict[int, float]]:
    """`{task: {question index: mean hit over its samples}}` (errors count as misses): the per-question values the
    intervals resample."""
    sums: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        sums[r["task"]][int(r["index"])].append(int(bool(r.get(hit_key))))
    return {t: {i: sum(h) / len(h) for i, h in sorted(by_q.items())} for t, by_q in sums.items()}


def score_records(
    records: Iterable[dict],
    subtasks: dict[str, str] | None = None,
    num_samples: int | None = None,
) -> dict:
    """Summary numbers of a list of result records (one per question and sample).

    Args:
        records (`Iterable[dict]`):
            Records with at least `index`, `task`, `hit`, `error`, and optionally `sample`, `pred`, `hit_lenient`.
        subtasks (`dict[str, str]`, *optional*):
            Ordered `{key: display name}`; fixes the order of the subtask dicts and names them in `subtask_names`.
        num_samples (`int`, *optional*):
            Samples per question; inferred from the records when omitted.

    Returns:
        `dict` with `total` (questions), `num_samples`, `records`, `evaluated`, `errors`, `error_counts`,
        `unparsed`, `correct`, `accuracy` (micro, errors counted wrong), `micro_accuracy`, `macro_accuracy`,
        `subtask_accuracy`, `subtask_correct`, `subtask_total` (questions), `subtask_names`, `accuracy_stderr`,
        `sample_accuracy`, `ci95` (`{subtask: [low, high]}`, see [`bootstrap_ci`]), `accuracy_ci95` (micro),
        `ci_method`, `parser` = `"strict"`, and `lenient` (the same numbers with the lenient parser, labelled).

    Example:

    ```python
    >>> score_records([{"index": 0, "task": "t", "hit": 1, "error": None}, {"index": 1, "task": "t", "hit": 0}])["accuracy"]
    0.5
    ```
    """
    records = list(records)
    subtasks = subtasks or {}
    order = list(subtasks)
    samples = sorted({int(r.get("sample", 0)) for r in records}) or [0]
    n = num_samples or len(samples)
    questions = {r["index"]: r["task"] for r in records}
    task_counts = Counter(questions.values())
    keys = [k for k in order if k in task_counts] + sorted(k for k in task_counts if k not in order)
    errors = [r for r in records if r.get("error")]
    strict = _accuracies(records, "hit", order)
    lenient = _accuracies(records, "hit_lenient", order)
    per_sample = [
        _accuracies([r for r in records if int(r.get("sample", 0)) == s], "hit", order)["accuracy"] for s in samples
    ]
    p = strict["accuracy"]
    per_question = question_hits(records)
    if len(per_sample) > 1:
        mean = sum(per_sample) / len(per_sample)
        var = sum((a - mean) ** 2 for a in per_sample) / (len(per_sample) - 1)
        stderr, method = math.sqrt(var / len(per_sample)), f"std over {len(per_sample)} samples / sqrt(n)"
    else:
        stderr = math.sqrt(p * (1 - p) / len(questions)) if questions else 0.0
        method = "binomial sqrt(p(1-p)/N)"
    return {
        "total": len(questions),
        "num_samples": n,
        "records": len(records),
        "evaluated": len(records) - len(errors),
        "errors": len(errors),
        "error_counts": dict(sorted(Counter(error_reason(r["error"]) for r in errors).items())),
        "unparsed": sum(1 for r in records if not r.get("error") and r.get("pred") in (None, "")),
        "correct": strict["correct"],
        "accuracy": p,
        "micro_accuracy": p,
        "macro_accuracy": strict["macro_accuracy"],
        "subtask_accuracy": strict["subtask_accuracy"],
        "subtask_correct": strict["subtask_correct"],
        "subtask_total": {k: task_counts[k] for k in keys},
        "subtask_names": {k: subtasks.get(k) or k.replace("_", " ").title() for k in keys},
        "accuracy_stderr": stderr,
        "stderr_method": method,
        "sample_accuracy": per_sample,
        "ci95": {k: bootstrap_ci(list(per_question[k].values())) for k in keys},
        "accuracy_ci95": bootstrap_ci([h for k in keys for h in per_question[k].values()]) if keys else None,
        "ci_method": CI_METHOD,
        "parser": "strict",
        "lenient": {
            "label": LENIENT_LABEL,
            "parser": "lenient",
            "correct": lenient["correct"],
            "accuracy": lenient["accuracy"],
            "macro_accuracy": lenient["macro_accuracy"],
            "subtask_accuracy": lenient["subtask_accuracy"],
        },
    }


def read_results(path: str | os.PathLike, tolerate_partial_last_line: bool = True) -> list[dict]:
    """Records of a results JSONL; a half-written last line (an interrupted run) is dropped, any other bad line raises."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            if tolerate_partial_last_line and i == len(lines) - 1:
                break
            raise ValueError(f"{path} line {i + 1} is not valid JSON ({e}); fix or delete the line.") from e
    return out


def rescore_paper_results(
    path: str | os.PathLike, subtasks: dict[str, str] | None = None, percent: bool = True
) -> dict:
    """Re-scores a results JSONL in the paper's per-record layout (`raw`, `gt`, `subtask_type`) two ways.

    The top-level numbers reproduce the paper's `dsr_eval.py` exactly: [`paper_extract_choice`] (first capital A-D
    anywhere after the Video-MME prefix stripping), `hit = pred == gt`, per-subtask accuracy keyed by display name,
    `subtask_macro_avg` over subtasks with samples, and micro `accuracy` over the records present (the paper's file
    holds no record for a skipped video, so those stay out of its denominators). `strict` holds the same numbers
    with thinker4d's [`extract_choice`]; docs/eval.md explains why they differ.

    Returns:
        `dict` with the paper's summary keys (`eval_count`, `correct`, `accuracy`, `subtask_accuracy`,
        `subtask_correct`, `subtask_total`, `subtask_macro_avg`, in percent when `percent`) plus `strict`.
    """
    from .tasks.dsr_bench import DSR_SUBTASKS

    subtasks = subtasks or DSR_SUBTASKS
    records = read_results(path)
    for i, r in enumerate(records):
        missing = {"raw", "gt", "subtask_type"} - set(r)
        if missing:
            raise ValueError(f"{path} record {i} lacks {sorted(missing)}: not the paper's per-record layout.")
    scale = 100.0 if percent else 1.0

    def aggregate(preds: list[str]) -> dict:
        tot, cor = Counter(), Counter()
        for r, pred in zip(records, preds):
            key = str(r["subtask_type"]).lower()
            tot[key] += 1
            cor[key] += int(bool(pred) and pred == str(r["gt"]).strip()[:1].upper())
        keys = [k for k in subtasks if tot[k]] + sorted(k for k in tot if k not in subtasks)
        name = {k: subtasks.get(k, k) for k in keys}
        acc = {name[k]: scale * cor[k] / tot[k] for k in keys}
        correct = sum(cor.values())
        return {
            "eval_count": len(records),
            "correct": correct,
            "accuracy": scale * correct / len(records) if records else 0.0,
            "subtask_accuracy": acc,
            "subtask_correct": {name[k]: cor[k] for k in keys},
            "subtask_total": {name[k]: tot[k] for k in keys},
            "subtask_macro_avg": sum(acc.values()) / len(acc) if acc else 0.0,
        }

    paper = aggregate([paper_extract_choice(r["raw"]) for r in records])
    paper["parser"] = "paper (first capital A-D anywhere)"
    paper["strict"] = aggregate([extract_choice(r["raw"]) or "" for r in records])
    paper["strict"]["parser"] = "strict (thinker4d.eval.extract_choice)"
    return paper
