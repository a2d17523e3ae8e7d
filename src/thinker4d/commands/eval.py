"""`thinker4d eval`: evaluate a checkpoint on a benchmark, or compare / re-score finished runs.

Examples:

```bash
thinker4d eval --model_name_or_path out/4drl --benchmark dsr_bench \\
    --dataset_name DSR_Suite-Data/benchmark.parquet --video-root raw_data/DSR-data/bmk_video --output_dir runs/4drl-dsr
accelerate launch -m thinker4d.commands.eval --model_name_or_path out/4drl --benchmark dsr_bench ... --output_dir ...
thinker4d eval --compare runs/dift-dsr runs/4drl-dsr --plot runs/compare.png
# controls: text alone, imagery replaced by zeros or by the calibration mean
thinker4d eval --model_name_or_path out/dift ... --output_dir runs/dift-blind --blind
thinker4d eval --model_name_or_path out/dift ... --output_dir runs/dift-zero --latent-intervention zero
thinker4d eval --model_name_or_path out/dift ... --output_dir runs/dift-mean --latent-intervention mean \\
    --latent-mean runs/dift
thinker4d eval --compare runs/dift runs/dift-blind runs/dift-zero runs/dift-mean  # + differences to the first, 95% CI
thinker4d eval --rescore-paper dsr_eval_20260428_115155.jsonl
thinker4d eval --config eval_dsr.yaml --model_name_or_path out/dift  # YAML keys: the flags (video_root or video-root)
```

`--config FILE` (or `--config=FILE`) supplies defaults that flags on the command line override. Every flag takes `_`
or `-` alike (`--video_root`, `--video-root`). The former `--model`, `--data`, `--output` and `--split` still work,
with a deprecation warning.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .options import accept_both_spellings, add_config_option, parse_verb_args


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="thinker4d eval",
        description="Evaluate a model on DSR-Bench, SynthDSR, Dyn-Bench or VLM4D; compare or re-score result files.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: thinker4d eval --model_name_or_path out/dift --benchmark synthdsr --dataset_name synthdsr "
        "--output_dir results/dift",
    )
    add_config_option(p)
    p.add_argument("--model_name_or_path", help="checkpoint folder or Hub id (thinker4d or stock transformers VLM)")
    p.add_argument("--benchmark", help="dsr_bench, synthdsr, dyn_bench or vlm4d")
    p.add_argument("--dataset_name", help="local benchmark path or Hub dataset id")
    p.add_argument("--output_dir", help="results folder (rerun the same command to resume)")
    p.add_argument("--video-root", default=None, help="DSR-Bench videos folder (default: <data folder>/videos)")
    p.add_argument("--dataset_test_split", default="test", help="dataset split for SynthDSR (default: test)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-samples", type=int, default=1, help="samples per question; > 1 turns on sampling")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--do-sample", action="store_true", help="sample even with one sample per question")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--max-new-tokens", type=int, default=2048)
    p.add_argument("--fps", type=float, default=1.0, help="video frames per second (0 = every frame)")
    p.add_argument("--max-frames", type=int, default=50, help="frame cap per video")
    p.add_argument("--max-pixels", type=int, default=200704, help="decode-time pixel cap per frame (0 = none)")
    p.add_argument("--cache-dir", default=None, help="frame cache (default ~/.cache/thinker4d/frames)")
    p.add_argument("--limit", type=int, default=None, help="only the first N questions")
    p.add_argument("--retry-errors", action="store_true", help="on resume, redo rows that hit a generation error")
    p.add_argument("--dtype", default="auto", help="model dtype (auto, bfloat16, float32, ...)")
    p.add_argument(
        "--blind",
        action="store_true",
        help="control: replace every frame with a constant mid-grey frame (same count, size and prompt)",
    )
    p.add_argument(
        "--latent-intervention",
        default="none",
        choices=["none", "zero", "gaussian", "shuffle", "mean"],
        help="control for thinker4d models: replace every fed-back imagery vector with the zero vector, Gaussian noise "
        "of the same norm, another question's vector in the batch (same block and slot; needs --batch-size > 1), or "
        "the calibration mean (--latent-mean)",
    )
    p.add_argument(
        "--latent-mean",
        metavar="RUN_OR_FILE",
        help="for --latent-intervention mean: a finished run of the same model without intervention (its "
        "latent_mean.pt: the mean fed-back vector per slot over that run's questions) or a torch tensor file",
    )
    p.add_argument(
        "--compare",
        nargs="+",
        metavar="RUN",
        help="print a table of finished runs (folders or summaries), a column per recorded model; when control runs "
        "(--blind, --latent-intervention) are among the folders, also their accuracy and difference to the first "
        "run, with paired-bootstrap 95%% intervals",
    )
    p.add_argument("--plot", metavar="PNG", help="with --compare or after a run: per-subtask accuracy bar chart")
    p.add_argument(
        "--rescore-paper", metavar="JSONL", help="re-score a paper-layout results file (raw, gt, subtask_type)"
    )
    return accept_both_spellings(p)


# Deprecated flag names (and --config keys) -> the current ones; they still work, with a warning, for one release.
RENAMED = {
    "model": "model_name_or_path",
    "data": "dataset_name",
    "output": "output_dir",
    "split": "dataset_test_split",
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    return parse_verb_args(make_parser(), argv, "eval", RENAMED)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from thinker4d.eval import report

    from .options import check_model, input_errors

    if args.rescore_paper:
        from thinker4d.eval.metrics import rescore_paper_results

        with input_errors():
            print(json.dumps(rescore_paper_results(args.rescore_paper), indent=2))
        return 0
    if args.compare:
        with input_errors():
            report.print_table(args.compare, lenient=True)
            if report.has_controls(args.compare):
                print()
                print(report.format_controls(args.compare))
            if args.plot:
                print(f"plot: {report.plot_subtask_accuracy(args.compare, args.plot)}")
        return 0
    missing = [
        f"--{k}" for k in ("model_name_or_path", "benchmark", "dataset_name", "output_dir") if not getattr(args, k)
    ]
    if missing:
        make_parser().error(f"missing {', '.join(missing)} (or use --compare / --rescore_paper)")
    check_model(args.model_name_or_path)

    from thinker4d.eval import load_task
    from thinker4d.eval.runner import EvalConfig, run_evaluation

    from .options import require_path

    if args.video_root is not None:
        require_path(args.video_root, "--video_root", "folder of videos")
    with input_errors(ValueError):
        load_task(args.benchmark)
        config = EvalConfig(
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            num_samples=args.num_samples,
            seed=args.seed,
            do_sample=True if args.do_sample else None,
            temperature=args.temperature,
            top_p=args.top_p,
            fps=args.fps,
            max_frames=args.max_frames,
            max_pixels=args.max_pixels,
            cache_dir=args.cache_dir,
            limit=args.limit,
            retry_errors=args.retry_errors,
            blind=args.blind,
            latent_intervention=args.latent_intervention,
            latent_mean=args.latent_mean,
        )
    with input_errors(FileNotFoundError):  # the benchmark data the user named
        summary = run_evaluation(
            args.model_name_or_path,
            args.benchmark,
            args.dataset_name,
            args.output_dir,
            config,
            video_root=args.video_root,
            split=args.dataset_test_split,
            dtype=args.dtype,
        )
    if summary is None:  # not the main process
        return 0
    report.print_table([(args.model_name_or_path, summary)], lenient=True)
    if summary.get("error_counts"):
        print(f"errors (counted wrong): {summary['error_counts']}")
    if args.plot:
        print(f"plot: {report.plot_subtask_accuracy([(args.model_name_or_path, summary)], args.plot)}")
    return 0


if __name__ == "__main__":
    from thinker4d.cli import main as cli_main

    sys.exit(cli_main(["eval", *sys.argv[1:]]))
