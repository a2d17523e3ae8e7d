"""`thinker4d quickstart`: the offline end-to-end main job (synthetic world -> synthesis -> DIFT -> 4DRL -> eval).

Runs on a CPU with no network in roughly 15-25 minutes on 2 cores with the defaults, writes `summary.json`,
`report.md` and `report.html` under `--output_dir`, and prints the results table. While it runs it prints one line per
stage and a progress bar per training stage; the training log dicts go to `train_<model>/log_history.jsonl`.
Rerunning the same command resumes: finished stages are reused. `--config FILE` (or `--config=FILE`) is a YAML file
whose keys are these flags (`QuickstartConfig` fields, `output_dir`); flags override it. Every flag takes `_` or `-`
alike; the former `--output` still works, with a deprecation warning.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from .options import accept_both_spellings, add_config_option, parse_verb_args


def make_parser() -> argparse.ArgumentParser:
    from thinker4d.quickstart import QuickstartConfig

    parser = argparse.ArgumentParser(
        formatter_class=argparse.RawDescriptionHelpFormatter,
        prog="thinker4d quickstart",
        description=__doc__,
        epilog="example: thinker4d quickstart --output_dir thinker4d_quickstart",
    )
    parser.add_argument("--output_dir", default="thinker4d_quickstart", help="report folder (default: %(default)s)")
    add_config_option(parser)
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
    return accept_both_spellings(parser)


# Deprecated flag names (and --config keys) -> the current ones; they still work, with a warning, for one release.
RENAMED = {"output": "output_dir"}


def _parse(argv: list[str] | None):
    return parse_verb_args(make_parser(), argv, "quickstart", RENAMED)


def main(argv: list[str] | None = None) -> int:
    import logging
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = _parse(argv)
    logging.basicConfig(level=logging.WARNING)
    from thinker4d.quickstart import LABELS, QuickstartConfig, run_quickstart

    from .options import input_errors

    fields = [f.name for f in dataclasses.fields(QuickstartConfig)]
    values = {name: getattr(args, name) for name in fields if getattr(args, name) is not None}
    with input_errors(ValueError):  # a value QuickstartConfig's __post_init__ refuses
        cfg = QuickstartConfig(**values)
    summary = run_quickstart(cfg, args.output_dir)
    names = [n for n in LABELS if n in summary]
    tasks = [t for t in summary["chance"] if t != "all"] + ["all"]
    over = f", mean over {cfg.seeds} training seeds" if cfg.seeds > 1 else ""
    print(f"\nheld-out SynthDSR accuracy (%){over}, {args.output_dir}/report.html")
    print(f"{'task':<20}" + "".join(f"{LABELS[n]:>14}" for n in names))
    for t in tasks:
        print(f"{t:<20}" + "".join(f"{summary[n].get(t, float('nan')) * 100:>14.1f}" for n in names))
    print(json.dumps({"timings_s": summary["timings_s"]}))
    return 0
