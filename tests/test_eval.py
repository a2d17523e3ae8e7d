"""Answer parsing, metrics, paper re-scoring, benchmark loaders and video decoding of thinker4d.eval (no model)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from thinker4d.eval import extract_choice, extract_choice_lenient, paper_extract_choice
from thinker4d.eval.metrics import rescore_paper_results, score_records
from thinker4d.eval.tasks import VLM4D, DSRBench, DynBench, SynthDSR, load_task
from thinker4d.eval.tasks.base import parse_options
from thinker4d.video import VideoError, decode_video


OPTS = ["A. Pan Left", "B. Pan Right", "C. Tilt Up", "D. Tilt Down"]


def make_mp4(path, n_frames=16, size=32, fps=8):
    with av.open(str(path), mode="w") as c:
        s = c.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = size, size, "yuv420p"
        for i in range(n_frames):
            a = np.full((size, size, 3), 8 * i, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


# --- strict parser -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<answer>B</answer>", "B"),
        ("<answer> B. </answer>", "B"),
        ("<answer>(B)</answer>", "B"),
        ("<answer>B)</answer>", "B"),
        ("<answer>B. Pan Right</answer>", "B"),
        ("<answer>B) Pan Right</answer>", "B"),
        ("<answer>(B) Pan Right</answer>", "B"),
        ("<answer>b</answer>", "B"),
        ("<answer>Pan Right</answer>", "B"),  # the option text itself
        ("<answer>pan right.</answer>", "B"),
        ("<answer>B Pan Right</answer>", "B"),
        ("<answer>The answer is D</answer>", "D"),
        ("<ANSWER>C</ANSWER>", "C"),
        ("<think>A. is tempting</think><answer>A</answer> then <answer>C</answer>", "C"),  # last block wins
        # latent tokens and end-of-turn markers left in the decoded text
        (
            "<think>x<|latent_start|><|latent_pad|><|latent_pad|><|latent_end|></think><answer>D</answer><|im_end|>",
            "D",
        ),
        ("<answer><|latent_pad|>C<|latent_end|></answer>", "C"),
        ("<answer>B</answer><|im_end|><|endoftext|><|endoftext|>", "B"),
    ],
)
def test_extract_choice_accepts(text, expected):
    assert extract_choice(text, options=OPTS) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        None,
        "B",  # no answer tags
        "The answer is B.",  # outside the tags
        "<answer></answer>",
        "<answer>   </answer>",
        "<answer>Based on the video</answer>",  # capital only inside a word
        "<answer>Clearly the camera moves</answer>",
        "<answer>A or B</answer>",  # two letters
        "<answer>A. B.</answer>",
        "<answer>A car turns, so B</answer>",
        "<answer>B. Pan Left</answer>",  # the letter and the text disagree
        "<answer>a car</answer>",  # lowercase article, not a choice
        "<answer>the answer is a pan</answer>",
        "<answer>E</answer>",  # not an option letter
        "<answer>B",  # unclosed (truncated completion)
        "<|latent_start|><|latent_pad|><|latent_end|>",
    ],
)
def test_extract_choice_rejects(text):
    assert extract_choice(text, options=OPTS) is None


def test_extract_choice_letters_and_options():
    assert extract_choice("<answer>E</answer>", letters="ABCDE") == "E"
    assert extract_choice("<answer>Tilt Up</answer>") is None  # option text needs the options
    assert extract_choice("<answer>Tilt Up</answer>", options=["Pan Left", "Pan Right", "Tilt Up"]) == "C"


def test_lenient_reads_outside_tags_but_not_inside_words():
    assert extract_choice_lenient("<think>turning</think> The answer is C.", options=OPTS) == "C"
    assert extract_choice_lenient("<think>hmm</think>\nB. Pan Right", options=OPTS) == "B"
    assert extract_choice_lenient("<answer>D", options=OPTS) == "D"  # truncated block
    assert extract_choice_lenient("Pan Right", options=OPTS) == "B"
    assert extract_choice_lenient("<answer>B</answer>") == "B"
    assert extract_choice_lenient("Based on everything I saw") is None
    assert extract_choice_lenient("A or B") is None
    assert extract_choice_lenient("") is None


def test_importing_eval_is_light():
    # `thinker4d.eval` adds no heavy import of its own (the parsers are stdlib-only: rewards import them) ...
    code = (
        "import sys, thinker4d; before = set(sys.modules); import thinker4d.eval as e; "
        "e.extract_choice('<answer>A</answer>'); new = set(sys.modules) - before; "
        "print(sorted(m for m in new if m.split('.')[0] in "
        "('torch', 'transformers', 'datasets', 'pandas', 'av', 'matplotlib', 'evaluate', 'accelerate')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    # ... and parsing.py runs on its own, without the package.
    from thinker4d import answers

    code = (
        "import importlib.util, sys; spec = importlib.util.spec_from_file_location('p', sys.argv[1]); "
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
        "print(m.extract_choice('<answer>C</answer>'), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code, answers.__file__], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "C False"


# --- the paper's loose rule ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("<answer>B</answer>", "B"),
        ("<answer>Based on the video, C</answer>", "B"),  # first capital A-D anywhere: the known flaw
        ("no tags at all, the answer is C", "C"),
        ("Best answer: D", "D"),  # "Best answer:" is stripped before the search
        ("<|im_start|>assistant\n<answer>A</answer><|im_end|>junk B", "A"),
        ("one two three four five six seven eight nine ten eleven", ""),
        ("", ""),
        ("<|latent_start|><|latent_end|>", ""),
    ],
)
def test_paper_extract_choice(raw, expected):
    assert paper_extract_choice(raw) == expected


def test_rescore_paper_results_matches_hand_computation(tmp_path):
    rows = [
        {"raw": "<answer>B</answer>", "gt": "B", "subtask_type": "abs_dis"},
        {"raw": "<answer>Based on the motion, C</answer>", "gt": "B", "subtask_type": "abs_dis"},
        {"raw": "<answer>C</answer>", "gt": "A", "subtask_type": "rel_dir"},
        {"raw": "I think the answer is D", "gt": "D", "subtask_type": "rel_dir"},
        {"raw": "<answer>A</answer>", "gt": "A", "subtask_type": "NON_TEMP"},
    ]
    path = tmp_path / "paper.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = rescore_paper_results(path)
    # paper: hits 1,1,0,1,1 -> Abs Dis 2/2, Rel Dir 1/2, Non-Temp 1/1
    assert out["eval_count"] == 5 and out["correct"] == 4
    assert out["accuracy"] == pytest.approx(80.0)
    assert out["subtask_accuracy"] == {"Abs Dis": 100.0, "Rel Dir": 50.0, "Non-Temp Based": 100.0}
    assert out["subtask_macro_avg"] == pytest.approx((100 + 50 + 100) / 3)
    assert out["subtask_total"] == {"Abs Dis": 2, "Rel Dir": 2, "Non-Temp Based": 1}
    # strict: hits 1,0,0,0,1 -> Abs Dis 1/2, Rel Dir 0/2, Non-Temp 1/1
    assert out["strict"]["correct"] == 2
    assert out["strict"]["subtask_macro_avg"] == pytest.approx((50 + 0 + 100) / 3)


def test_rescore_paper_results_rejects_other_layouts(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"raw": "x", "gt": "A"}) + "\n")
    with pytest.raises(ValueError, match=r"lacks \['subtask_type'\]"):
        rescore_paper_results(path)


# --- summary numbers -----------------------------------------------------------------------------------------------


def test_score_records_counts_errors_wrong_and_by_reason():
    recs = [
        {"index": 0, "task": "a", "pred": "A", "hit": 1, "hit_lenient": 1, "error": None},
        {"index": 1, "task": "a", "pred": None, "hit": 0, "hit_lenient": 1, "error": None},
        {"index": 2, "task": "b", "pred": None, "hit": 0, "error": "missing_video: v.mp4 does not exist."},
        {"index": 3, "task": "b", "pred": None, "hit": 0, "error": "missing_video: w.mp4 does not exist."},
        {"index": 4, "task": "c", "pred": "C", "hit": 1, "hit_lenient": 1, "error": None},
        {"index": 5, "task": "c", "pred": None, "hit": 0, "error": "bad_row: row 5: answer 'Z' ..."},
    ]
    s = score_records(recs, {"c": "Cee", "a": "Ay", "b": "Bee"})
    assert (s["total"], s["evaluated"], s["errors"], s["correct"], s["unparsed"]) == (6, 3, 3, 2, 1)
    assert s["error_counts"] == {"bad_row": 1, "missing_video": 2}
    assert s["accuracy"] == pytest.approx(2 / 6)
    assert list(s["subtask_accuracy"]) == ["c", "a", "b"]  # the task's order
    assert s["subtask_accuracy"] == {"c": 0.5, "a": 0.5, "b": 0.0}
    assert s["macro_accuracy"] == pytest.approx(1 / 3)
    assert s["subtask_names"]["c"] == "Cee"
    assert s["lenient"]["accuracy"] == pytest.approx(3 / 6) and "lenient" in s["lenient"]["label"]
    assert s["accuracy_stderr"] == pytest.approx(math.sqrt((1 / 3) * (2 / 3) / 6))


def test_score_records_samples_mean_and_stderr():
    hits = {0: [1, 1, 0], 1: [0, 1, 1]}  # sample -> hits of questions 0..2
    recs = [
        {"index": q, "sample": s, "task": "t", "hit": h, "pred": "A", "error": None}
        for s, hs in hits.items()
        for q, h in enumerate(hs)
    ]
    s = score_records(recs)
    assert s["total"] == 3 and s["num_samples"] == 2 and s["records"] == 6
    assert s["sample_accuracy"] == pytest.approx([2 / 3, 2 / 3])
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["accuracy_stderr"] == pytest.approx(0.0)
    recs[0]["hit"] = 0  # sample 0 -> 1/3
    s = score_records(recs)
    assert s["accuracy_stderr"] == pytest.approx(np.std([1 / 3, 2 / 3], ddof=1) / math.sqrt(2))


def test_evaluate_metric_module_matches_score_records():
    evaluate = pytest.importorskip("evaluate")
    from thinker4d.eval import metric_path

    metric = evaluate.load(metric_path())
    preds = [
        "<answer>B</answer>",
        "<answer>Based</answer>",
        "x",
        "<think/>The answer is A",
        "<answer>Tilt Up</answer>",
    ]
    refs = ["B", "B", "A", "A", "C"]
    out = metric.compute(
        predictions=preds,
        references=refs,
        subtasks=["a", "a", "b", "b", "b"],
        options=[OPTS] * 5,
        errors=[None, None, "missing_video: x", None, None],
    )
    assert out["accuracy"] == pytest.approx(2 / 5)
    assert out["subtask_accuracy"] == pytest.approx({"a": 0.5, "b": 1 / 3})
    assert out["macro_accuracy"] == pytest.approx((0.5 + 1 / 3) / 2)
    assert out["lenient_accuracy"] == pytest.approx(3 / 5)
    assert out["error_counts"] == {"missing_video": 1}
    with pytest.raises(ValueError, match="`subtasks` has 1 entries but there are 5 predictions"):
        metric.compute(predictions=preds, references=refs, subtasks=["a"])


_METRIC_LOADS = """
import doctest, json, sys
from pathlib import Path

