"""`thinker4d world`: render synthetic 4D-world clips with exact geometry into SpatialVID-like folders.

`--config FILE` (or `--config=FILE`) is a YAML file whose keys are these flags; flags override it. Every flag takes `_`
or `-` alike; the former `--out` still works, with a deprecation warning.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .options import accept_both_spellings, add_config_option, parse_verb_args


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        formatter_class=argparse.RawDescriptionHelpFormatter,
        prog="thinker4d world",
        description="Render N synthetic clips (mp4, poses, intrinsics, depth, masks, labels, tracks); see docs/world.md.",
        epilog="example: thinker4d world --output_dir clips --num-clips 8 --size 128 --questions",
    )
    add_config_option(p)
    p.add_argument("--output_dir", required=True, help="output folder; one sub-folder per clip (world-<seed>)")
    p.add_argument("--num-clips", type=int, default=8, help="number of clips (seeds seed .. seed+N-1)")
    p.add_argument("--seed", type=int, default=0, help="first clip seed (training seeds are < 1_000_000)")
    p.add_argument("--size", type=int, default=128, help="frame height and width in pixels (even, 16-1024)")
    p.add_argument("--num-frames", type=int, default=16)
    p.add_argument("--fps", type=float, default=8.0)
    p.add_argument("--camera-motion", default=None, help="force one class, e.g. 'Pan Right' or 'Dolly In + Tilt Up'")
    p.add_argument("--num-objects", type=int, default=None)
    p.add_argument("--questions", action="store_true", help="also write questions.json (all tasks) per clip")
    p.add_argument("--preview", action="store_true", help="also write contact_sheet.png (first 4 clips)")
    return accept_both_spellings(p)


# Deprecated flag names (and --config keys) -> the current ones; they still work, with a warning, for one release.
RENAMED = {"out": "output_dir"}


def _parse(argv: list[str] | None):
    return parse_verb_args(make_parser(), argv, "world", RENAMED)


def main(argv=None) -> int:
    args = _parse(argv)
    from tqdm.auto import tqdm

    from thinker4d.world import generate_questions, render_clip, save_clip

    if args.num_clips < 1:
        raise SystemExit(f"--num-clips must be at least 1, got {args.num_clips}.")
    out = Path(args.output_dir)
    preview = []
    for seed in tqdm(range(args.seed, args.seed + args.num_clips), desc="world"):
        clip = render_clip(
            seed,
            num_frames=args.num_frames,
            size=args.size,
            fps=args.fps,
            camera_motion=args.camera_motion,
            num_objects=args.num_objects,
        )
        folder = save_clip(clip, out / clip.clip_id)
        qs = generate_questions(clip, seed=seed) if args.questions or args.preview else None
        if args.questions:
            (folder / "questions.json").write_text(json.dumps(qs, indent=1))
        if args.preview and len(preview) < 4:
            preview.append((clip, qs))
    if preview:
        from thinker4d.world.preview import contact_sheet

        contact_sheet([c for c, _ in preview], [q for _, q in preview], out / "contact_sheet.png")
    print(f"Wrote {args.num_clips} clips to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
