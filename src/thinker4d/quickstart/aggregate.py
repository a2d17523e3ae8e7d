"""The quickstart's numbers over its training seeds ([`summarize`]): per model the accuracy with a 95% interval, the
spread over seeds, the blind baseline, the latent interventions, and the paired model comparisons the verdict reads.

Every seed answers the same SynthDSR questions, so the seeds are pooled per question: a question's value is its hit
averaged over the seeds, the accuracy is the mean of those values (= the mean of the seeds' accuracies), and its
interval is the percentile bootstrap over questions of [`thinker4d.eval.metrics.bootstrap_ci`]; a difference (control
minus real run, or model minus model) gets the paired bootstrap over the same questions. The intervals therefore
describe the benchmark's sampling of questions for the seed-averaged model; the spread over seeds is reported beside
them. With one seed these are the run's own intervals and control effects.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from .stages import Stage


# (model, reference): the paired differences the verdict reads.
COMPARISONS = (("dift", "text_cot"), ("probe_dift", "probe_text_cot"), ("probe_dift", "raw_qa"))


def pooled_hits(folders: list[Path]) -> dict[str, dict[int, float]]:
    """`{task: {question index: hit averaged over the runs}}` of evaluation run folders over the same questions."""
    from thinker4d.eval.metrics import question_hits, read_results

    runs = [question_hits(read_results(f / "results.jsonl", tolerate_partial_last_line=False)) for f in folders]
    questions = {t: sorted(q) for t, q in runs[0].items()}
    for folder, run in zip(folders[1:], runs[1:]):
        if {t: sorted(q) for t, q in run.items()} != questions:
            raise ValueError(
                f"{folder} holds other questions than {folders[0]}: the seeds of a quickstart run must answer the same "
                "SynthDSR questions; delete the folder's stage and rerun."
            )
    return {t: {i: sum(run[t][i] for run in runs) / len(runs) for i in q} for t, q in questions.items()}


def _with_all(values: dict[str, dict[int, float]], tasks: list[str]) -> dict[str, list[float]]:
    out = {t: list(values[t].values()) for t in tasks}
    out["all"] = [v for t in tasks for v in out[t]]
    return out


def _difference(other: dict, reference: dict, tasks: list[str]) -> dict:
    """`{task: {"accuracy", "difference", "difference_ci95"}}` of `other` against `reference` (paired over questions)."""
    from thinker4d.eval.metrics import paired_bootstrap_ci

    a, b = _with_all(other, tasks), _with_all({t: {i: reference[t][i] for i in other[t]} for t in tasks}, tasks)
    out = {}
    for task in a:
        diff, interval = paired_bootstrap_ci(a[task], b[task])
        out[task] = {"accuracy": sum(a[task]) / len(a[task]), "difference": diff, "difference_ci95": interval}
    return out


def _effect(real_runs: list[Path], control_runs: list[Path], tasks: list[str]) -> dict:
    """A control's effect pooled over the seeds, plus each seed's difference and whether its interval excludes 0."""
    pooled = _difference(pooled_hits(control_runs), pooled_hits(real_runs), tasks)
    per_seed = [_difference(pooled_hits([c]), pooled_hits([r]), tasks) for r, c in zip(real_runs, control_runs)]
    for task, effect in pooled.items():
        effect["seed_differences"] = [s[task]["difference"] for s in per_seed]
        effect["seeds_excluding_zero"] = sum(
            not (s[task]["difference_ci95"][0] <= 0 <= s[task]["difference_ci95"][1]) for s in per_seed
        )
    return pooled


def _spread(values: list[float]) -> dict:
    return {
        "mean": sum(values) / len(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "per_seed": values,
    }


def _mean_dicts(dicts: list[dict]) -> dict:
    return {k: sum(d[k] for d in dicts) / len(dicts) for k in dicts[0]}


def model_results(seed_roots: list[Path], name: str) -> dict:
    """Model `name` over the seeds (`<seed root>/eval_<name>/`): `accuracy` (`{task: mean}`, `"all"` = micro), `ci95`,
    `spread` (`{task: {"mean", "std", "min", "max", "per_seed"}}`), `blind` and `interventions` (each control's
    effect, [`_effect`]; an intervention counts when every seed ran it) and `errors` (summed over the seeds)."""
    from thinker4d.eval.metrics import bootstrap_ci

    evals = [root / f"eval_{name}" for root in seed_roots]
    summaries = [json.loads((e / "run" / "summary.json").read_text()) for e in evals]
    real = pooled_hits([e / "run" for e in evals])
    tasks = [t for t in summaries[0]["ci95"] if t in real] + [t for t in real if t not in summaries[0]["ci95"]]
    values = _with_all(real, tasks)
    per_seed = [dict(s["subtask_accuracy"], all=s["accuracy"]) for s in summaries]
    ran = [Stage(root, f"eval_{name}").info()["controls"] for root in seed_roots]
    common = [c for c in ran[0] if all(c in r for r in ran)]
    controls = {c: _effect([e / "run" for e in evals], [e / c for e in evals], tasks) for c in common}
    return {
        "accuracy": {t: sum(v) / len(v) for t, v in values.items()},
        "ci95": {t: bootstrap_ci(v) for t, v in values.items()},
        "spread": {t: _spread([s[t] for s in per_seed]) for t in values},
        "blind": controls.pop("blind"),
        "interventions": controls,
        "errors": sum(s.get("errors", 0) for s in summaries),
    }


def summarize(seed_roots: list[Path], names: list[str], chance: dict, named: dict[str, list[dict]]) -> dict:
    """`summary.json`'s results over the seeds in `seed_roots` for the models `names`: `chance`, per model its mean
    accuracy, and `ci95`, `spread`, `blind`, `interventions` (models with imagery), `comparisons` (`{"<model> -
    <reference>": {task: {"accuracy", "difference", "difference_ci95"}}}`, [`COMPARISONS`] where both ran),
    `answer_text_accuracy` (the mean of the seeds' `named[model]`) and `eval_errors`."""
    per_model = {name: model_results(seed_roots, name) for name in names}
    summary = {"chance": chance}
    summary.update({name: r["accuracy"] for name, r in per_model.items()})
    summary["answer_text_accuracy"] = {name: _mean_dicts(named[name]) for name in names}
    summary["ci95"] = {name: r["ci95"] for name, r in per_model.items()}
    summary["spread"] = {name: r["spread"] for name, r in per_model.items()}
    summary["blind"] = {name: r["blind"] for name, r in per_model.items()}
    summary["interventions"] = {name: r["interventions"] for name, r in per_model.items() if r["interventions"]}
    summary["eval_errors"] = {name: r["errors"] for name, r in per_model.items()}
    comparisons = {}
    for model, reference in COMPARISONS:
        if model in per_model and reference in per_model:
            hits = [pooled_hits([root / f"eval_{n}" / "run" for root in seed_roots]) for n in (model, reference)]
            tasks = [t for t in per_model[model]["accuracy"] if t != "all"]
            comparisons[f"{model} - {reference}"] = _difference(*hits, tasks)
    summary["comparisons"] = comparisons
    return summary
