"""`thinker4d synthesize`: run the 4D chain-of-thought data synthesis pipeline (docs/synthesis.md).

thinker4d synthesize --config examples/synthesis/offline.yaml --output out/cot [--resume]
    [--num-shards N --shard-index i] [--num-proc N]
thinker4d synthesize merge out/shard-* --output out/cot
thinker4d synthesize paper-jsonl out/cot --jsonl out/cot.jsonl
thinker4d synthesize push out/cot --repo-id me/4d-cot
"""

from __future__ import annotations

import argparse
import json
import sys


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="thinker4d synthesize",
        description="Synthesize 4D CoT rows (frames, question, CoT with <imagery>, overlays) into a parquet dataset.\n"
        "Sub-commands: `merge DIR... --output OUT`, `paper-jsonl DIR --jsonl FILE`, `push DIR --repo-id ID`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: thinker4d synthesize --config examples/synthesis/offline.yaml --output data/4d-cot",
    )
    p.add_argument("--config", help="YAML of SynthesisConfig fields (see examples/synthesis/)")
    p.add_argument("--output", "-o", required=True, help="dataset folder to write")
    p.add_argument("--resume", action="store_true", help="continue a run in --output (finished clips are kept)")
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
    return p


def _sub_parser(name: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"thinker4d synthesize {name}")
    if name == "merge":
        p.add_argument("shards", nargs="+", help="complete shard output folders")
        p.add_argument("--output", "-o", required=True)
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
    return p


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


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("merge", "paper-jsonl", "push"):
        sub, args = argv[0], _sub_parser(argv[0]).parse_args(argv[1:])
        if sub == "merge":
            from thinker4d.data.pipeline import merge_outputs

            _print_report(merge_outputs(args.shards, args.output))
        elif sub == "paper-jsonl":
            from thinker4d.data.writer import write_paper_jsonl

            print(f"Wrote {write_paper_jsonl(args.dataset, args.jsonl)} lines to {args.jsonl}")
        else:
            from thinker4d.hub import push_dataset

            push_dataset(args.dataset, args.repo_id, private=args.private or None, license=args.license)
            print(f"Pushed {args.dataset} to https://huggingface.co/datasets/{args.repo_id}")
        return 0
    parser = make_parser()
    args = parser.parse_args(argv)
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
            args.output,
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
