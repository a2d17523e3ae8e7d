"""Fixtures of the lmms-eval tests, run in the lmms-eval environment (`.ci/lmms.sh`; lmms-eval pins av<16).

A tiny thinker4d checkpoint and one small local set per benchmark, each in the layout its `thinker4d eval` loader
reads: SynthDSR (rendered by `thinker4d.world`), DSR-Bench (parquet + mp4s, with a missing video and a broken row),
Dyn-Bench (QA JSON + frame folders, a broken row, a scene without frames) and VLM4D (QA JSON + mp4s, one
missing).
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest


# Nothing is fetched: every checkpoint and data set is local.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_eval import make_mp4  # noqa: E402  (the main suite's tiny mp4 writer)


OPTS = ["A. (1) Become larger.", "B. (1) Become smaller.", "C. (1) Keep constant.", "D. (1) Cannot tell."]


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    import thinker4d
    from thinker4d.tiny import build_tiny_model, build_tiny_processor

    out = tmp_path_factory.mktemp("checkpoint")
    processor = build_tiny_processor("qwen2_5_vl")
    model, processor = thinker4d.from_base(build_tiny_model("qwen2_5_vl", processor), processor, latent_size=2)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _synthdsr(root):
    from thinker4d.world import build_synthdsr

    build_synthdsr(root, num_questions=6, num_frames=6, size=32, fps=4.0, progress=False)


def _dsr_bench(root):
    import pandas as pd

    (root / "videos").mkdir(parents=True)
    for v in ("v0", "v1", "v2"):
        make_mp4(root / "videos" / f"{v}.mp4")
    rows = [("v0", "abs_dis", "A"), ("v1", "rel_dir", "B"), ("gone", "rel_dir", "C"), ("v2", "abs_spd", "Based")]
    pd.DataFrame(
        [
            {"videoID": v, "question": f"Question {i}: how does the distance change?", "options": OPTS, "answer": a,
             "type": t}
            for i, (v, t, a) in enumerate(rows)
        ]
    ).to_parquet(root / "benchmark.parquet")  # fmt: skip


def _dyn_bench(root):
    from PIL import Image

    (root / "multi_json" / "davis").mkdir(parents=True)
    for scene in ("bear", "dog"):
        folder = root / "frames" / "davis" / scene
        folder.mkdir(parents=True)
        for j in range(4):
            Image.fromarray(np.full((32, 32, 3), 20 * j + len(scene), np.uint8)).save(folder / f"frame_{j:04d}.png")
    qa = [{"question": "Which one moves?", "options": ["A. bear", "B. rock"], "answer": "a"}]
    (root / "multi_json" / "davis" / "bear_cameraqa.json").write_text(json.dumps(qa))
    (root / "multi_json" / "davis" / "dog_qa.json").write_text(json.dumps(qa + [{"question": "no options"}]))
    (root / "multi_json" / "davis" / "gone_sceneqa.json").write_text(json.dumps(qa))  # no frames: missing_video


def _vlm4d(root):
    (root / "QA").mkdir(parents=True)
    (root / "videos_real").mkdir()
    make_mp4(root / "videos_real" / "a.mp4")
    url = "https://huggingface.co/datasets/shijiezhou/VLM4D/resolve/main/videos_real/a.mp4"
    choices = {"A": "left", "B": "right", "C": "up", "D": "down"}
    items = [
        {"id": "r0", "video": url, "question": "Where does it go?", "choices": choices, "answer": "right"},
        {"id": "r1", "video": url, "question": "Where does it turn?", "choices": choices, "answer": "up"},
        {
            "id": "r2",
            "video": url.replace("a.mp4", "gone.mp4"),
            "question": "Where?",
            "choices": choices,
            "answer": "up",
        },
    ]
    (root / "QA" / "real_mc.json").write_text(json.dumps(items))


BUILDERS = {"synthdsr": _synthdsr, "dsr_bench": _dsr_bench, "dyn_bench": _dyn_bench, "vlm4d": _vlm4d}


@pytest.fixture(scope="session")
def benchmark_data(tmp_path_factory):
    """`{benchmark: local folder}`, each built on first use."""
    made = {}

    def get(name):
        if name not in made:
            root = tmp_path_factory.mktemp(name)
            BUILDERS[name](root)
            made[name] = root
        return made[name]

    return get
