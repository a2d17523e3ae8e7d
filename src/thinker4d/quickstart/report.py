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
