"""`thinker4d synthesize`: run the 4D chain-of-thought data synthesis pipeline (docs/synthesis.md).

thinker4d synthesize --config examples/synthesis/offline.yaml --output_dir out/cot [--resume]
    [--num-shards N --shard-index i] [--num-proc N]
thinker4d synthesize merge out/shard-* --output_dir out/cot
thinker4d synthesize paper-jsonl out/cot --jsonl out/cot.jsonl
thinker4d synthesize push out/cot --repo-id me/4d-cot

Here `--config FILE` (or `--config=FILE`) is a YAML file of `SynthesisConfig` fields, which the override flags
(`--num-proc`, `--world-num-clips`, `--teacher`, `--segmenter`) override. Every flag takes `_` or `-` alike; the
former `--output` still works, with a deprecation warning.
"""

from __future__ import annotations

import argparse
import json
import sys

from .options import accept_both_spellings, rename_flags


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="thinker4d synthesize",
        description="Synthesize 4D CoT rows (frames, question, CoT with <imagery>, overlays) into a parquet dataset.\n"
        "Sub-commands: `merge DIR... --output_dir OUT`, `paper-jsonl DIR --jsonl FILE`, `push DIR --repo-id ID`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: thinker4d synthesize --config examples/synthesis/offline.yaml --output_dir data/4d-cot",
    )
    p.add_argument("--config", help="YAML of SynthesisConfig fields (see examples/synthesis/)")
    p.add_argument("--output_dir", "-o", required=True, help="dataset folder to write")
    p.add_argument("--resume", action="store_true", help="continue a run in --output_dir (finished clips are kept)")
    p.add_argument("--num-shards", type=int, default=1, help="split the sources into N disjoint shards")
    p.add_argument("--shard-index", type=int, default=0, help="which shard this process runs (0..N-1)")
    p.add_argument(
        "--num-proc",
        type=int,
        default=None,
        help="override num_proc: worker processes for the local stages on this machine (rows do not change)",
    )
    p.add_argument("--world-num-clips", type=int, default=None, help="override world_num_clips")
    p.add_argument("--teacher", choices=["rule", "gemini"], default=None, help="override the teacher")
    p.add_argument("--segmenter", choices=["ground_truth", "sam2"], default=None, help="override the segmenter")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return accept_both_spellings(p)


# Deprecated flag names -> the current ones; they still work, with a warning, for one release.
RENAMED = {"output": "output_dir"}


def _sub_parser(name: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"thinker4d synthesize {name}")
    if name == "merge":
        p.add_argument("shards", nargs="+", help="complete shard output folders")
        p.add_argument("--output_dir", "-o", required=True)
    elif name == "paper-jsonl":
        p.add_argument("dataset", help="complete synthesis folder")
        p.add_argument("--jsonl", required=True, help="JSONL file to write (images next to it)")
    else:
        p.add_argument("dataset", help="complete synthesis folder")
        p.add_argument("--repo-id", required=True)
        p.add_argument("--private", action="store_true")
        p.add_argument(
            "--license", default=None, help="license id for the card (default: the license the sources record)"
        )
    return accept_both_spellings(p)


def _print_report(report: dict) -> None:
    keys = ("output_dir", "candidates", "kept", "rejected", "tasks", "num_proc", "timings_s")
    short = {k: report.get(k) for k in keys if k in report}
    print(json.dumps(short, indent=1))
    for e in report.get("errors") or []:
        print(f"error: clip {e.get('clip_id')} at {e.get('stage')}: {e.get('message')}", file=sys.stderr)
    if report.get("retryable") and report.get("complete"):
        print(
            f"note: {report['retryable']} candidates were rejected for transient teacher failures (timeouts, 429, "
            "5xx); rerun with --resume to retry them.",
            file=sys.stderr,
        )
    usage = report.get("teacher_usage")
    if usage and usage.get("teacher") != "rule":
        print("teacher usage: " + json.dumps(usage))


def _parse(argv: list[str] | None, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """The arguments of a synthesis run (not of a sub-command)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return (parser or make_parser()).parse_args(rename_flags(argv, "synthesize", RENAMED))


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("merge", "paper-jsonl", "push"):
        sub = argv[0]
        args = _sub_parser(sub).parse_args(rename_flags(argv[1:], f"synthesize {sub}", RENAMED))
        if sub == "merge":
            from thinker4d.data.pipeline import merge_outputs

            _print_report(merge_outputs(args.shards, args.output_dir))
        elif sub == "paper-jsonl":
            from thinker4d.data.writer import write_paper_jsonl

            print(f"Wrote {write_paper_jsonl(args.dataset, args.jsonl)} lines to {args.jsonl}")
        else:
            from thinker4d.hub import push_dataset

            push_dataset(args.dataset, args.repo_id, private=args.private or None, license=args.license)
            print(f"Pushed {args.dataset} to https://huggingface.co/datasets/{args.repo_id}")
        return 0
    parser = make_parser()
    args = _parse(argv, parser)
    from thinker4d.data.pipeline import SynthesisConfig, SynthesisFailed, run_synthesis

    overrides = {
        "world_num_clips": args.world_num_clips,
        "teacher": args.teacher,
        "segmenter": args.segmenter,
        "num_proc": args.num_proc,
    }
    try:  # every bad setting, in one message, before anything is written
        if args.config:
            config = SynthesisConfig.from_yaml(args.config, **overrides)
        else:
            config = SynthesisConfig(**{k: v for k, v in overrides.items() if v is not None})
    except ValueError as e:
        parser.error(str(e))
    try:
        report = run_synthesis(
            config,
            args.output_dir,
            resume=args.resume,
            num_shards=args.num_shards,
            shard_index=args.shard_index,
            progress=not args.no_progress,
        )
    except SynthesisFailed as e:  # every candidate rejected: no dataset, and a non-zero exit
        _print_report(e.report)
        print(f"error: {e}", file=sys.stderr)
        return 1
    _print_report(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
