"""Compare evaluation runs: a terminal table and a per-subtask bar chart (PNG) of any number of result folders.

Paper: https://huggingface.co/papers/2605.05997 (the paper reports per-subtask accuracy and their mean, "Avg.").
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path


def load_summary(path: str | os.PathLike) -> dict:
    """A summary dict from a run folder (`<dir>/summary.json`) or a summary file."""
    path = Path(path)
    if path.is_dir():
        path = path / "summary.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: a run writes summary.json only when it is complete; rerun `thinker4d eval` to resume."
        )
    return json.loads(path.read_text())


def run_name(summary: dict, fallback: str) -> str:
    """The column name of a run: the model recorded in its summary (a Hub id `owner/name` as is, a local checkpoint by
    its folder name), or `fallback` (the run's folder or file name) when the summary records none."""
    model = str(summary.get("model") or "").rstrip("/")
    if not model:
        return fallback
    hub_id = model.count("/") == 1 and not model.startswith((".", "~")) and not Path(model).is_dir()
    return model if hub_id else Path(model).name


def _runs(runs) -> list[tuple[str, dict]]:
    out = []  # (name, summary, folder or file name)
    for run in runs:
        if isinstance(run, tuple):
            out.append((*run, None))
        else:
            summary = load_summary(run)
            folder = Path(run).name if Path(run).is_dir() else Path(run).stem
            out.append((run_name(summary, folder), summary, folder))
    counts = Counter(name for name, _, _ in out)
    # runs of one model (other settings or benchmarks) are told apart by their folders
    return [
        (f"{name} ({folder})" if folder and counts[name] > 1 and folder != name else name, summary)
        for name, summary, folder in out
    ]


def _subtask_rows(summaries: list[dict]) -> list[tuple[str, str]]:
    keys, names = [], {}
    for s in summaries:
        for k in s.get("subtask_accuracy", {}):
            if k not in keys:
                keys.append(k)
            names.setdefault(k, s.get("subtask_names", {}).get(k, k))
    return [(k, names[k]) for k in keys]


def format_table(runs, lenient: bool = False) -> str:
    """A plain-text table: one row per subtask, one column per run, then macro (Avg.) and micro rows, in percent.

    Args:
        runs: run folders, summary files, or `(name, summary dict)` pairs. A folder or file is named by the model its
            summary records (see [`run_name`]), else by its folder or file name.
        lenient (`bool`, *optional*): also print the lenient micro accuracy (labelled).
    """
    runs = _runs(runs)
    summaries = [s for _, s in runs]
    rows = [(name, [s.get("subtask_accuracy", {}).get(k) for s in summaries]) for k, name in _subtask_rows(summaries)]
    rows.append(("Avg. (macro)", [s.get("macro_accuracy") for s in summaries]))
    rows.append(("Micro", [s.get("accuracy") for s in summaries]))
    if lenient:
        rows.append(("Micro (lenient)", [s.get("lenient", {}).get("accuracy") for s in summaries]))
    rows.append(("Questions", [s.get("total") for s in summaries]))
    rows.append(("Errors", [s.get("errors") for s in summaries]))
    first = max(len(r[0]) for r in rows)
    widths = [max(8, len(name)) for name, _ in runs]

    def cell(v, w, is_count):
        if v is None:
            return "-".rjust(w)
        return (str(v) if is_count else f"{100 * v:.2f}").rjust(w)

    lines = [" " * first + " | " + " | ".join(n.rjust(w) for (n, _), w in zip(runs, widths))]
    lines.append("-" * len(lines[0]))
    for name, vals in rows:
        is_count = name in ("Questions", "Errors")
        lines.append(name.ljust(first) + " | " + " | ".join(cell(v, w, is_count) for v, w in zip(vals, widths)))
    return "\n".join(lines)


def control_name(summary: dict) -> str:
    """`"real"`, `"blind"`, `"zero"`, `"blind+shuffle"`, ...: the controls a run's summary records."""
    parts = (["blind"] if summary.get("blind") else []) + [
        v for v in [summary.get("latent_intervention")] if v and v != "none"
    ]
    return "+".join(parts) or "real"


def has_controls(runs) -> bool:
    """Whether any of `runs` (folders or summary files) is a control run."""
    return any(control_name(load_summary(r)) != "real" for r in runs if not isinstance(r, tuple))


def _question_values(folder: Path) -> dict[str, dict[int, float]]:
    from .metrics import question_hits, read_results

    path = Path(folder) / "results.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: comparing controls pairs questions, so it needs run folders.")
    return question_hits(read_results(path, tolerate_partial_last_line=False))


