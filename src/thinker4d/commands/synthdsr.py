"""`thinker4d synthdsr`: build the held-out SynthDSR benchmark (parquet, evaluation-row columns).

`--config FILE` (or `--config=FILE`) is a YAML file whose keys are these flags; flags override it. Every flag takes `_`
or `-` alike; the former `--out` still works, with a deprecation warning.
"""

from __future__ import annotations

import argparse

from .options import accept_both_spellings, add_config_option, parse_verb_args


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        formatter_class=argparse.RawDescriptionHelpFormatter,
        prog="thinker4d synthdsr",
        description="Render held-out clips (seeds >= 1_000_000) and write SynthDSR questions as parquet; "
        "read back with datasets.load_dataset(OUTPUT_DIR)['test'].",
        epilog="example: thinker4d synthdsr --output_dir synthdsr  # 270 questions per task, balanced answers",
    )
    add_config_option(p)
    p.add_argument("--output_dir", required=True, help="output folder (data/test-00000-of-00001.parquet + README.md)")
    p.add_argument(
        "--num-questions",
        type=int,
        default=None,
        help="total questions (default: 270 per task, so a 95%% interval on one task is within +-6 points)",
    )
    p.add_argument("--seed", type=int, default=0, help="build seed, 0-8999 (selects a disjoint block of clip seeds)")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--num-frames", type=int, default=16, help="frames per clip (object_motion_state needs at least 5)")
    p.add_argument("--fps", type=float, default=8.0)
    p.add_argument("--tasks", nargs="+", default=None, help="subset of tasks (default: all)")
    return accept_both_spellings(p)


# Deprecated flag names (and --config keys) -> the current ones; they still work, with a warning, for one release.
RENAMED = {"out": "output_dir"}


def _parse(argv: list[str] | None, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    return parse_verb_args(parser or make_parser(), argv, "synthdsr", RENAMED)


def main(argv=None) -> int:
    parser = make_parser()
    args = _parse(argv, parser)
    from thinker4d.world import build_synthdsr

    try:
        ds = build_synthdsr(
            args.output_dir,
            num_questions=args.num_questions,
            seed=args.seed,
            num_frames=args.num_frames,
            size=args.size,
            fps=args.fps,
            tasks=args.tasks,
        )
    except ValueError as e:  # settings the build refuses up front (sizes, seeds, tasks the clips cannot support)
        parser.error(str(e))
    import json
    from pathlib import Path

    stats = json.loads((Path(args.output_dir) / "build_stats.json").read_text())
    print(f"Wrote {len(ds)} SynthDSR questions from {stats['clips']} clips to {args.output_dir}")
    for task, kept in stats["kept"].items():
        b = stats["balance"].get(task, {})
        print(
            f"  {task}: kept {kept} of {stats['examined'][task]} examined ({stats['skipped'][task]} skipped: class full)"
            + (f"; majority {b['majority_rate']:.3f}, chance {b['chance']:.3f}" if b else "")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
