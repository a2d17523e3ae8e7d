"""The quickstart's report: loss and accuracy plots, `report.md`, the self-contained `report.html`, and the verdict."""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
from pathlib import Path

from .config import LABELS, QuickstartConfig


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


def _mark_imagery(text: str, as_html: bool) -> str:
    if as_html:
        text = html.escape(text)
        text = text.replace(html.escape("<|latent_start|>"), '<span class="img">[imagery: ')
        text = text.replace(html.escape("<|latent_end|>"), "]</span>")
        return text.replace(html.escape("<|latent_pad|>"), "z ")
    text = text.replace("<|latent_start|>", "[imagery: ").replace("<|latent_end|>", "]")
    return text.replace("<|latent_pad|>", "z ")


def _table(head: list[str], rows: list[list[str]], as_html: bool) -> str:
    """A table in markdown or HTML."""
    if as_html:
        cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><tr>{cells}</tr>{body}</table>"
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _percent_table(data: dict, names: list, tasks: list, as_html: bool) -> str:
    """`data[name][task]` (fractions) as a task x model table of percentages, in markdown or HTML."""
    rows = [[t] + [f"{data[n].get(t, float('nan')) * 100:.1f}" for n in names] for t in tasks]
    return _table(["task", *[LABELS[n] for n in names]], rows, as_html)


def _pct(x: float) -> str:
    return f"{x * 100:.1f}"


def _interval(low_high) -> str:
    return f"[{low_high[0] * 100:.1f}, {low_high[1] * 100:.1f}]"


def _effect_cell(effect: dict, seeds: int) -> str:
    """A control's `accuracy (difference [95% CI])` in %, and with several seeds in how many its own CI excludes 0."""
    cell = f"{_pct(effect['accuracy'])} ({effect['difference'] * 100:+.1f} {_interval(effect['difference_ci95'])}"
    if seeds > 1:
        cell += f"; {effect.get('seeds_excluding_zero', 0)}/{seeds} seeds"
    return cell + ")"


def _tables(summary: dict, tasks: list, as_html: bool) -> list[tuple[str, str]]:
    """The report's `(caption, table)` pairs: accuracy with intervals, the spread over seeds, the blind baseline, the
    latent interventions and the paired model comparisons (each where the summary has them)."""
    names = [n for n in LABELS if n in summary and n != "chance"]
    seeds = len(summary.get("seeds", [0]))
    over = f", mean over {seeds} training seeds" if seeds > 1 else ""
    ci = summary.get("ci95", {})
    rows = [
        [t, _pct(summary["chance"][t])]
        + [f"{_pct(summary[n][t])} {_interval(ci[n][t])}" if n in ci else _pct(summary[n][t]) for n in names]
        for t in tasks
    ]
    out = [
        (
            f"Accuracy (%){over} [95% bootstrap interval over questions]:",
            _table(["task", "chance", *[LABELS[n] for n in names]], rows, as_html),
        )
    ]
    if seeds > 1 and "spread" in summary:
        rows = [[t] + [_spread_cell(summary["spread"][n][t]) for n in names] for t in tasks]
        out.append(
            (
                f"Spread over the {seeds} training seeds {summary['seeds']}: mean ± std (min-max), %:",
                _table(["task", *[LABELS[n] for n in names]], rows, as_html),
            )
        )
    if summary.get("blind"):
        blind = summary["blind"]
        rows = [[t] + [_effect_cell(blind[n][t], seeds) for n in names if n in blind] for t in tasks]
        out.append(
            (
                "Blind baseline (mid-grey frames): accuracy (%) and its difference to the real run [95% paired "
                "bootstrap interval]:",
                _table(["task", *[LABELS[n] for n in names if n in blind]], rows, as_html),
            )
        )
    rows = [
        [LABELS[n], f"latents: {i}"] + [_effect_cell(effects[t], seeds) for t in tasks]
        for n, by in summary.get("interventions", {}).items()
        for i, effects in by.items()
    ]
    if rows:
        out.append(
            (
                "Latent interventions at the imagery slots: accuracy (%) and its difference to the real run [95% "
                "paired bootstrap interval]" + ("; seeds whose own interval excludes 0" if seeds > 1 else "") + ":",
                _table(["model", "control", *tasks], rows, as_html),
            )
        )
    rows = [
        [" - ".join(LABELS[n] for n in pair.split(" - "))]
        + [f"{d[t]['difference'] * 100:+.1f} {_interval(d[t]['difference_ci95'])}" for t in tasks]
        for pair, d in summary.get("comparisons", {}).items()
    ]
    if rows:
        out.append(
            (
                "Paired differences between models (points) [95% paired bootstrap interval]:",
                _table(["difference", *tasks], rows, as_html),
            )
        )
    return out