def _paired_values(reference: dict, control: dict, names: tuple[str, str]) -> dict[str, tuple[list, list]]:
    """`{task: (reference values, control values)}` over the same questions, plus `"all"`."""
    if {t: sorted(q) for t, q in control.items()} != {t: sorted(q) for t, q in reference.items()}:
        raise ValueError(
            f"{names[1]} holds other questions than {names[0]}: a paired difference needs runs of the same "
            "benchmark, data and --limit."
        )
    out = {t: (list(reference[t].values()), [control[t][i] for i in reference[t]]) for t in reference}
    out["all"] = ([v for r, _ in out.values() for v in r], [v for _, c in out.values() for v in c])
    return out


def control_effects(reference, control) -> dict:
    """Per task (and `"all"`, micro): the control run's accuracy, its difference to the reference run and the paired
    bootstrap 95% interval of that difference ([`paired_bootstrap_ci`] over the same questions).

    Args:
        reference, control: run folders (their `results.jsonl`) of the same benchmark, data and `limit`.

    Returns:
        `{task: {"accuracy": float, "difference": float, "difference_ci95": [low, high]}}`.
    """
    from .metrics import paired_bootstrap_ci

    pairs = _paired_values(_question_values(reference), _question_values(control), (str(reference), str(control)))
    out = {}
    for task, (ref, other) in pairs.items():
        diff, interval = paired_bootstrap_ci(other, ref)
        out[task] = {"accuracy": sum(other) / len(other), "difference": diff, "difference_ci95": interval}
    return out


def format_controls(runs) -> str:
    """Per task: the accuracy of the first run (the reference, normally the real run) with its 95% interval, and for
    every other run its accuracy and its difference to the reference with a paired-bootstrap 95% interval over the
    same questions ([`control_effects`]). A drop whose interval lies below 0 is evidence that the model uses what the
    control removed.

    Args:
        runs: run folders (their `results.jsonl` is read; summaries alone cannot be paired). The runs must hold the
            same questions (same benchmark, data and `limit`).
    """
    from .metrics import bootstrap_ci

    if len(runs) < 2:
        raise ValueError("The controls table needs a reference run and at least one control run.")
    folders = [Path(r) for r in runs]
    summaries = [load_summary(f) for f in folders]
    effects = [control_effects(folders[0], f) for f in folders[1:]]
    reference = _paired_values(*[_question_values(folders[0])] * 2, (str(folders[0]),) * 2)
    names = {k: n for s in summaries for k, n in s.get("subtask_names", {}).items()}
    heads = [f"{control_name(s)} ({f.name})" for s, f in zip(summaries, folders)]
    rows = []
    for task, (base, _) in reference.items():
        low, high = bootstrap_ci(base)
        row = [names.get(task, "All (micro)" if task == "all" else task)]
        row.append(f"{100 * sum(base) / len(base):.1f} [{100 * low:.1f}, {100 * high:.1f}]")
        for e in effects:
            acc, diff, (dl, dh) = e[task]["accuracy"], e[task]["difference"], e[task]["difference_ci95"]
            row.append(f"{100 * acc:.1f}  {100 * diff:+.1f} [{100 * dl:+.1f}, {100 * dh:+.1f}]")
        rows.append(row)
    header = ["", *heads]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    lines = [line(header)]
    lines.append("-" * len(lines[0]))
    lines += [line(r) for r in rows]
    note = (
        f"accuracy (%) of {heads[0]} with its 95% CI; for the others: accuracy, difference to it and its paired 95% "
        "CI (bootstrap over questions)"
    )
    return "\n".join([note, *lines])


def print_table(runs, lenient: bool = False) -> None:
    """Prints [`format_table`]."""
    print(format_table(runs, lenient=lenient))


def plot_subtask_accuracy(runs, output: str | os.PathLike, title: str | None = None) -> Path:
    """A grouped bar chart (PNG) of per-subtask accuracy plus macro "Avg.", one bar colour per run.

    Args:
        runs: run folders, summary files, or `(name, summary dict)` pairs.
        output (`str`): the PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs = _runs(runs)
    if not runs:
        raise ValueError("plot_subtask_accuracy needs at least one run.")
    summaries = [s for _, s in runs]
    rows = _subtask_rows(summaries)
    labels = [name for _, name in rows] + ["Avg."]
    x = np.arange(len(labels))
    width = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(labels) * max(1, len(runs)) ** 0.5), 4.0))
    for i, (name, s) in enumerate(runs):
        vals = [100 * (s.get("subtask_accuracy", {}).get(k) or 0.0) for k, _ in rows]
        vals.append(100 * (s.get("macro_accuracy") or 0.0))
        ax.bar(x + (i - (len(runs) - 1) / 2) * width, vals, width, label=name)
    ax.set_xticks(x, labels, rotation=45, ha="right")
    ax.set_ylabel("accuracy (%), strict parser")
    ax.set_ylim(0, 100)
    ax.set_title(title or f"{summaries[0].get('benchmark', '')} per-subtask accuracy")
    ax.legend(fontsize="small")
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return output
