"""Scripts under examples/ that are not recipes (those are in test_recipes.py)."""

import importlib.util
import json
import math
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_option_lookup_probe_trains_and_scores(tmp_path, capsys):
    from thinker4d.tiny import build_tiny_tokenizer

    build_tiny_tokenizer().save_pretrained(tmp_path / "tok")
    probe = _load(ROOT / "examples" / "research" / "option_lookup.py")
    args = [
        "--tokenizer",
        str(tmp_path / "tok"),
        "--steps",
        "3",
        "--pool",
        "5",
        "--noise-tokens",
        "4",
        "--held",
        "4",
        "--threads",
        "1",
    ]
    summary = probe.main(args)
    assert summary["settings"]["answer"] == "full" and summary["settings"]["pool"] == 5
    (point,) = summary["history"]
    assert point["step"] == 3 and math.isfinite(point["loss"]) and point["loss"] > 0
    assert summary["final_letter_accuracy"] == point["letter_accuracy"]
    for key in ("final_letter_accuracy", "generated_letter_accuracy"):  # shares of the 4 held-out rows
        assert summary[key] * 4 == pytest.approx(round(summary[key] * 4)), key
    # One JSON line per evaluation, then the summary.
    assert [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()] == [point, summary]
    # The same seed gives the same run (timings aside).
    again = probe.main(args)
    capsys.readouterr()
    assert [{**p, "seconds": 0} for p in again["history"]] == [{**point, "seconds": 0}]
    assert again["generated_letter_accuracy"] == summary["generated_letter_accuracy"]
    scan = probe.main([*args, "--answer", "scan", "--held", "3", "--show-misses"])
    assert scan["settings"]["answer"] == "scan" and scan["settings"]["held"] == 3
    assert scan["generated_letter_accuracy"] in (0.0, 1 / 3, 2 / 3, 1.0)  # greedy answers of 3 held-out rows
    misses = [line for line in capsys.readouterr().out.splitlines() if line.startswith("MISS ")]
    assert len(misses) == round(3 * (1 - scan["generated_letter_accuracy"]))
    with pytest.raises(SystemExit, match="multiple of --kv-heads"):
        probe.main(["--tokenizer", str(tmp_path / "tok"), "--heads", "3", "--kv-heads", "2"])