def _spread_cell(spread: dict) -> str:
    return f"{_pct(spread['mean'])} ± {_pct(spread['std'])} ({_pct(spread['min'])}-{_pct(spread['max'])})"


def write_report(
    root: Path, cfg: QuickstartConfig, summary: dict, trace: dict | None, timings: dict, loss_root: Path | None = None
) -> None:
    """`report.md`, `report.html` and `figures/` under `root` from `summary.json`'s content (`summary`); the loss plot
    shows the training logs under `loss_root` (default `root`; the first seed's folder with several seeds)."""
    fig_dir = root / "figures"
    fig_dir.mkdir(exist_ok=True)
    loss_png = plot_losses(loss_root or root, fig_dir / "losses.png")
    acc_png = plot_accuracy(summary, fig_dir / "accuracy.png")
    tasks = [t for t in summary["chance"] if t != "all"] + ["all"]
    named = summary.get("answer_text_accuracy")
    diagnostic = (
        "Diagnostic (not the headline): % of answers that name the correct option's text, whatever their letter. A gap "
        "to the accuracy means the model saw the motion but did not map it to the shuffled letter."
    )
    verdict = _verdict(summary, named)
    intro = (
        "Tiny Qwen2.5-VL trained from random weights (after an option-reading warm-up, which is the 'untrained' "
        "model) on synthetic 4D-world clips, evaluated on held-out SynthDSR (strict answer parsing)."
    )
    md = [
        "# thinker4d quickstart report",
        "",
        intro + " Settings: " + ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(cfg).items()) + ".",
        "",
        verdict,
    ]
    for caption, table in _tables(summary, tasks, as_html=False):
        md += ["", caption, "", table]
    md += ["", f"![accuracy](figures/{acc_png.name})"]
    if named:
        md += ["", diagnostic, "", _percent_table(named, list(named), tasks, as_html=False)]
    if loss_png:
        md += ["", f"![losses](figures/{loss_png.name})"]
    if trace:
        md += [
            "",
            f"## {_trace_title(trace)}",
            "",
            f"Question: {trace['question']}",
            "",
            "Options: " + "; ".join(trace["options"]) + f" (correct: {trace['answer']})",
            "",
            f"Generated ({trace['imagery_blocks']} imagery blocks; each z is a fed-back hidden state; "
            f"{_trace_outcome(trace)}):",
            "",
            "> " + _mark_imagery(trace["generated"], as_html=False),
        ]
    md += ["", "## Stage timings (s)", "", json.dumps(timings, indent=1)]
    (root / "report.md").write_text("\n".join(md) + "\n")

    def img(path):
        return f'<img src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">' if path else ""

    body = ["<h1>thinker4d quickstart report</h1>", f"<p>{html.escape(intro)}</p>", f"<p>{html.escape(verdict)}</p>"]
    for caption, table in _tables(summary, tasks, as_html=True):
        body += [f"<p>{html.escape(caption)}</p>", table]
    if named:
        body += [f"<p>{html.escape(diagnostic)}</p>", _percent_table(named, list(named), tasks, as_html=True)]
    body += [img(acc_png), img(loss_png)]
    if trace:
        body += [
            f"<h2>{html.escape(_trace_title(trace))}</h2>",
            f"<p><b>Question:</b> {html.escape(trace['question'])}<br><b>Options:</b> "
            + html.escape("; ".join(trace["options"]))
            + f" (correct: {trace['answer']})</p>",
            "<p><b>Frames</b></p>",
            f'<img src="data:image/png;base64,{trace["frames_png"]}">',
            f"<p><b>Generated</b> ({trace['imagery_blocks']} imagery blocks; each z is a fed-back hidden state; "
            f"{html.escape(_trace_outcome(trace))}):<br>"
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


def _trace_title(trace: dict) -> str:
    return f"One reasoning trace ({LABELS[trace['model']]} model, held-out SynthDSR question {trace['id']})"


def _trace_outcome(trace: dict) -> str:
    return f"parsed answer {trace['pred'] or 'none'}, " + ("correct" if trace["hit"] else "wrong")


def _verdict(results: dict, named: dict | None = None) -> str:
    """The report's verdict, computed from `results` (`summary.json`'s content: the accuracies, and where present the
    `seeds`, `comparisons`, `blind` and `interventions` with their 95% intervals) and the answer-text diagnostic. It
    reads camera motion, the task the tiny models learn, in full, and each other task in one sentence."""
    task = "camera_motion"
    chance = results["chance"].get(task)
    dift = results.get("dift", {}).get(task)
    text = results.get("text_cot", {}).get(task)
    parts = []
    seeds = results.get("seeds", [])
    if len(seeds) > 1:
        parts.append(f"Accuracies are means over {len(seeds)} training seeds; the intervals are over questions.")
    if chance is not None and dift is not None:
        gap = (dift - chance) * 100
        interval = results.get("ci95", {}).get("dift", {}).get(task)
        where = ""
        if interval:
            low, high = interval
            against = "entirely above" if low > chance else "entirely below" if high < chance else "which includes"
            where = f"; {_ci_words(interval)}, {against} chance"
        parts.append(
            f"DIFT camera-motion accuracy is {dift * 100:.1f}% vs {chance * 100:.1f}% chance ({gap:+.1f} points{where})."
        )
    if dift is not None and text is not None:
        if dift > text:
            parts.append(f"DIFT beats the text-only CoT baseline on camera motion ({text * 100:.1f}%).")
        else:
            parts.append(
                f"At this scale DIFT does not beat the text-only CoT baseline on camera motion ({text * 100:.1f}%): "
                "the imagery supervision did not help here."
            )
    comparison = results.get("comparisons", {}).get("dift - text_cot", {}).get(task)
    if comparison:
        parts.append(f"DIFT minus text CoT on camera motion: {_difference_words(comparison)}.")
    blind = results.get("blind", {}).get("dift", {}).get(task)
    if blind:
        beats = blind["difference_ci95"][1] < 0
        parts.append(
            f"Blind frames score {blind['accuracy'] * 100:.1f}% with DIFT on camera motion, a change of "
            f"{_difference_words(blind)}, so DIFT {'beats' if beats else 'does not beat'} its blind baseline."
        )
    for model, who in (("dift", "DIFT"), ("probe_dift", "the imagery-only probe's DIFT model")):
        parts += _intervention_sentence(results.get("interventions", {}).get(model, {}), who, task)
    parts += _probe_sentence(results, task)
    rl = results.get("dift_grpo", {}).get(task)
    if dift is not None and rl is not None:
        parts.append(
            f"After the 4DRL phase, DIFT + 4DRL scores {rl * 100:.1f}% on camera motion ({(rl - dift) * 100:+.1f} "
            "points)."
        )
    if named and "dift" in named and named["dift"].get(task) is not None:
        right_name = named["dift"][task]
        parts.append(
            f"The DIFT model names the correct camera motion in {right_name * 100:.0f}% of its answers (diagnostic "
            "table below)"
            + (
                ", so what it misses is mostly the mapping to the shuffled option letter."
                if dift is not None and right_name - dift >= 0.1
                else "."
            )
        )
    parts += _other_tasks_sentences(results, task)
    return " ".join(parts)


def _other_tasks_sentences(results: dict, verdict_task: str) -> list[str]:
    """One sentence per task other than `verdict_task`: which trained models' 95% intervals lie above chance, or the
    best trained model when none does (its interval, where the results have one)."""
    sentences = []
    for task, chance in results["chance"].items():
        if task in (verdict_task, "all"):
            continue
        trained = [n for n in LABELS if n not in ("warmup", "chance", "untrained") and task in results.get(n, {})]
        if not trained:
            continue
        intervals = {n: results.get("ci95", {}).get(n, {}).get(task) for n in trained}
        above = [n for n in trained if intervals[n] and intervals[n][0] > chance]
        if above:
            listed = ", ".join(f"{LABELS[n]} {results[n][task] * 100:.1f}%" for n in above)
            sentences.append(f"On {task}, these models' 95% intervals lie above {chance * 100:.1f}% chance: {listed}.")
            continue
        best = max(trained, key=lambda n: results[n][task])
        where = f" ({_ci_words(intervals[best])})" if intervals[best] else ""
        sentences.append(
            f"On {task}, no trained model is shown to beat {chance * 100:.1f}% chance: the best, {LABELS[best]}, "
            f"scores {results[best][task] * 100:.1f}%{where}."
        )
    return sentences


def _ci_words(low_high) -> str:
    return f"95% CI {low_high[0] * 100:.1f} to {low_high[1] * 100:.1f}"


def _difference_words(effect: dict) -> str:
    low, high = effect["difference_ci95"]
    where = "excludes 0" if low > 0 or high < 0 else "includes 0"
    return f"{effect['difference'] * 100:+.1f} points (95% CI {low * 100:+.1f} to {high * 100:+.1f}, which {where})"


def _intervention_sentence(by_intervention: dict, who: str, task: str) -> list[str]:
    """One sentence on `who`'s latent interventions: each one's difference, and whether any drop's CI excludes 0."""
    effects = {i: e[task] for i, e in by_intervention.items() if task in e}
    if not effects:
        return []
    listed = ", ".join(
        f"{i} {e['difference'] * 100:+.1f} ({e['difference_ci95'][0] * 100:+.1f} to {e['difference_ci95'][1] * 100:+.1f})"
        for i, e in effects.items()
    )
    drops = [i for i, e in effects.items() if e["difference_ci95"][1] < 0]
    if drops:
        end = f"the drop under {' and '.join(drops)} excludes 0, so its answers use the latents"
    else:
        end = "no drop's interval excludes 0, so these controls do not show that its answers use the latents"
    return [f"Replacing the latents of {who} changes camera-motion accuracy by {listed} points (95% CI): {end}."]


def _probe_sentence(results: dict, task: str) -> list[str]:
    """The imagery-only probe: DIFT vs text CoT on the same imagery-only CoTs (and raw QA), with the paired CI."""
    probe = results.get("comparisons", {}).get("probe_dift - probe_text_cot", {}).get(task)
    if not probe:
        return []
    dift, text = results["probe_dift"][task], results["probe_text_cot"][task]
    raw = results.get("raw_qa", {}).get(task)
    low, high = probe["difference_ci95"]
    if low > 0:
        end = "the latents carry information the answer uses"
    elif high < 0:
        end = "the same CoT without imagery blocks does better, so the latents do not help the answer here"
    else:
        end = "the probe does not show that the latents carry information the answer uses"
    raw_words = f" (raw-QA SFT {raw * 100:.1f}%)" if raw is not None else ""
    return [
        f"Imagery-only probe on camera motion: DIFT {dift * 100:.1f}% vs text CoT {text * 100:.1f}% on the same CoTs "
        f"without imagery blocks{raw_words}, {_difference_words(probe)}: {end}."
    ]
