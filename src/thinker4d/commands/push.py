"""`thinker4d push`: publish a checkpoint or a synthesized dataset on the Hugging Face Hub.

The folder that is uploaded is staged first (weights, config, processor, remote code, `custom_generate/`, card; or
parquet shards and a dataset card); `--dry-run DIR` writes exactly that folder and uploads nothing.

Examples:

```bash
thinker4d push out/4drl --repo-id me/4dthinker-3b --eval-summary runs/4drl-dsr/summary.json \\
    --base-model Qwen/Qwen2.5-VL-3B-Instruct --datasets me/4d-cot --private
thinker4d push out/4drl --repo-id me/4dthinker-3b --dry-run preview          # inspect, upload nothing
thinker4d push data/cot --repo-type dataset --repo-id me/4d-cot --license cc-by-nc-sa-4.0
thinker4d push --config push.yaml --private                   # YAML keys are the flags, and `path`
```

Every flag takes `_` or `-` alike (`--repo_id`, `--repo-id`). The former `--dataset` switch still works, with a
deprecation warning; it is `--repo-type dataset`.

The token comes from huggingface_hub's usual sources (`HF_TOKEN` or `hf auth login`) and is never printed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .options import accept_both_spellings, add_config_option, parse_verb_args


logger = logging.getLogger("thinker4d.push")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        formatter_class=argparse.RawDescriptionHelpFormatter,
        prog="thinker4d push",
        description="Push a thinker4d checkpoint or a synthesized dataset to the Hub.",
        epilog="example: thinker4d push out/dift --repo-id me/4dthinker-3b",
    )
    add_config_option(p)
    p.add_argument(
        "path",
        nargs="?",
        help="checkpoint folder (save_pretrained output) or, with --repo-type dataset, a dataset folder",
    )
    p.add_argument("--repo-id", required=True, help="Hub repository id, e.g. me/4dthinker-3b")
    p.add_argument(
        "--repo-type",
        choices=["model", "dataset"],
        default="model",
        help="what `path` holds: a model checkpoint, or a dataset (parquet shards or save_to_disk folder)",
    )
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--revision", default=None, help="branch to push to (created when missing; default main)")
    p.add_argument("--dry-run", metavar="DIR", default=None, help="write the folder that would be uploaded, no upload")
    p.add_argument("--commit-message", default=None)
    p.add_argument(
        "--license",
        default=None,
        help="license id (default apache-2.0 for models; for datasets the license their sources record, else unknown)",
    )
    model = p.add_argument_group("model card")
    model.add_argument(
        "--eval-summary", nargs="+", default=[], metavar="JSON", help="summary JSON(s) of thinker4d eval"
    )
    model.add_argument(
        "--training-args",
        default=None,
        help="trainer config JSON/YAML (default: training_args.json, else training_args.bin, in the checkpoint)",
    )
    model.add_argument("--base-model", default=None, help="Hub id of the model the checkpoint was trained from")
    model.add_argument("--datasets", nargs="+", default=[], metavar="ID", help="Hub ids of the training datasets")
    model.add_argument(
        "--stages",
        default=None,
        help='your description of the training, e.g. "DIFT then 4DRL"; the card shows it as yours, beside the stages '
        "the checkpoint records (training_stages.json)",
    )
    model.add_argument("--no-custom-generate", action="store_true", help="leave out the custom_generate/ folder")
    data = p.add_argument_group("dataset card")
    data.add_argument("--stats", default=None, help="synthesis stats JSON (default: <path>/synthesis_stats.json)")
    data.add_argument("--pretty-name", default=None)
    return accept_both_spellings(p)


# Deprecated flags -> the current ones; they still work, with a warning, for one release.
RENAMED = {"dataset": "repo_type dataset"}


def _stage(args, folder: Path) -> None:
    from thinker4d import hub

    if args.repo_type == "dataset":
        hub.stage_dataset(
            args.path,
            folder,
            args.repo_id,
            stats=args.stats,
            license=args.license,
            pretty_name=args.pretty_name,
        )
    else:
        hub.stage_model_checkpoint(
            args.path,
            folder,
            args.repo_id,
            custom_generate=not args.no_custom_generate,
            base_model=args.base_model,
            datasets=args.datasets,
            training_args=args.training_args,
            eval_summaries=args.eval_summary,
            license=args.license or "apache-2.0",
            stages=args.stages,
        )


def _parse(argv: list[str] | None, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    return parse_verb_args(parser or make_parser(), argv, "push", RENAMED)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = _parse(argv, parser)
    if not args.path:
        parser.error("the folder to push is required (the first argument, or `path:` in --config)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from thinker4d import hub

    if not Path(args.path).is_dir():
        print(f"error: {args.path} is not a folder", file=sys.stderr)
        return 2
    repo_type = args.repo_type
    with hub.staging_dir(args.dry_run) as folder:
        _stage(args, Path(folder))
        files = sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file())
        logger.info("Staged %d files for %s %s: %s", len(files), repo_type, args.repo_id, ", ".join(files))
        if args.dry_run:
            logger.info("Dry run: nothing uploaded; the folder is %s", folder)
            return 0
        commit = hub.push_folder(
            folder,
            args.repo_id,
            repo_type=repo_type,
            private=args.private or None,
            revision=args.revision,
            commit_message=args.commit_message,
        )
    logger.info("Pushed to %s", getattr(commit, "commit_url", None) or args.repo_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
