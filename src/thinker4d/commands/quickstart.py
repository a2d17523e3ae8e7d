"""`thinker4d quickstart`: the offline end-to-end main job (synthetic world -> synthesis -> DIFT -> 4DRL -> eval).

Runs on a CPU with no network in roughly 10-15 minutes on 2 cores with the defaults, writes `summary.json`,
`report.md` and `report.html` under `--output`, and prints the results table. While it runs it prints one line per
stage and a progress bar per training stage; the training log dicts go to `train_<model>/log_history.jsonl`.
Rerunning the same command resumes: finished stages are reused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json


def make_parser() -> argparse.ArgumentParser:
    from thinker4d.quickstart import QuickstartConfig

    parser = argparse.ArgumentParser(
        prog="thinker4d quickstart",
        description=__doc__,
        epilog="example: thinker4d quickstart --output thinker4d_quickstart",
    )
    parser.add_argument("--output", default="thinker4d_quickstart", help="report folder (default: %(default)s)")
    parser.add_argument("--config", help="YAML file of QuickstartConfig fields; flags override it")
    for f in dataclasses.fields(QuickstartConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kwargs = {"help": f"{f.metadata.get('help', '')} (default: {default})", "default": None}
        if isinstance(default, list):
            kwargs["nargs"] = "+"
        elif isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = type(default)
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, **kwargs)
    return parser


def main(argv: list[str] | None = None) -> int:
    import logging
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from thinker4d.quickstart import LABELS, QuickstartConfig, run_quickstart

    from .options import input_errors, read_config

    fields = [f.name for f in dataclasses.fields(QuickstartConfig)]
    values = read_config(args.config, "quickstart", known=set(fields)) if args.config else {}
    values.update({name: getattr(args, name) for name in fields if getattr(args, name) is not None})
    with input_errors(ValueError):  # a value QuickstartConfig's __post_init__ refuses
        cfg = QuickstartConfig(**values)
    summary = run_quickstart(cfg, args.output)
    names = [n for n in LABELS if n in summary]
    tasks = [t for t in summary["chance"] if t != "all"] + ["all"]
    over = f", mean over {cfg.seeds} training seeds" if cfg.seeds > 1 else ""
    print(f"\nheld-out SynthDSR accuracy (%){over}, {args.output}/report.html")
    print(f"{'task':<20}" + "".join(f"{LABELS[n]:>14}" for n in names))
    for t in tasks:
        print(f"{t:<20}" + "".join(f"{summary[n].get(t, float('nan')) * 100:>14.1f}" for n in names))
    print(json.dumps({"timings_s": summary["timings_s"]}))
    return 0