import evaluate

import thinker4d.eval

folder = Path(thinker4d.eval.__file__).parent / "thinker4d_mcq"
out = {}
for key, path in (("folder", folder), ("script", folder / "thinker4d_mcq.py"), ("metric_path", thinker4d.eval.metric_path())):
    mcq = evaluate.load(str(path))
    out[key] = mcq.compute(predictions=["<answer>B</answer>", "<answer>Based</answer>"], references=["B", "B"])
card = doctest.testfile(str(folder / "README.md"), module_relative=False, globs={"mcq": mcq})
out["card"] = [card.attempted, card.failed]
print(json.dumps(out))
"""


def test_evaluate_metric_loads_from_its_folder_and_its_script_offline(tmp_path):
    """evaluate's layout: `evaluate.load(<folder>)` finds `<folder>/<folder name>.py`; the script path loads too. Offline
    (the Hub is never asked), and the examples of the README.md metric card run as written."""
    pytest.importorskip("evaluate")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _METRIC_LOADS], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("folder", "script", "metric_path"):
        assert out[key]["accuracy"] == pytest.approx(0.5), key
    attempted, failed = out["card"]
    assert attempted >= 2 and failed == 0, proc.stdout


def test_evaluate_metric_card_and_package_data():
    """The metric folder ships (pyproject package-data covers its files) with an evaluate metric card."""
    import fnmatch

    import yaml

    import thinker4d.eval

    tomllib = pytest.importorskip("tomllib")

    package = Path(thinker4d.__file__).parent
    folder = Path(thinker4d.eval.metric_path())
    assert folder.name == "thinker4d_mcq" and (folder / "thinker4d_mcq.py").is_file()
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["thinker4d"]
    for name in ("thinker4d_mcq.py", "README.md"):
        rel = (folder / name).relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(rel, g) for g in globs), f"{rel} is not in package-data {globs}"
    card = (folder / "README.md").read_text()
    _, header, body = card.split("---\n", 2)
    meta = yaml.safe_load(header)
    assert {"evaluate", "metric"} <= set(meta["tags"]) and meta["title"] and meta["description"]
    for section in ("## Metric Description", "### Inputs", "### Output Values", "### Examples", "## Citation"):
        assert section in body, section


# --- loaders -------------------------------------------------------------------------------------------------------


def test_parse_options_never_evaluates_code(tmp_path):
    assert parse_options('["A. x", "B. y"]', "r") == ["A. x", "B. y"]
    assert parse_options("['A. x', 'B. y']", "r") == ["A. x", "B. y"]
    assert parse_options({"A": "x", "B": "y"}, "r") == ["x", "y"]
    assert parse_options(np.array(["x", "y"], dtype=object), "r") == ["x", "y"]
    marker = tmp_path / "pwned"
    with pytest.raises(ValueError, match="neither JSON nor a Python literal"):
        parse_options(f"__import__('pathlib').Path({str(marker)!r}).touch()", "row 3")
    assert not marker.exists()
    with pytest.raises(ValueError, match="row 4: options must be a list of strings"):
        parse_options("42", "row 4")
    with pytest.raises(ValueError, match="lettered 'C' but should be 'B'"):
        parse_options(["A. x", "C. y"], "r")


def test_dsr_bench_loader_layout_and_bad_rows(tmp_path):
    (tmp_path / "videos").mkdir()
    rows = [
        {"videoID": "v0", "question": "Q0?", "options": OPTS, "answer": "B", "type": "ABS_DIS"},
        {"videoID": "v1", "question": "Q1?", "options": OPTS, "answer": "c", "type": "rel_dir"},
        {"videoID": "v2", "question": "", "options": OPTS, "answer": "A", "type": "non_temp"},
        {"videoID": "v3", "question": "Q3?", "options": ["A. x", "C. y"], "answer": "A", "type": "abs_ori"},
        {"videoID": "v4", "question": "Q4?", "options": OPTS, "answer": "Based", "type": "abs_spd"},
        {"videoID": None, "question": "Q5?", "options": OPTS, "answer": "D", "type": "abs_spd"},
        {"videoID": "v6", "question": "Q6?", "options": ["A. only"], "answer": "A", "type": "abs_spd"},
    ]
    pd.DataFrame(rows).to_parquet(tmp_path / "benchmark.parquet")
    ex = load_task("DSR-Bench").load(tmp_path)
    assert [e.index for e in ex] == list(range(7))
    assert ex[0].task == "abs_dis" and ex[0].answer == "B" and ex[0].video == str(tmp_path / "videos" / "v0.mp4")
    assert ex[1].answer == "C" and ex[1].options == OPTS
    assert ex[2].error.startswith("bad_row:") and "`question` is empty" in ex[2].error
    assert "lettered 'C' but should be 'B'" in ex[3].error
    assert "answer 'Based' is not one of the option letters" in ex[4].error
    assert "`videoID` is empty" in ex[5].error
    assert ex[6].error.startswith("bad_row: benchmark.parquet row 6: Expected 2-8 options, got 1")
    assert "Fix the row's options" in ex[6].error and "lettered 'C'" in ex[3].error and "row 3:" in ex[3].error
    assert all(e.error is None for e in ex[:2])
    assert len(DSRBench().load(tmp_path / "benchmark.parquet", limit=2, video_root="/v")) == 2
    assert DSRBench().load(tmp_path, video_root="/v")[0].video == "/v/v0.mp4"


def test_dsr_bench_accepts_vlmevalkit_columns(tmp_path):
    rows = [
        {"video": "v0", "question": "Q?", "candidates": str(OPTS), "answer": "A", "task_type": "rel_spd"},
        {"video": "v1", "question": "Q?", "candidates": json.dumps(OPTS), "answer": "b", "task_type": "rel_spd"},
        {"video": "v2", "question": "Q?", "candidates": "os.system('x')", "answer": "A", "task_type": "rel_spd"},
    ]
    pd.DataFrame(rows).to_parquet(tmp_path / "b.parquet")
    ex = DSRBench().load(tmp_path / "b.parquet")
    assert ex[0].error is None and ex[0].task == "rel_spd" and ex[0].video.endswith("videos/v0.mp4")
    assert ex[1].options == OPTS and ex[1].answer == "B"
    assert "bad_row: b.parquet row 2: options string is neither JSON nor a Python literal" in ex[2].error


def test_dsr_bench_missing_file_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="benchmark.parquet not found"):
        DSRBench().load(tmp_path)
    with pytest.raises(ValueError, match="Unknown benchmark 'mmlu'"):
        load_task("mmlu")


def _synthdsr_rows(n=3):
    from PIL import Image

    return {
        "id": [f"world-{i}/camera_motion/0" for i in range(n)],
        "clip_id": [f"world-{i}" for i in range(n)],
        "frames": [[Image.fromarray(np.full((16, 16, 3), 10 * j, np.uint8)) for j in range(3)] for _ in range(n)],
        "fps": [8.0] * n,
        "task": ["camera_motion", "object_speed", "camera_motion"][:n],
        "question": ["How does the camera move?"] * n,
        "options": [OPTS] * n,
        "answer": ["B", "Q", "D"][:n],
        "label_source": ["geometry"] * n,
        "meta": ["{}"] * n,
    }


@pytest.mark.parametrize("layout", ["parquet", "save_to_disk"])
def test_synthdsr_loader(tmp_path, layout):
    import datasets

    ds = datasets.Dataset.from_dict(_synthdsr_rows())
    if layout == "parquet":  # what thinker4d.world.build_synthdsr writes
        (tmp_path / "data").mkdir()
        ds.to_parquet(tmp_path / "data" / "test-00000-of-00001.parquet")
    else:
        ds.save_to_disk(tmp_path)
    ex = SynthDSR().load(tmp_path)
    assert [e.task for e in ex] == ["camera_motion", "object_speed", "camera_motion"]
    assert ex[0].answer == "B" and ex[0].error is None
    assert "answer 'Q' is not one of the option letters" in ex[1].error
    frames, fps = ex[2].frames()
    assert frames.shape == (3, 16, 16, 3) and frames.dtype == np.uint8 and fps == 8.0
    assert frames[1, 0, 0, 0] == 10
    if layout == "parquet":
        # one parquet file works too (loaded as the only split, "train"); a folder's splits are named in the error
        assert len(SynthDSR().load(next((tmp_path / "data").glob("*.parquet")), split="train")) == 3
        with pytest.raises(ValueError, match=r"has no split 'dev'; available: \['test'\]. Pass one of them"):
            SynthDSR().load(tmp_path, split="dev")
    with pytest.raises(FileNotFoundError, match="not found: pass a local folder, a parquet file or a Hub dataset id"):
        SynthDSR().load(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="Dataset ~/no-such-synthdsr not found"):  # not taken for a Hub id
        SynthDSR().load("~/no-such-synthdsr")


def test_dyn_bench_loader(tmp_path):
    from PIL import Image

    (tmp_path / "multi_json" / "davis").mkdir(parents=True)
    scene = tmp_path / "frames" / "davis" / "bear"
    scene.mkdir(parents=True)
    for j in range(3):
        Image.fromarray(np.full((8, 8, 3), j, np.uint8)).save(scene / f"frame_{j:04d}.png")
    qa = [{"question": "Which moves?", "options": ["A. bear", "B. rock"], "answer": "a"}]
    (tmp_path / "multi_json" / "davis" / "bear_cameraqa.json").write_text(json.dumps(qa))
    (tmp_path / "multi_json" / "davis" / "bear_qa.json").write_text(json.dumps(qa + [{"question": "x"}]))
    (tmp_path / "multi_json" / "davis" / "bear_objmask.json").write_text("{}")
    (tmp_path / "multi_json" / "davis" / "gone_sceneqa.json").write_text(json.dumps(qa))
    ex = DynBench().load(tmp_path)
    assert [e.task for e in ex] == ["camera_object", "inter_object", "inter_object", "object_scene"]
    assert ex[0].answer == "A" and ex[0].frames()[0].shape == (3, 8, 8, 3)
    assert ex[0].id == "davis/bear/cameraqa/0"
    assert ex[2].error.startswith("bad_row:") and "options must be a list of strings" in ex[2].error
    with pytest.raises(VideoError, match="missing_video: no frame"):
        ex[3].frames()


def test_vlm4d_loader(tmp_path):
    (tmp_path / "QA").mkdir()
    url = "https://huggingface.co/datasets/shijiezhou/VLM4D/resolve/main/videos_real/davis/a.mp4"
    items = [
        {"id": "r0", "video": url, "question": "Where?", "choices": {"A": "left", "B": "right"}, "answer": "right"},
        {"id": "r1", "video": url, "question": "Where?", "choices": {"A": "left", "B": "right"}, "answer": "up"},
    ]
    (tmp_path / "QA" / "real_mc.json").write_text(json.dumps(items))
    ex = VLM4D().load(tmp_path)
    assert ex[0].answer == "B" and ex[0].options == ["left", "right"] and ex[0].task == "real"
    assert ex[0].video == str(tmp_path / "videos_real" / "davis" / "a.mp4")
    assert "matches 0 choices" in ex[1].error


# --- video decoding ------------------------------------------------------------------------------------------------


def test_decode_video_fps_cap_and_cache(tmp_path):
    path = tmp_path / "v.mp4"
    make_mp4(path, n_frames=16, fps=8)  # 2 s
    cache = tmp_path / "cache"
    frames, fps, times = decode_video(path, fps=2.0, max_frames=50, cache_dir=cache)
    assert frames.shape == (4, 32, 32, 3) and frames.dtype == np.uint8
    assert times == pytest.approx([0.0, 0.5, 1.0, 1.5]) and fps == pytest.approx(2.0)
    assert len(list(cache.glob("*.npz"))) == 1
    again, fps2, _ = decode_video(path, fps=2.0, max_frames=50, cache_dir=cache)
    assert np.array_equal(again, frames) and fps2 == fps
    capped, fps3, t3 = decode_video(path, fps=0, max_frames=4, cache_dir=cache)  # every frame, then cap
    assert len(capped) == 4 and t3 == pytest.approx([0, 5 / 8, 10 / 8, 15 / 8]) and fps3 == pytest.approx(1.6)
    assert len(list(cache.glob("*.npz"))) == 2
    small, _, _ = decode_video(path, fps=2.0, max_pixels=16 * 16, cache_dir=False)
    assert small.shape[1:3] == (16, 16)


def test_decode_video_errors(tmp_path):
    with pytest.raises(VideoError, match="missing_video: .*nope.mp4 does not exist") as e:
        decode_video(tmp_path / "nope.mp4", cache_dir=False)
    assert e.value.reason == "missing_video"
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00not a video" * 10)
    with pytest.raises(VideoError, match="unreadable_video") as e:
        decode_video(bad, cache_dir=False)
    assert e.value.reason == "unreadable_video"


# --- report --------------------------------------------------------------------------------------------------------


def test_table_and_plot(tmp_path):
    from thinker4d.eval.report import format_table, load_summary, plot_subtask_accuracy

    base = {"subtask_names": {"abs_dis": "Abs Dis", "rel_dir": "Rel Dir"}, "total": 4, "errors": 1}
    a = {**base, "subtask_accuracy": {"abs_dis": 0.5, "rel_dir": 0.25}, "macro_accuracy": 0.375, "accuracy": 0.4}
    b = {**base, "subtask_accuracy": {"abs_dis": 1.0}, "macro_accuracy": 1.0, "accuracy": 0.5}
    (tmp_path / "runb").mkdir()
    (tmp_path / "runb" / "summary.json").write_text(json.dumps(b))
    table = format_table([("dift", a), tmp_path / "runb"])
    lines = table.splitlines()
    assert "dift" in lines[0] and "runb" in lines[0]
    assert lines[2].startswith("Abs Dis") and "50.00" in lines[2] and "100.00" in lines[2]
    assert lines[3].startswith("Rel Dir") and lines[3].rstrip().endswith("-")
    png = plot_subtask_accuracy([("dift", a), ("4drl", b), tmp_path / "runb"], tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(FileNotFoundError, match="summary.json only when it is complete"):
        load_summary(tmp_path / "nothing")


def test_compare_names_columns_by_the_recorded_model(tmp_path, capsys):
    """Every quickstart run folder is called `run`; the columns take the model recorded in each summary instead (a Hub
    id whole, a local checkpoint by its folder name), the folder name when none is recorded, and the folder too when
    two runs share a model."""
    from thinker4d.commands.eval import main
    from thinker4d.eval.report import format_table

    summary = {"subtask_accuracy": {"a": 0.5}, "macro_accuracy": 0.5, "accuracy": 0.5, "total": 2, "errors": 0}
    models = {
        "eval_dift/run": "dift",
        "eval_raw_qa/run": "raw_qa",
        "hub": "Qwen/Qwen2.5-VL-3B-Instruct",
        "local": str(tmp_path / "out" / "checkpoint-500"),
        "old": None,
        "again_1": "m/x",
        "again_2": "m/x",
    }
    for folder, model in models.items():
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "summary.json").write_text(json.dumps({**summary, "model": model}))
    assert main(["--compare", *(str(tmp_path / f) for f in models)]) == 0
    header = [c.strip() for c in capsys.readouterr().out.splitlines()[0].split("|")[1:]]
    assert header == [
        "dift",
        "raw_qa",
        "Qwen/Qwen2.5-VL-3B-Instruct",
        "checkpoint-500",
        "old",
        "m/x (again_1)",
        "m/x (again_2)",
    ]
    assert "run" not in format_table([tmp_path / "eval_dift/run"]).splitlines()[0]
