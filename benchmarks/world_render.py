"""Render throughput of the synthetic world (thinker4d.world): clips/s for 16-frame clips with RGB, z-depth and
instance masks, at 128x128 and 256x256, on one core. Baseline in the same run: the same renderer without
screen-space culling (every object intersected against every pixel), to show what the culling buys.

    python benchmarks/world_render.py [--clips 20]
"""

import argparse
import json
import os
import time


os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from thinker4d.world import render as render_mod  # noqa: E402
from thinker4d.world import render_spec, sample_clip_spec  # noqa: E402


def clips_per_s(size: int, n: int, seed0: int = 0) -> float:
    specs = [sample_clip_spec(seed0 + i, num_frames=16, size=size) for i in range(n)]
    render_spec(specs[0])  # warm-up
    t = time.perf_counter()
    for s in specs:
        clip = render_spec(s)
        assert clip.depth is not None and clip.instance_ids is not None
    return n / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--clips", type=int, default=20)
    args = p.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}) if hasattr(os, "sched_setaffinity") else None
    r128 = clips_per_s(128, args.clips)
    r256 = clips_per_s(256, max(4, args.clips // 3))
    culled = render_mod._screen_rect
    render_mod._screen_rect = lambda center, radius, R, o, K, width, height: (0, height, 0, width)
    try:
        base128 = clips_per_s(128, max(4, args.clips // 2))
    finally:
        render_mod._screen_rect = culled
    print(
        json.dumps(
            {
                "clips_per_s_128": round(r128, 2),
                "clips_per_s_256": round(r256, 2),
                "cores_used": 1,
                "frames_per_clip": 16,
                "outputs": ["rgb", "depth", "instance_ids"],
                "target_clips_per_s_per_core_128": 10,
                "baseline_no_culling_clips_per_s_128": round(base128, 2),
                "speedup_vs_no_culling_128": round(r128 / base128, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
