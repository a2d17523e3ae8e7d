"""Evaluation: benchmark tasks, the batched runner, answer parsing and metrics (4DThinker, arXiv 2605.05997).

Importing `thinker4d.eval` is cheap (standard library only): the parsers are defined in `thinker4d.answers` (training
rewards use them too), and everything that needs torch, transformers or datasets is imported on first attribute access.
"""

from __future__ import annotations

import importlib

from ..answers import extract_choice, extract_choice_lenient, paper_extract_choice, strip_special_tokens


_LAZY = {
    "EvalConfig": "config",
    "run_evaluation": "runner",
    "evaluate_model": "runner",
    "summarize": "metrics",
    "score_records": "metrics",
    "rescore_paper_results": "metrics",
    "read_results": "metrics",
    "bootstrap_ci": "metrics",
    "paired_bootstrap_ci": "metrics",
    "format_controls": "report",
    "control_effects": "report",
    "load_task": "tasks",
    "TASKS": "tasks",
    "plot_subtask_accuracy": "report",
    "format_table": "report",
    "print_table": "report",
    "decode_video": "thinker4d.video",  # outside eval/: the 4DRL trainer decodes videos too
}

__all__ = [
    "extract_choice",
    "extract_choice_lenient",
    "metric_path",
    "paper_extract_choice",
    "strip_special_tokens",
    *_LAZY,
]


def metric_path() -> str:
    """Folder of the `evaluate` metric shipped in the package (`thinker4d_mcq.py` and its README.md metric card):
    `evaluate.load(metric_path())`."""
    from pathlib import Path

    return str(Path(__file__).parent / "thinker4d_mcq")


def __getattr__(name: str):
    if name in _LAZY:
        target = _LAZY[name]
        module = importlib.import_module(target if target.startswith("thinker4d.") else f".{target}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
