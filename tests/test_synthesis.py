"""Tests of the 4D CoT synthesis pipeline (thinker4d.data: ingest, teacher, segmentation, overlays, questions, cot,
validate, writer, pipeline, thinker4d.testing's fake Gemini server; the `thinker4d synthesize` verb)."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from thinker4d.data import writer
from thinker4d.data.ingest import Source, read_video_frames, sample_indices, subsample_clip
from thinker4d.data.overlays import contour, overlay, select_key_frames
from thinker4d.data.pipeline import SynthesisConfig, merge_outputs, run_synthesis
from thinker4d.data.segmentation import check_track
from thinker4d.data.validate import validate_cot
from thinker4d.testing import FAKE_LANDMARKS, FakeGeminiServer, default_responder


SMALL = dict(world_num_frames=8, world_size=64, batch_size=3)


def _rows(out):
    import pyarrow.parquet as pq

    rows = []
    for p in sorted((Path(out) / "data").glob("train-*.parquet")):
        rows.extend(pq.read_table(p).to_pylist())
    return rows


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn") / "cot"
    cfg = SynthesisConfig(world_num_clips=8, **SMALL)
    return cfg, out, run_synthesis(cfg, out, progress=False)


# ------------------------------------------------------------------------------------------------ end to end


def test_offline_end_to_end_schema_and_load_dataset(offline_run):
    import datasets

    cfg, out, report = offline_run
    assert writer.is_complete(out) and report["complete"]
    ds = datasets.load_dataset(str(out), split="train", cache_dir=str(out.parent / "hf_cache"))
    assert len(ds) == report["kept"] > 0
    assert set(ds.column_names) == set(writer.features())
    assert isinstance(ds.features["frames"].feature, datasets.Image)
    assert isinstance(ds.features["imagery"].feature, datasets.Image)
    row = ds[0]
    assert len(row["frames"]) == 8 and row["frames"][0].size == (64, 64)
    assert row["cot"].count("<imagery>") == len(row["imagery"]) >= 2
    ids = ds["id"]
    assert len(ids) == len(set(ids))
    for r in ds:
        assert validate_cot(r["cot"], r["options"], r["answer"], len(r["imagery"])) is None
        assert r["cot"].endswith(f"<answer>{r['options'][ord(r['answer']) - 65]}</answer>")
        assert r["label_source"] == "geometry"
    stats = json.loads((out / "synthesis_stats.json").read_text())
    assert stats["candidates"] == stats["kept"] + sum(n for s in stats["rejected"].values() for n in s.values())
    assert stats["candidates"] == 8 * len(cfg.tasks)
    assert stats["pipeline"]["teacher"] == "rule" and stats["pipeline"]["segmenter"] == "ground_truth"
    assert {"name", "license", "url"} <= set(stats["sources"][0])
    card = (out / "README.md").read_text()
    for section in ("## Schema", "## Rows per task", "## Rows per label source", "## Rejections", "## Pipeline"):
        assert section in card
    assert "data/train-*" in card and f"| `geometry` | {report['kept']} |" in card
    assert stats["label_sources"] == {"geometry": report["kept"]}


def test_labels_agree_with_world_ground_truth(offline_run):
    from thinker4d.world import ask, motion_label_text, render_clip, sample_clip_spec

    cfg, out, _ = offline_run
    rows = _rows(out)
    checked = 0
    for r in rows:
        meta = json.loads(r["meta"])
        seed, k = meta["seed"], cfg.tasks.index(r["task"])
        assert r["options"][ord(r["answer"]) - 65][3:] == meta["answer_text"]
        if r["task"] == "camera_motion":
            spec = sample_clip_spec(seed, num_frames=8, size=64)
            assert meta["answer_text"] == motion_label_text(list(spec.camera.motion) or ["Stay"])
        clip = render_clip(seed, num_frames=8, size=64)
        if r["task"] == "object_bbox":
            lb = meta["label"]
            m = clip.instance_ids[lb["frame"]] == clip.object_names.index(lb["object"]) + 1
            ys, xs = np.nonzero(m)
            assert lb["bbox_px"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        # the world's own ground-truth function, asked about the same object, gives the same label
        q = ask(
            clip,
            r["task"],
            rng=np.random.default_rng([cfg.seed, meta["source_index"], k]),
            answer_index=meta["source_index"] + k,
        )
        if q is not None and q["label"].get("object") == meta["label"].get("object"):
            assert q["answer_text"] == meta["answer_text"] and q["label"] == meta["label"]
        checked += 1
    assert checked == len(rows) > 0


def test_answer_letters_are_balanced_and_deterministic(tmp_path):
    cfg = SynthesisConfig(world_num_clips=8, tasks=["camera_motion"], camera_key_frames=2, **SMALL)
    from thinker4d.data.questions import make_question
    from thinker4d.world import render_clip

    letters = [make_question(render_clip(s, num_frames=8, size=64), "camera_motion", s, 0)["answer"] for s in range(8)]
    assert letters == list("ABCDABCD")
    a = run_synthesis(cfg, tmp_path / "a", progress=False)
    b = run_synthesis(cfg, tmp_path / "b", progress=False)
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b") and a["kept"] == b["kept"]


# ------------------------------------------------------------------------------------------------ crash safety


def _child_run(cfg_dict, out):
    run_synthesis(SynthesisConfig(**cfg_dict), out, resume=True, progress=False)
    os._exit(0)


def test_sigkill_and_resume_gives_exactly_the_uninterrupted_rows(tmp_path):
    cfg = SynthesisConfig(world_num_clips=24, world_num_frames=8, world_size=64, batch_size=1)
    ref = run_synthesis(cfg, tmp_path / "ref", progress=False)
    out = tmp_path / "killed"
    ctx = multiprocessing.get_context("fork")
    rng = random.Random(0)
    clips = out / ".work" / "clips"

    def finished_clips() -> int:
        return len(list(clips.glob("*.parquet"))) if clips.is_dir() else 0

    kills = 0
    for _ in range(30):
        if writer.is_complete(out):
            break
        # Kill each worker right after it has finished one more clip (plus a random few milliseconds, so kills also land
        # while a clip file is being written), not after a fixed time: on a fast machine a timed kill can come too late.
        before = finished_clips()
        p = ctx.Process(target=_child_run, args=(cfg.to_dict(), str(out)))
        p.start()
        while p.is_alive() and finished_clips() <= before:
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.005))
        if p.is_alive():
            p.kill()  # SIGKILL
            p.join()
            kills += 1
        else:
            p.join()
            assert p.exitcode == 0, f"the worker failed (exit code {p.exitcode})"
    assert kills >= 3, "the run finished before it could be killed a few times; make it longer"
    report = run_synthesis(cfg, out, resume=True, progress=False)
    assert report["complete"]
    assert _rows(out) == _rows(tmp_path / "ref")
    assert report["kept"] == ref["kept"] and report["rejected"] == ref["rejected"]
    assert not [p for p in (out / ".work" / "clips").iterdir() if ".tmp" in p.name]


def test_worker_fork_hook_is_registered_by_a_num_proc_run_not_by_import():
    # importing the package must not change how this process forks; only a `num_proc > 1` run registers its hook
    code = (
        "import thinker4d.data.pipeline, thinker4d.data.workers as w, thinker4d.commands.synthesize\n"
        "print(w._FORK_HOOK_REGISTERED)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def _worker_pids(parent: int) -> set[int]:
    """Live (not zombie) processes whose parent is `parent` (Linux /proc)."""
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if int(ppid) == parent and state != "Z":
                out.add(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; workers die with the run on Linux")
def test_sigkill_and_resume_with_num_proc_2(tmp_path):
    cfg = SynthesisConfig(world_num_clips=48, world_num_frames=8, world_size=64, batch_size=1, num_proc=2)
    ref = run_synthesis(dataclasses.replace(cfg, num_proc=1), tmp_path / "ref", progress=False)
    out = tmp_path / "killed"
    clips = out / ".work" / "clips"

    def n_done():  # not writer.done_keys: that removes the temporary files the workers are writing
        return sum(1 for f in clips.iterdir() if f.suffix == ".parquet") if clips.is_dir() else 0

    ctx = multiprocessing.get_context("fork")
    rng = random.Random(1)
    killed_workers: set[int] = set()
    kills = 0
    for attempt in range(10):
        if writer.is_complete(out):
            break
        p = ctx.Process(target=_child_run, args=(cfg.to_dict(), str(out)))
        before = n_done()
        p.start()
        workers: set[int] = set()
        target = before + 1 + rng.randrange(4)  # kill mid-run, a few clips after this attempt started writing
        deadline = time.monotonic() + 60
        while p.is_alive() and time.monotonic() < deadline and not (attempt < 4 and n_done() >= target):
            workers |= _worker_pids(p.pid)
            time.sleep(0.005)
        if p.is_alive() and attempt < 4:
            workers |= _worker_pids(p.pid)
            p.kill()  # SIGKILL of the run while its worker processes are busy
            p.join()
            kills += 1
            killed_workers |= workers
        else:
            p.join()
            assert p.exitcode == 0, f"the run failed (exit code {p.exitcode})"
    assert kills == 4 and 0 < n_done() <= 48
    # the pool's workers (and datasets' queue manager) die with the killed run instead of writing on
    assert len(killed_workers) >= 3
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in killed_workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [w for w in killed_workers if _alive(w)], "worker processes outlived the killed run"
    report = run_synthesis(cfg, out, resume=True, progress=False)
    assert report["complete"]
    assert _rows(out) == _rows(tmp_path / "ref")
    assert report["kept"] == ref["kept"] and report["rejected"] == ref["rejected"]
    assert not [p for p in (out / ".work" / "clips").iterdir() if ".tmp" in p.name]


def test_incomplete_output_is_not_complete_and_resume_rules(tmp_path):
    cfg = SynthesisConfig(world_num_clips=2, **SMALL)
    out = tmp_path / "o"
    run_synthesis(cfg, out, progress=False)
    (out / writer.COMPLETE).unlink()
    assert not writer.is_complete(out)
    with pytest.raises(RuntimeError, match="not a finished synthesis"):
        writer.write_paper_jsonl(out, tmp_path / "x.jsonl")
    with pytest.raises(FileExistsError, match="pass resume=True"):
        run_synthesis(cfg, out, progress=False)
    other = SynthesisConfig(world_num_clips=2, world_seed_start=5, **SMALL)
    with pytest.raises(ValueError, match="different settings"):
        run_synthesis(other, out, resume=True, progress=False)
    report = run_synthesis(cfg, out, resume=True, progress=False)
    assert report["skipped_done"] == 2 and writer.is_complete(out)


def test_resume_removes_temporaries_left_by_a_killed_final_write(tmp_path):
    cfg = SynthesisConfig(world_num_clips=2, **SMALL)
    out = tmp_path / "o"
    run_synthesis(cfg, out, progress=False)
    # what a run killed while writing the final shard leaves: the shard's temporary (of a dead process), no COMPLETE
    (out / writer.COMPLETE).unlink()
    shard_tmp = out / "data" / ".train-00000-of-00001.parquet.tmp999999-1"
    shard_tmp.write_bytes(os.urandom(1 << 20))
    (out / ".synthesis_stats.json.tmp999999-1").write_bytes(b"{")
    assert run_synthesis(cfg, out, resume=True, progress=False)["complete"]
    assert writer.is_complete(out)
    assert not [p.name for p in out.rglob("*") if ".tmp" in p.name]
    assert [p.name for p in (out / "data").iterdir()] == ["train-00000-of-00001.parquet"]
    # a complete dataset that still holds one is cleaned by --resume as well
    shard_tmp.write_bytes(b"stale")
    assert run_synthesis(cfg, out, resume=True, progress=False)["resumed_complete"]
    assert not shard_tmp.exists()


# ------------------------------------------------------------------------------------------------ sharding


def test_shards_merge_to_the_unsharded_dataset(tmp_path, offline_run):
    cfg, ref_out, _ = offline_run
    for i in range(3):
        run_synthesis(cfg, tmp_path / f"s{i}", num_shards=3, shard_index=i, progress=False)
    with pytest.raises(ValueError, match="have no result"):
        merge_outputs([tmp_path / "s0", tmp_path / "s1"], tmp_path / "bad")
    report = merge_outputs([tmp_path / f"s{i}" for i in range(3)], tmp_path / "merged")
    assert _rows(tmp_path / "merged") == _rows(ref_out)
    assert report["kept"] == json.loads((ref_out / "synthesis_stats.json").read_text())["kept"]


def test_num_proc_2_gives_exactly_the_rows_of_num_proc_1(tmp_path, offline_run):
    from thinker4d.datasets_io import load_thinker4d_dataset

    cfg, ref_out, ref = offline_run
    par = dataclasses.replace(cfg, num_proc=2)
    assert par.fingerprint() == cfg.fingerprint()  # not a row-changing setting: resumable with another num_proc
    report = run_synthesis(par, tmp_path / "p2", progress=False)
    assert report["num_proc"] == 2 and ref["num_proc"] == 1 and report["processed_now"] == 8
    assert report["teacher_usage"] == {"teacher": "rule", "style": "full", "workers": 2}
    assert {"ingest", "masks_overlays_questions", "write", "assemble"} <= set(report["timings_s"])
    assert _rows(tmp_path / "p2") == _rows(ref_out)
    ids = load_thinker4d_dataset(tmp_path / "p2", split="train")["id"]
    assert ids == load_thinker4d_dataset(ref_out, split="train")["id"] and len(ids) == ref["kept"]
    # `cache_dir` decides where the Arrow copy (and later `.map` caches) go
    cached = load_thinker4d_dataset(ref_out, split="train", cache_dir=tmp_path / "cache")
    assert cached["id"] == ids and cached.cache_files
    assert all(Path(f["filename"]).is_relative_to(tmp_path / "cache") for f in cached.cache_files)
    assert (tmp_path / "p2" / "synthesis_stats.json").read_text() == (ref_out / "synthesis_stats.json").read_text()
    assert (tmp_path / "p2" / "README.md").read_text() == (ref_out / "README.md").read_text()
    # a run started with num_proc=2 resumes with num_proc=1 (and vice versa)
    assert run_synthesis(cfg, tmp_path / "p2", resume=True, progress=False)["resumed_complete"]


def test_num_proc_rejects_bad_values_and_unpicklable_objects(tmp_path):
    from thinker4d.data.teacher import GeminiTeacher

    with pytest.raises(ValueError, match="num_proc must be an integer >= 1"):
        SynthesisConfig(num_proc=0)
    cfg = SynthesisConfig(world_num_clips=2, num_proc=2, **SMALL)
    with pytest.raises(
        ValueError, match="num_proc=2 sends the teacher you passed \\(GeminiTeacher\\).*cannot be pickled"
    ):
        run_synthesis(cfg, tmp_path / "o", teacher=GeminiTeacher(api_key="k"), progress=False)


# ------------------------------------------------------------------------------------------------ Gemini + faults


def test_gemini_teacher_with_30_percent_faults_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "secret-test-key-123")
    with FakeGeminiServer(failure_rate=0.3, hang_s=1.0, seed=3) as srv:
        cfg = SynthesisConfig(
            world_num_clips=4,
            teacher="gemini",
            gemini_base_url=srv.url,
            gemini_timeout_s=0.3,
            gemini_backoff_s=0.01,
            gemini_max_retries=6,
            cache_dir=str(tmp_path / "cache"),
            **SMALL,
        )
        report = run_synthesis(cfg, tmp_path / "g", progress=False)
        faults = {k: srv.counts[k] for k in ("429", "500", "timeout", "malformed")}
        assert sum(faults.values()) > 0
        assert report["candidates"] == report["kept"] + sum(n for s in report["rejected"].values() for n in s.values())
        assert report["kept"] > 0
        usage = report["teacher_usage"]
        assert usage["retries"] > 0 and usage["prompt_tokens"] > 0 and usage["estimated_cost_usd"] > 0
        for r in _rows(tmp_path / "g"):
            assert validate_cot(r["cot"], r["options"], r["answer"], len(r["imagery"])) is None
            assert json.loads(r["meta"])["teacher"] == "gemini"
        # a rerun into a new folder is answered from the cache: no request reaches the server
        before = srv.counts["requests"]
        again = run_synthesis(cfg, tmp_path / "g2", progress=False)
        assert srv.counts["requests"] == before and again["teacher_usage"]["cache_hits"] > 0
    for p in list((tmp_path / "g").rglob("*")) + list((tmp_path / "cache").rglob("*")):
        if p.is_file():
            assert b"secret-test-key-123" not in p.read_bytes()


def test_all_rejected_run_fails_without_complete_and_resume_retries_transient_rejections(tmp_path, monkeypatch):
    from thinker4d.commands.synthesize import main
    from thinker4d.data.pipeline import SynthesisFailed
    from thinker4d.data.teacher import is_transient_rejection

    def no_box_answers(body):  # box questions time out
        if "Which box" in json.dumps(body.get("contents")):
            time.sleep(0.3)
        return default_responder(body)

    monkeypatch.setenv("GEMINI_API_KEY", "k")
    with FakeGeminiServer(failure_rate=1.0, faults=("429", "500", "timeout"), hang_s=0.3, seed=0) as srv:
        kw = dict(world_num_clips=3, teacher="gemini", gemini_base_url=srv.url, gemini_timeout_s=0.1, **SMALL)
        cfg = SynthesisConfig(gemini_backoff_s=0.0, gemini_max_retries=1, **kw)
        out = tmp_path / "o"
        # the teacher never answers: every candidate is rejected, no dataset is written, and the error says why
        with pytest.raises(
            SynthesisFailed, match="(?s)all 15 candidates of 3 clips were rejected.*rerun with --resume"
        ):
            run_synthesis(cfg, out, progress=False)
        assert not writer.is_complete(out) and not (out / "data").exists()
        (tmp_path / "c.yaml").write_text(json.dumps({**cfg.to_dict(), "gemini_max_retries": 0}))
        assert (
            main(["--config", str(tmp_path / "c.yaml"), "--output_dir", str(tmp_path / "cli"), "--no-progress"]) == 1
        )
        assert not writer.is_complete(tmp_path / "cli")
        # the endpoint comes back, except that box questions still time out: resume retries the transient rejections
        srv.failure_rate, srv.responder = 0.0, no_box_answers
        partial = run_synthesis(cfg, out, resume=True, progress=False)
        assert partial["complete"] and partial["processed_now"] == 3 and partial["kept"] > 0
        assert partial["retryable"] == partial["rejected"]["cot"]["teacher_timeout"] > 0
        assert "object_bbox" not in partial["tasks"]
        # all answers come back: the next resume redoes only the clips with transient rejections
        srv.responder = default_responder
        final = run_synthesis(cfg, out, resume=True, progress=False)
        assert final["retryable"] == 0 and 0 < final["processed_now"] <= 3
        assert not any(is_transient_rejection(r) for rs in final["rejected"].values() for r in rs)
        clean = run_synthesis(cfg, tmp_path / "clean", progress=False)
        assert _rows(out) == _rows(tmp_path / "clean") and final["kept"] == clean["kept"]
        assert run_synthesis(cfg, out, resume=True, progress=False)["resumed_complete"]
    # a run whose rejections are final (bad input everywhere) fails too, and says a rerun would not help
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(SynthesisFailed, match="(?s)ingest/bad_input: 5.*None of these reasons is transient"):
        run_synthesis(SynthesisConfig(video_dirs=[str(bad)], **SMALL), tmp_path / "b", progress=False)
    assert is_transient_rejection("teacher_http_503") and is_transient_rejection("teacher_timeout")
    assert not is_transient_rejection("teacher_http_400") and not is_transient_rejection("teacher_malformed")


def test_gemini_teacher_with_num_proc_2_splits_concurrency_and_sums_usage(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    with FakeGeminiServer() as srv:
        kw = dict(world_num_clips=4, teacher="gemini", gemini_base_url=srv.url, gemini_concurrency=3, **SMALL)
        one = run_synthesis(SynthesisConfig(cache_dir=str(tmp_path / "c1"), **kw), tmp_path / "a", progress=False)
        sent = srv.counts["requests"]
        two = run_synthesis(
            SynthesisConfig(cache_dir=str(tmp_path / "c2"), num_proc=2, **kw), tmp_path / "b", progress=False
        )
        assert srv.counts["requests"] - sent == two["teacher_usage"]["requests"] == one["teacher_usage"]["requests"]
    assert two["teacher_usage"]["workers"] == 2 and two["teacher_usage"]["model"] == "gemini-2.5-flash"
    assert two["teacher_usage"]["prompt_tokens"] == one["teacher_usage"]["prompt_tokens"] > 0
    assert _rows(tmp_path / "b") == _rows(tmp_path / "a") and one["kept"] > 0


def test_validator_regenerates_then_rejects_with_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLE_API_KEY", "k")

    def wrong_first(body):
        out = default_responder(body)
        text = json.dumps(body)
        if "reasoning" in out and "Attempt 2" not in text:
            out["answer"] = "Z. nothing"
        return out

    def always_wrong(body):
        out = default_responder(body)
        if "reasoning" in out:
            out["reasoning"] = out["reasoning"].replace("<imagery>", "", 1)
        return out

    cfg_kw = dict(world_num_clips=1, teacher="gemini", gemini_backoff_s=0.01, tasks=["object_bbox"], **SMALL)
    with FakeGeminiServer(responder=wrong_first) as srv:
        run_synthesis(SynthesisConfig(gemini_base_url=srv.url, **cfg_kw), tmp_path / "a", progress=False)
    rows = _rows(tmp_path / "a")
    assert rows and all(json.loads(r["meta"])["cot_attempts"] == 2 for r in rows)
    from thinker4d.data.pipeline import SynthesisFailed

    with FakeGeminiServer(responder=always_wrong) as srv:
        with pytest.raises(SynthesisFailed, match="validate/imagery_count_mismatch: 1") as failed:  # nothing kept
            run_synthesis(SynthesisConfig(gemini_base_url=srv.url, **cfg_kw), tmp_path / "b", progress=False)
        assert srv.counts["requests"] == 4  # 1 + 3 regenerations
    rep = failed.value.report
    assert rep["kept"] == 0 and rep["rejected"]["validate"] == {"imagery_count_mismatch": 1}


def test_gemini_landmarks_for_clips_without_geometry(monkeypatch):
    from thinker4d.data.teacher import GeminiTeacher
    from thinker4d.world import render_clip

    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(ValueError, match="GEMINI_API_KEY"):
        GeminiTeacher()
    clip = render_clip(2, num_frames=4, size=64)
    clip.meta = {"source": "spatialvid"}
    with FakeGeminiServer() as srv:
        srv.keep_bodies = True
        teacher = GeminiTeacher(api_key="k", base_url=srv.url)
        lm = teacher.landmarks_many([clip])[0]
        teacher.close()
        assert srv.bodies[0]["generationConfig"]["responseSchema"]["required"] == ["static_object", "dynamic_object"]
    (px, py), box = FAKE_LANDMARKS["static_object"][2], FAKE_LANDMARKS["dynamic_object"][3]
    assert lm["static"]["point"] == [int(px / 1000 * 64), int(py / 1000 * 64)] == [25, 32]
    assert lm["dynamic"]["box"] == [int(v / 1000 * 64) for v in box] and lm["dynamic"]["name"] == "ball"
    assert "k" not in repr(teacher)[-5:]


def test_gemini_teacher_request_body_per_schema_proxy_and_close(monkeypatch):
    import base64

    from thinker4d.data.cot import COT_SCHEMA
    from thinker4d.data.gemini import _encode_png
    from thinker4d.data.teacher import LANDMARK_SCHEMA, GeminiTeacher

    img = _encode_png(np.full((4, 4, 3), 7, np.uint8))
    with FakeGeminiServer() as srv:
        srv.keep_bodies = True
        teacher = GeminiTeacher(api_key="k", base_url=srv.url, temperature=0.3)
        # two schemas in one batch: each request carries its own generationConfig (one client per schema)
        land, cot = teacher._run(
            lambda: [
                teacher.generate_json("where?", [img], LANDMARK_SCHEMA),
                teacher.generate_json("why?", [], COT_SCHEMA),
            ]
        )
        assert set(land) == {"static_object", "dynamic_object"} and set(cot) == {"reasoning", "answer"}
        by_prompt = {b["contents"][0]["parts"][-1]["text"]: b for b in srv.bodies}
        for prompt, schema, n_images in (("where?", LANDMARK_SCHEMA, 1), ("why?", COT_SCHEMA, 0)):
            body = by_prompt[prompt]
            gen = body["generationConfig"]
            assert gen["responseMimeType"] == "application/json" and gen["temperature"] == 0.3
            assert gen["responseSchema"]["required"] == schema["required"]
            assert gen["responseSchema"]["propertyOrdering"] == list(schema["properties"])
            parts = body["contents"][0]["parts"]
            assert body["contents"][0]["role"] == "user" and len(parts) == n_images + 1
        inline = by_prompt["where?"]["contents"][0]["parts"][0]["inlineData"]
        assert base64.urlsafe_b64decode(inline["data"] + "=" * (-len(inline["data"]) % 4)) == img
        assert by_prompt["why?"]["generationConfig"]["responseSchema"]["propertyOrdering"] == ["reasoning", "answer"]
        nested = by_prompt["where?"]["generationConfig"]["responseSchema"]["properties"]["static_object"]
        assert nested["propertyOrdering"] == ["name", "description", "point", "box"]
        # an invalid schema fails with a clear message (returned per request, like any teacher failure)
        (err,) = teacher._run(lambda: [teacher.generate_json("p", [], {"type": "OBJECT", "required": "label"})])
        with pytest.raises(ValueError, match="not a valid Gemini schema.*required"):
            raise err
        session = teacher._session
        teacher.close()
        assert session.closed and teacher._session is None
        # the teacher still works after close (session and loop are rebuilt)
        (again,) = teacher._run(lambda: [teacher.generate_json("why?", [], COT_SCHEMA)])
        assert set(again) == {"reasoning", "answer"}
        teacher.close()

        # the proxy comes from the environment (read once): the fake server acts as the proxy of an unreachable host
        for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", srv.url)
        before = srv.counts["requests"]
        proxied = GeminiTeacher(api_key="k", base_url="http://gemini.invalid", max_retries=0)
        (out,) = proxied._run(lambda: [proxied.generate_json("why?", [], COT_SCHEMA)])
        proxied.close()
        assert set(out) == {"reasoning", "answer"} and srv.counts["requests"] == before + 1


def test_gemini_cache_same_request_concurrently(tmp_path):
    from thinker4d.data.cot import COT_SCHEMA
    from thinker4d.data.teacher import GeminiTeacher

    with FakeGeminiServer() as srv:
        teacher = GeminiTeacher(api_key="k", base_url=srv.url, cache_dir=str(tmp_path))
        # the same request four times in one batch: the cache writes (in worker threads) must not collide
        outs = teacher._run(lambda: [teacher.generate_json("same", [], COT_SCHEMA) for _ in range(4)])
        teacher.close()
        assert all(isinstance(o, dict) and set(o) == {"reasoning", "answer"} for o in outs)
        files = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert [p.name for p in files] == [f"{teacher.request_key('same', [], COT_SCHEMA)}.json"]
        before = srv.counts["requests"]
        again = GeminiTeacher(api_key="k", base_url=srv.url, cache_dir=str(tmp_path))
        assert again._run(lambda: [again.generate_json("same", [], COT_SCHEMA)]) == [outs[0]]
        again.close()
        assert srv.counts["requests"] == before and again.stats()["cache_hits"] == 1


def test_fake_server_sends_without_nagle_delay():
    # headers and body go out in separate writes; without TCP_NODELAY the body waits ~40 ms for a delayed ACK
    with FakeGeminiServer() as srv:
        assert srv._server.RequestHandlerClass.disable_nagle_algorithm is True


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("num_proc", [1, 2])
def test_bad_inputs_are_reported_per_clip_and_the_run_continues(tmp_path, num_proc):
    from thinker4d.world import render_clip, save_clip

    root = tmp_path / "clips"
    for s in range(6):
        save_clip(render_clip(s, num_frames=8, size=64), root / f"c{s}")
    (root / "c1" / "video.mp4").write_bytes(os.urandom(2000))  # corrupt
    (root / "c2" / "video.mp4").write_bytes(b"")  # empty
    data = (root / "c3" / "video.mp4").read_bytes()
    (root / "c3" / "video.mp4").write_bytes(data[: len(data) // 3])  # truncated
    (root / "c4" / "intrinsics.npy").unlink()  # missing annotation file
    np.savez_compressed(root / "c5" / "masks.npz", instance_ids=np.zeros((8, 32, 32), np.uint8))  # wrong size
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "broken.mp4").write_bytes(b"\x00" * 100)
    cfg = SynthesisConfig(clip_dirs=[str(root / "c*")], video_dirs=[str(videos)], num_proc=num_proc, **SMALL)
    report = run_synthesis(cfg, tmp_path / "out", progress=False)
    assert report["num_proc"] == num_proc and report["clips"] == 7
    errors = {e["clip_id"]: e for e in report["errors"]}
    assert set(errors) == {"c1", "c2", "c3", "c4", "c5", "broken"}
    assert all(e["stage"] == "ingest" and e["reason"] == "bad_input" for e in errors.values())
    assert "empty (0 bytes)" in errors["broken"]["message"] or "Cannot decode" in errors["broken"]["message"]
    assert "intrinsics.npy" in errors["c4"]["message"]
    assert "instance_ids must be (8, 64, 64)" in errors["c5"]["message"]
    assert "video.mp4" in errors["c1"]["message"] or "decode" in errors["c1"]["message"].lower()
    rows = _rows(tmp_path / "out")
    assert rows and {r["clip_id"] for r in rows} == {"world-0000000"}
    assert report["rejected"]["ingest"]["bad_input"] == 6 * len(cfg.tasks)


def test_world_folders_without_a_video_stream_masks_or_indexes_are_bad_input(tmp_path):
    import av

    from thinker4d.world import render_clip, save_clip

    root = tmp_path / "clips"
    for s in range(4):
        save_clip(render_clip(s, num_frames=8, size=64), root / f"c{s}")
    with av.open(str(root / "c1" / "video.mp4"), "w", format="mp4") as c:  # an mp4 with an audio stream only
        stream = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in list(stream.encode(frame)) + list(stream.encode()):
            c.mux(packet)
    (root / "c2" / "masks.npz").unlink()
    (root / "c3" / "indexes.txt").unlink()
    cfg = SynthesisConfig(clip_dirs=[str(root / "c*")], **SMALL)
    report = run_synthesis(cfg, tmp_path / "out", progress=False)
    errors = {e["clip_id"]: e for e in report["errors"]}
    assert set(errors) == {"c1", "c2", "c3"}
    assert all(e["stage"] == "ingest" and e["reason"] == "bad_input" for e in errors.values())
    assert "video.mp4 has no video stream" in errors["c1"]["message"]
    assert "missing masks.npz" in errors["c2"]["message"] and "missing indexes.txt" in errors["c3"]["message"]
    # every candidate of the three ends at ingest; later stages only see the good clip c0
    assert report["rejected"]["ingest"] == {"bad_input": 3 * len(cfg.tasks)}
    later = sum(n for stage, r in report["rejected"].items() if stage != "ingest" for n in r.values())
    assert later + report["kept"] == len(cfg.tasks)


def _spy_on_decoding(monkeypatch):
    """Record the shape of every array PyAV makes from a decoded frame (and whether it came from `reformat`)."""
    import av

    made = []

    class FrameSpy:
        def __init__(self, frame, scaled=False):
            self.frame, self.scaled = frame, scaled

        def __getattr__(self, name):
            return getattr(self.frame, name)

        def reformat(self, *args, **kwargs):
            return FrameSpy(self.frame.reformat(*args, **kwargs), scaled=True)

        def to_ndarray(self, *args, **kwargs):
            arr = self.frame.to_ndarray(*args, **kwargs)
            made.append((arr.shape, self.scaled))
            return arr

    class ContainerSpy:
        def __init__(self, container):
            self.container = container

        def __getattr__(self, name):
            return getattr(self.container, name)

        def __enter__(self):
            self.container.__enter__()
            return self

        def __exit__(self, *exc):
            return self.container.__exit__(*exc)

        def decode(self, *args, **kwargs):
            return (FrameSpy(f) for f in self.container.decode(*args, **kwargs))

    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **kw: ContainerSpy(real_open(*a, **kw)))
    return made


def test_large_videos_are_scaled_and_sampled_while_decoding(tmp_path, monkeypatch):
    from thinker4d.data.ingest import load_source
    from thinker4d.world import render_clip, save_clip
    from thinker4d.world.clip import write_video

    rng = np.random.default_rng(0)
    big = np.repeat(rng.integers(0, 255, (12, 96, 128, 3), dtype=np.uint8), 8, axis=1).repeat(8, axis=2)
    write_video(tmp_path / "big.mp4", big, fps=12)  # 12 frames of 768 x 1024
    made = _spy_on_decoding(monkeypatch)
    frames, fps = read_video_frames(tmp_path / "big.mp4", target_fps=None, max_frames=4, max_size=64)
    assert frames.shape == (4, 48, 64, 3) and fps == pytest.approx(4.0)
    # one small array per kept frame, each scaled before it became an array: never a full-resolution frame or stack
    assert made == [((48, 64, 3), True)] * 4
    # a plain video and a clip folder through the pipeline's ingest, with the configured max_size / max_frames
    videos = tmp_path / "videos"
    videos.mkdir()
    (tmp_path / "big.mp4").rename(videos / "big.mp4")
    save_clip(render_clip(3, num_frames=12, size=256), tmp_path / "clips" / "c0")
    cfg = SynthesisConfig(
        clip_dirs=[str(tmp_path / "clips" / "c*")], video_dirs=[str(videos)], max_frames=6, max_size=64
    )
    made.clear()
    folder = load_source(Source(0, "folder", str(tmp_path / "clips" / "c0")), cfg)
    assert folder.frames.shape == (6, 64, 64, 3) and folder.instance_ids.shape == (6, 64, 64)
    assert made == [((64, 64, 3), True)] * 6
    made.clear()
    video = load_source(Source(1, "video", str(videos / "big.mp4")), cfg)
    assert video.frames.shape == (6, 48, 64, 3) and made == [((48, 64, 3), True)] * 6


def test_read_video_frames_sampling_and_errors(tmp_path):
    from thinker4d.world.clip import write_video

    frames = (np.arange(24)[:, None, None, None] * 10 % 255 * np.ones((24, 16, 16, 3))).astype(np.uint8)
    write_video(tmp_path / "v.mp4", frames, fps=12)
    out, fps = read_video_frames(tmp_path / "v.mp4", target_fps=3, max_frames=16)
    assert len(out) == 6 and fps == pytest.approx(3.0)
    out, _ = read_video_frames(tmp_path / "v.mp4", target_fps=None, max_frames=5)
    assert len(out) == 5
    (tmp_path / "e.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        read_video_frames(tmp_path / "e.mp4")
    assert sample_indices(16, 8.0, 4.0, 16).tolist() == [0, 2, 4, 6, 8, 10, 12, 14]
    assert sample_indices(10, 8.0, None, 4).tolist() == [0, 3, 6, 9]


def test_subsample_clip_keeps_geometry_aligned():
    from thinker4d.world import render_clip

    clip = render_clip(4, num_frames=16, size=64)
    sub = subsample_clip(clip, sample_indices(16, clip.fps, 4.0, 16))
    assert sub.num_frames == 8 and sub.fps == pytest.approx(4.0)
    assert np.array_equal(sub.w2c, clip.w2c[::2]) and np.array_equal(sub.instance_ids, clip.instance_ids[::2])
    assert sub.camera_motion == clip.camera_motion
    turning = render_clip(2, num_frames=16, size=64)  # its white ball turns
    sub = subsample_clip(turning, sample_indices(16, turning.fps, 4.0, 16))
    assert sorted(sub.headings) == sorted(turning.headings) != []
    assert all(np.array_equal(sub.headings[n], h[::2]) for n, h in turning.headings.items())


def test_orientation_task_through_synthesis_and_synthdsr(tmp_path):
    """`object_orientation` is not among the default tasks, but asked for it goes through data synthesis (a CoT with
    one <imagery> per overlay and the turn in words, from both RuleTeacher styles) and into a balanced SynthDSR."""
    from thinker4d.world import build_synthdsr

    tasks = ["camera_motion", "object_orientation"]
    for style in ("full", "compact"):
        cfg = SynthesisConfig(world_num_clips=6, tasks=tasks, cot_style=style, **SMALL)
        report = run_synthesis(cfg, tmp_path / style, progress=False)
        rows = [r for r in _rows(tmp_path / style) if r["task"] == "object_orientation"]
        assert report["complete"] and len(rows) >= 2
        for r in rows:
            assert validate_cot(r["cot"], r["options"], r["answer"], len(r["imagery"])) is None
            assert r["cot"].count("<imagery>") == len(r["imagery"]) >= 2
            said = json.loads(r["meta"])["answer_text"] if style == "compact" else "its painted front goes from"
            assert said in r["cot"]
    ds = build_synthdsr(tmp_path / "sd", num_questions=6, num_frames=8, size=64, tasks=["object_orientation"])
    stats = json.loads((tmp_path / "sd" / "build_stats.json").read_text())
    assert len(ds) == 6 and set(stats["answers"]["object_orientation"].values()) == {2}


# ------------------------------------------------------------------------------------------------ stage units


@pytest.mark.parametrize(
    "cot, reason",
    [
        ("<think>" + "a" * 50 + " <imagery> <imagery></think><answer>B. Right</answer>", None),
        ("<think>" + "a" * 50 + " <imagery> <imagery></think><answer>B</answer>", None),
        ("<think>" + "a" * 50 + " <imagery> <imagery></think><answer>A. Left</answer>", "answer_mismatch"),
        ("<think>" + "a" * 50 + " <imagery> <imagery></think><answer>C. Up</answer>", "answer_not_an_option"),
        ("<think>" + "a" * 50 + " <imagery></think><answer>B. Right</answer>", "imagery_count_mismatch"),
        ("<think>" + "a" * 50 + " <imagery></think><answer>B. Right <imagery></answer>", "imagery_outside_think"),
        ("<think>short <imagery> <imagery></think><answer>B. Right</answer>", "think_too_short"),
        ("<think>" + "a" * 50 + " <imagery> <imagery><answer>B</answer></think><answer>B</answer>", "malformed_tags"),
        ("<think>" + "a" * 50 + " <imagery> <imagery></think><answer>B. Right</answer> extra", "malformed_tags"),
        ("no tags at all", "malformed_tags"),
    ],
)
def test_validate_cot(cot, reason):
    assert validate_cot(cot, ["Left", "Right"], "B", 2) == reason


def test_compact_cot_names_the_motion_then_scans_the_options_to_its_letter():
    from thinker4d.data.cot import compact_cot

    request = {
        "landmark": "white cube",
        "role": "static",
        "task": "camera_motion",
        "answer": "B",
        "answer_text": "Pan Right",
        "options": ["Tilt Up", "Pan Right", "Tilt Down", "Pan Left"],
        "cues": [{"x": 0.6, "y": 0.5, "area": 0.1}, {"x": 0.4, "y": 0.5, "area": 0.1}],
    }
    cot = compact_cot(request)
    assert cot == (
        "<think>The static white cube: <imagery> <imagery> It moves left and keeps its size. "
        "The camera: Pan Right. A. Tilt Up? No. B. Pan Right? Yes = B.</think><answer>B. Pan Right</answer>"
    )
    assert validate_cot(cot, request["options"], "B", 2) is None
    other = compact_cot({**request, "answer": "D", "answer_text": "Pan Left", "cues": request["cues"][::-1]})
    assert other.endswith(
        "right and keeps its size. The camera: Pan Left. A. Tilt Up? No. B. Pan Right? No. C. Tilt Down? No. "
        "D. Pan Left? Yes = D.</think><answer>D. Pan Left</answer>"
    )
    assert validate_cot(other, request["options"], "D", 2) is None
    first = compact_cot({**request, "answer": "A", "answer_text": "Tilt Up"})
    assert first.endswith("The camera: Tilt Up. A. Tilt Up? Yes = A.</think><answer>A. Tilt Up</answer>")
    with pytest.raises(ValueError, match="Answer 'E' is not one of the 4 options"):
        compact_cot({**request, "answer": "E"})


def test_imagery_only_cot_keeps_the_imagery_and_states_nothing_it_shows(tmp_path):
    """The same clips synthesized in the compact and the imagery-only style: the same rows, markers and answers, and
    nothing of what the compact CoT says about the clip before its option scan."""
    import re

    from thinker4d.data.cot import option_scan
    from thinker4d.prompting import option_text

    def words(text):
        return set(re.findall(r"[a-z]+", text.lower()))

    kw = dict(world_num_clips=6, tasks=["camera_motion", "object_distance"], **SMALL)
    run_synthesis(SynthesisConfig(cot_style="compact", **kw), tmp_path / "c", progress=False)
    run_synthesis(SynthesisConfig(cot_style="imagery_only", **kw), tmp_path / "i", progress=False)
    compact, probe = _rows(tmp_path / "c"), _rows(tmp_path / "i")
    assert len(probe) == len(compact) > 0
    assert {r["task"] for r in probe} == {"camera_motion", "object_distance"}
    for full, row in zip(compact, probe):
        assert (row["id"], row["options"], row["answer"]) == (full["id"], full["options"], full["answer"])
        n = len(row["imagery"])
        assert n > 0 and row["cot"].count("<imagery>") == full["cot"].count("<imagery>") == n
        assert validate_cot(row["cot"], row["options"], row["answer"], n) is None
        scan = option_scan(row["options"], row["answer"])
        assert row["cot"].endswith(scan) and full["cot"].endswith(scan)  # the same option scan and final answer
        before = row["cot"].removesuffix(scan)
        # what the compact CoT states between its last imagery block and the scan: the shift and the motion named
        stated = full["cot"].removesuffix(scan).rsplit("<imagery>", 1)[1]
        answer_text = option_text(row["options"], row["answer"]).split(". ", 1)[1]
        assert answer_text.lower() in stated.lower()
        assert not words(before.rsplit("<imagery>", 1)[1]) & words(stated), (before, stated)
        for text in row["options"]:  # no option is named before the scan
            assert text.split(". ", 1)[-1].lower() not in before.lower()
        assert before.split("<imagery>", 1)[0] == full["cot"].split("<imagery>", 1)[0]  # the same landmark opening
    with pytest.raises(ValueError, match="cot_style.*'imagery_only'"):
        SynthesisConfig(cot_style="imagery")


def test_overlay_blend_contour_and_key_frames():
    frame = np.full((8, 8, 3), 100, np.uint8)
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    out = overlay(frame, mask, alpha=0.4)
    assert out[3, 3].tolist() == [162, 60, 60]  # 100 * 0.6 + (255, 0, 0) * 0.4, inside
    assert out[2, 2].tolist() == [255, 0, 0] and out[0, 0].tolist() == [100, 100, 100]  # contour / outside
    assert contour(mask).sum() == 12
    with pytest.raises(ValueError, match="does not match the frame"):
        overlay(frame, np.zeros((4, 4), bool))
    present = np.array([0, 1, 1, 1, 1, 1, 1, 0, 0, 1], bool)
    key = select_key_frames(present, 4)
    assert key[0] == 1 and key[-1] == 9 and len(key) == 4
    assert select_key_frames(present, 20) == [1, 2, 3, 4, 5, 6, 9] or len(select_key_frames(present, 20)) <= 8
    assert select_key_frames(np.array([0, 1, 0], bool), 4) == []


def test_consistency_filter_reasons():
    T, H, W = 8, 32, 32
    good = np.zeros((T, H, W), bool)
    for t in range(T):
        good[t, 10:16, 5 + t : 11 + t] = True
    assert check_track(good) is None
    assert check_track(np.zeros((T, H, W), bool)) == "empty"
    lost = good.copy()
    lost[2:] = False
    assert check_track(lost) == "lost"
    jump = good.copy()
    jump[4] = False
    jump[4, 25:31, 25:31] = True
    assert check_track(jump) == "jump"


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown or empty tasks"):
        SynthesisConfig(tasks=["nope"])
    with pytest.raises(ValueError, match="held-out range"):
        SynthesisConfig(world_num_clips=10, world_seed_start=999_995)
    (tmp_path / "c.yaml").write_text("world_num_clips: 2\nbogus_key: 1\n")
    with pytest.raises(ValueError, match="unknown synthesis settings \\['bogus_key'\\]"):
        SynthesisConfig.from_yaml(tmp_path / "c.yaml")
    for name in ("offline.yaml", "gemini_sam2.yaml"):
        SynthesisConfig.from_yaml(Path(__file__).parents[1] / "examples" / "synthesis" / name)


def test_invalid_settings_are_listed_in_one_error_before_anything_is_written(tmp_path, capsys):
    from thinker4d.commands.synthesize import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "world_num_clips: ten\nworld_size: 15\noverlay_color: red\nbatch_size: '16'\nfps: fast\n"
        "clip_dirs: data/clips/*\ntasks: camera_motion\njpeg_quality: high\nmax_frames: 16.5\nbogus: 1\n"
    )
    with pytest.raises(ValueError) as e:
        SynthesisConfig.from_yaml(bad)
    msg = str(e.value)
    assert msg.startswith(f"{bad}: invalid synthesis settings (10; fix each and rerun)")
    for line in (
        "unknown synthesis settings ['bogus']",
        "world_num_clips must be an integer >= 0, got a string 'ten'",
        "world_size must be an even integer from 16 to 1024",
        "overlay_color must be three integers 0-255 (RGB), e.g. [255, 0, 0], got a string 'red'",
        "batch_size must be an integer >= 1, got a string '16'",
        "fps must be a number > 0 or null, got a string 'fast'",
        "clip_dirs must be a list of glob patterns of clip folders (write ['data/clips/*'] for one)",
        "tasks must be a list of tasks from camera_motion",
        "jpeg_quality must be an integer from 1 to 100, got a string 'high'",
        "max_frames must be an integer >= 2, got 16.5 (float)",
    ):
        assert f"  - {line}" in msg, line
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(bad), "--output_dir", str(out)])
    assert exc.value.code == 2 and "world_size must be" in capsys.readouterr().err and not out.exists()
    with pytest.raises(ValueError, match="object_motion_state needs clips of >= 5 frames, but the world clips have 4"):
        SynthesisConfig(world_num_clips=2, world_num_frames=4, tasks=["camera_motion", "object_motion_state"])
    with pytest.raises(
        ValueError, match="world_camera_motions must be camera-motion classes \\(unknown: \\['Zoom'\\]"
    ):
        SynthesisConfig(world_camera_motions=["Pan Left", "Zoom"])
    # a field changed after construction, a path that matches nothing, no sources: refused before any write
    cfg = SynthesisConfig(world_num_clips=2, **SMALL)
    cfg.world_size = 15
    with pytest.raises(ValueError, match="world_size must be an even integer"):
        run_synthesis(cfg, out, progress=False)
    with pytest.raises(FileNotFoundError, match="matches nothing"):
        run_synthesis(SynthesisConfig(clip_dirs=[str(tmp_path / "nope*")]), out, progress=False)
    with pytest.raises(ValueError, match="name no sources: set world_num_clips > 0, clip_dirs"):
        run_synthesis(SynthesisConfig(), out, progress=False)
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ SAM2


def test_sam2_tiny_random_video_propagation(tmp_path):
    from thinker4d.data.segmentation import Sam2Segmenter, mask_prompt
    from thinker4d.world import render_clip

    seg = Sam2Segmenter.tiny_random()
    clip = render_clip(1, num_frames=4, size=64)
    prompt = mask_prompt(clip.instance_ids == 1)
    masks = seg.segment(clip, {"name": clip.object_names[0], **prompt})
    assert masks.shape == (4, 64, 64) and masks.dtype == bool
    with pytest.raises(ValueError, match="no point or box prompt"):
        seg.segment(clip, {"name": "x"})
    cfg = SynthesisConfig(
        world_num_clips=1, world_num_frames=4, world_size=64, segmenter="sam2", tasks=["camera_motion", "object_bbox"]
    )
    report = run_synthesis(cfg, tmp_path / "s", segmenter=seg, progress=False)
    assert report["pipeline"]["segmenter"] == "sam2"
    assert report["candidates"] == report["kept"] + sum(n for s in report["rejected"].values() for n in s.values())


# ------------------------------------------------------------------------------------------------ outputs


def test_paper_jsonl_and_push_with_mocked_hub(offline_run, tmp_path):
    _, out, report = offline_run
    n = writer.write_paper_jsonl(out, tmp_path / "paper.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "paper.jsonl").read_text().splitlines()]
    assert n == len(lines) == report["kept"]
    for line in lines:
        assert line["text_output"].count("<output_image>") == len(line["image_output"]) >= 2
        assert "<imagery>" not in line["text_output"]
        assert (tmp_path / line["image_input"][0]).is_file() and "\nA. " in line["text_input"]
    from thinker4d.data.paper_jsonl import load_paper_jsonl

    back = load_paper_jsonl(str(tmp_path / "paper.jsonl"))
    assert back[0]["cot"] == _rows(out)[0]["cot"]
    api = mock.MagicMock()
    from thinker4d.hub import push_dataset

    push_dataset(out, "me/4d-cot", api=api)
    api.create_repo.assert_called_once_with(repo_id="me/4d-cot", repo_type="dataset", private=None, exist_ok=True)
    assert api.upload_folder.call_args.kwargs["repo_type"] == "dataset"


def test_cli_synthesize_and_merge(tmp_path, capsys):
    from thinker4d.commands.synthesize import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("world_num_clips: 2\nworld_num_frames: 8\nworld_size: 64\n")
    for i in range(2):
        assert (
            main(
                [
                    "--config",
                    str(cfg),
                    "--output_dir",
                    str(tmp_path / f"s{i}"),
                    "--num-shards",
                    "2",
                    "--shard-index",
                    str(i),
                    "--no-progress",
                ]
            )
            == 0
        )
    assert main(["merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--output_dir", str(tmp_path / "m")]) == 0
    assert writer.is_complete(tmp_path / "m") and '"kept"' in capsys.readouterr().out
    assert main(["--config", str(cfg), "--output_dir", str(tmp_path / "p"), "--num-proc", "2", "--no-progress"]) == 0
    assert '"num_proc": 2' in capsys.readouterr().out and _rows(tmp_path / "p") == _rows(tmp_path / "m")
    assert (
        main(
            [
                "--config",
                str(cfg),
                "--output_dir",
                str(tmp_path / "s0"),
                "--resume",
                "--num-shards",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )


def test_source_keys_are_unique_and_sortable():
    a, b = Source(3, "world", "3"), Source(12, "folder", "/x/clip id!")
    assert a.key == "0000003-world-0000003" and b.key == "0000012-clip_id_" and a.key < b.key


def test_fake_server_rejects_bad_settings():
    with pytest.raises(ValueError, match="Unknown fault kinds"):
        FakeGeminiServer(faults=("404",))
    with pytest.raises(RuntimeError, match="not started"):
        _ = FakeGeminiServer().url
    t = time.perf_counter()
    with FakeGeminiServer():
        pass
    assert time.perf_counter() - t < 5


# ------------------------------------------------------------------------------------------------ plain videos


NUM_VIDEOS = 3
RULE_SKIP = "no_geometry: the rule teacher cannot label plain videos; use GeminiTeacher"


@pytest.fixture(scope="module")
def plain_videos(tmp_path_factory):
    """A folder of plain mp4s (frames only, no poses/depth/masks): a bright square drifting right on a gradient."""
    from thinker4d.world.clip import write_video

    folder = tmp_path_factory.mktemp("plain") / "videos"
    folder.mkdir()
    base = np.linspace(30, 200, 64, dtype=np.uint8)[None, :, None] * np.ones((64, 64, 3), np.uint8)
    for v in range(NUM_VIDEOS):
        frames = np.repeat(base[None], 8, axis=0).copy()
        for t in range(8):
            x = 8 + 4 * t + 2 * v
            frames[t, 20:36, x : x + 12] = (220, 40 + 60 * v, 40)
        write_video(folder / f"walk_{v}.mp4", frames, fps=8)
    return folder


class PromptBoxSegmenter:
    """Test double for SAM2 on plain videos: the landmark's prompt box, unchanged, in every frame (the tiny random
    SAM2 gives noise that the consistency filter rejects)."""

    name = "prompt_box"

    def segment(self, clip, landmark):
        x1, y1, x2, y2 = landmark["box"]
        masks = np.zeros(clip.frames.shape[:3], bool)
        masks[:, y1:y2, x1:x2] = True
        return masks


def _plain_cfg(videos, **kw):
    return SynthesisConfig(video_dirs=[str(videos)], max_frames=8, batch_size=2, **kw)


def _rejected_total(report):
    return sum(n for s in report["rejected"].values() for n in s.values())


def test_plain_videos_with_gemini_teacher_get_teacher_labels(plain_videos, tmp_path, monkeypatch):
    import datasets

    from thinker4d.data.questions import TEACHER_LABEL_CLASSES
    from thinker4d.data.teacher import NO_TEACHER_CLASSES
    from thinker4d.world.camera import _AXIS

    monkeypatch.setenv("GEMINI_API_KEY", "k")
    with FakeGeminiServer(failure_rate=0.3, hang_s=1.0, seed=5) as srv:
        srv.keep_bodies = True
        cfg = _plain_cfg(
            plain_videos,
            teacher="gemini",
            gemini_base_url=srv.url,
            gemini_timeout_s=0.3,
            gemini_backoff_s=0.01,
            gemini_max_retries=8,
        )
        out = tmp_path / "teacher"
        report = run_synthesis(cfg, out, segmenter=PromptBoxSegmenter(), progress=False)
        label_bodies = [b for b in srv.bodies if "evidence" in _schema_props(b)]
    assert report["complete"] and report["errors"] == []
    assert sum(srv.counts[f] for f in ("429", "500", "timeout", "malformed")) > 0
    assert report["teacher_usage"]["retries"] > 0
    # every label request carries the enum of its task's classes (+ Unclear) as the answer schema
    assert label_bodies and all(
        _schema_props(b)["answer"]["enum"][-1] == "Unclear" and _schema_props(b)["answer"]["type"] == "STRING"
        for b in label_bodies
    )
    assert report["candidates"] == NUM_VIDEOS * len(cfg.tasks) == report["kept"] + _rejected_total(report)
    # object_bbox has no teacher classes: skipped with the reason, once per video
    assert report["rejected"]["questions"][f"no_geometry: {NO_TEACHER_CLASSES}"] == NUM_VIDEOS
    rows = _rows(out)
    assert len(rows) == report["kept"] >= NUM_VIDEOS
    assert {r["task"] for r in rows} == {"camera_motion", "object_direction", "object_distance", "object_speed"}
    for r in rows:
        meta = json.loads(r["meta"])
        assert r["label_source"] == "teacher" and meta["teacher"] == "gemini"
        assert (
            meta["answer_text"] in TEACHER_LABEL_CLASSES[r["task"]]
            and meta["label"]["teacher_class"] == meta["answer_text"]
        )
        assert validate_cot(r["cot"], r["options"], r["answer"], len(r["imagery"])) is None
        assert r["options"][ord(r["answer"]) - 65][3:] == meta["answer_text"]
        # the geometry questions' letter balancing: task k of the clip with index i at (i + k) % num_options
        k = cfg.tasks.index(r["task"])
        assert ord(r["answer"]) - 65 == (meta["source_index"] + k) % len(r["options"])
        if r["task"] == "camera_motion":
            texts = [o[3:] for o in r["options"]]
            assert len(texts) == 4 and len(set(texts)) == 4
            if meta["answer_text"] != "Stay":  # the world's distractors: the opposite motion first
                axis, sign = _AXIS[meta["answer_text"]]
                assert next(n for n, (a, s) in _AXIS.items() if a == axis and s == -sign) in texts
        else:
            assert sorted(o[3:] for o in r["options"]) == sorted(TEACHER_LABEL_CLASSES[r["task"]])
            assert meta["label"]["object"] == "ball" and "the ball" in r["question"]
    stats = json.loads((out / "synthesis_stats.json").read_text())
    assert stats["label_sources"] == {"teacher": len(rows)}
    assert f"| `teacher` | {len(rows)} |" in (out / "README.md").read_text()
    ds = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "hf_cache"))
    assert len(ds) == len(rows) and set(ds["label_source"]) == {"teacher"}
    assert len(ds[0]["frames"]) == 8 and ds[0]["frames"][0].size == (64, 64)


def _schema_props(body):
    return ((body.get("generationConfig") or {}).get("responseSchema") or {}).get("properties") or {}


def test_plain_videos_with_rule_teacher_are_skipped_with_the_reason(plain_videos, tmp_path):
    from thinker4d.data.pipeline import SynthesisFailed

    cfg = _plain_cfg(plain_videos)
    with pytest.raises(SynthesisFailed, match=f"questions/{RULE_SKIP}: {NUM_VIDEOS * len(cfg.tasks)}") as failed:
        run_synthesis(cfg, tmp_path / "rule", progress=False)  # nothing can be kept: no dataset, and the reason
    report = failed.value.report
    assert report["kept"] == 0 and _rows(tmp_path / "rule") == [] and report["errors"] == []
    assert report["rejected"] == {"questions": {RULE_SKIP: NUM_VIDEOS * len(cfg.tasks)}}
    assert report["retryable"] == 0 and not writer.is_complete(tmp_path / "rule")


def test_unknown_teacher_class_is_retried_then_rejected(plain_videos, tmp_path, monkeypatch):
    import threading

    monkeypatch.setenv("GEMINI_API_KEY", "k")
    tasks = ["camera_motion", "object_direction"]
    seen, lock = set(), threading.Lock()

    def unknown_first(body):  # each label request first gets a class outside the enum, its retry a valid one
        out = default_responder(body)
        if "evidence" in out:
            key = json.dumps(body["contents"], sort_keys=True)
            with lock:
                first = key not in seen
                seen.add(key)
            if first:
                out["answer"] = "Zoom In"
        return out

    def always_unknown(body):
        out = default_responder(body)
        if "evidence" in out:
            out["answer"] = "Zoom In"
        return out

    kw = dict(teacher="gemini", gemini_backoff_s=0.01, gemini_max_retries=2, tasks=tasks)
    with FakeGeminiServer(responder=unknown_first) as srv:
        srv.keep_bodies = True
        cfg = _plain_cfg(plain_videos, gemini_base_url=srv.url, **kw)
        rep = run_synthesis(cfg, tmp_path / "a", segmenter=PromptBoxSegmenter(), progress=False)
        label_calls = sum(1 for b in srv.bodies if "evidence" in _schema_props(b))
    assert label_calls == 2 * NUM_VIDEOS * len(tasks)  # one malformed answer and one retry per request
    assert rep["kept"] == NUM_VIDEOS * len(tasks) and rep["teacher_usage"]["error_malformed"] == label_calls // 2
    assert {r["label_source"] for r in _rows(tmp_path / "a")} == {"teacher"}
    from thinker4d.data.pipeline import SynthesisFailed

    with FakeGeminiServer(responder=always_unknown) as srv:
        srv.keep_bodies = True
        cfg = _plain_cfg(plain_videos, gemini_base_url=srv.url, **kw)
        with pytest.raises(SynthesisFailed, match="questions/teacher_malformed") as failed:  # nothing kept
            run_synthesis(cfg, tmp_path / "b", segmenter=PromptBoxSegmenter(), progress=False)
        rep = failed.value.report
        label_calls = sum(1 for b in srv.bodies if "evidence" in _schema_props(b))
    assert label_calls == 3 * NUM_VIDEOS * len(tasks)  # 1 + gemini_max_retries attempts each
    assert rep["kept"] == 0 and rep["errors"] == []
    assert rep["rejected"] == {"questions": {"teacher_malformed": NUM_VIDEOS * len(tasks)}}


def test_label_requests_get_faults_and_unknown_classes_name_the_value():
    from thinker4d.data.teacher import GeminiTeacher, TeacherError, label_schema
    from thinker4d.world import render_clip

    clip = render_clip(1, num_frames=4, size=32)
    clip.meta = {"source": "video"}
    with FakeGeminiServer(failure_rate=1.0, faults=("500",)) as srv:
        teacher = GeminiTeacher(api_key="k", base_url=srv.url, max_retries=1, backoff_s=0.0)
        (res,) = teacher.labels_many([{"clip": clip, "task": "camera_motion", "landmark": None}])
        teacher.close()
        assert isinstance(res, TeacherError) and res.reason == "http_500" and srv.counts["500"] == 2
    with FakeGeminiServer(responder=lambda body: {"evidence": "it turns", "answer": "Zoom In"}) as srv:
        teacher = GeminiTeacher(api_key="k", base_url=srv.url, max_retries=0)
        (res,) = teacher._run(lambda: [teacher.generate_json("p", [], label_schema("camera_motion"))])
        teacher.close()
    with pytest.raises(TeacherError, match=r"response.answer = 'Zoom In' is not one of \['Dolly In'"):
        raise res
    with pytest.raises(ValueError, match="No teacher classes for task 'object_bbox'"):
        label_schema("object_bbox")


def test_make_questions_from_teacher_labels():
    from thinker4d.data.questions import UNSURE, make_questions, make_teacher_question
    from thinker4d.data.teacher import NO_TEACHER_CLASSES, TeacherError
    from thinker4d.world import Clip

    T = 6
    clip = Clip("v", np.zeros((T, 16, 16, 3), np.uint8), 4.0, np.eye(3), np.tile(np.eye(4), (T, 1, 1)))
    clip.meta = {"source": "video"}
    tasks = ["camera_motion", "object_direction", "object_distance", "object_speed", "object_bbox"]
    labels = {
        "camera_motion": "Pan Left",
        "object_direction": "Right",
        "object_distance": UNSURE,
        "object_speed": "Warp speed",
        "object_bbox": TeacherError("no_geometry", NO_TEACHER_CLASSES),
    }
    qs, skipped = make_questions(clip, tasks, index=5, dynamic="the dog", teacher_labels=labels)
    assert skipped == {
        "object_distance": "teacher_unsure",
        "object_speed": "teacher_invalid_class",
        "object_bbox": f"no_geometry: {NO_TEACHER_CLASSES}",
    }
    cam, dirq = qs
    assert cam["label_source"] == dirq["label_source"] == "teacher"
    assert cam["options"][ord(cam["answer"]) - 65] == "Pan Left" and "Pan Right" in cam["options"]
    assert ord(cam["answer"]) - 65 == 5 % 4 and ord(dirq["answer"]) - 65 == 6 % 4
    assert dirq["label"] == {"object": "the dog", "direction": "Right", "teacher_class": "Right"}
    assert "does the dog move" in dirq["question"]
    # without a dynamic landmark the object task is skipped; with no teacher labels every task says so
    _, skipped = make_questions(clip, ["object_direction"], 0, teacher_labels={"object_direction": "Left"})
    assert skipped == {"object_direction": "no_dynamic_landmark"}
    _, skipped = make_questions(clip, tasks, 0)
    assert set(skipped.values()) == {"no_geometry: no teacher labelled this plain video"}
    with pytest.raises(ValueError, match="'Zoom In' for camera_motion is not one of"):
        make_teacher_question(clip, "camera_motion", "Zoom In", 0, 0)
    with pytest.raises(ValueError, match="needs the subject"):
        make_teacher_question(clip, "object_speed", "It does not move", 0, 0)


def test_teacher_classes_match_the_world_question_options():
    from thinker4d.data.questions import TEACHER_LABEL_CLASSES
    from thinker4d.world import CAMERA_MOTIONS, ask, render_clip

    assert set(TEACHER_LABEL_CLASSES["camera_motion"]) == set(CAMERA_MOTIONS) | {"Stay"}
    found = {}
    for seed in range(40):
        clip = render_clip(seed, num_frames=8, size=64)
        for task in ("object_direction", "object_distance", "object_speed"):
            if task not in found:
                q = ask(clip, task, rng=0)
                if q is not None:
                    found[task] = sorted(q["options"])
        if len(found) == 3:
            break
    assert found == {t: sorted(TEACHER_LABEL_CLASSES[t]) for t in found} and len(found) == 3
