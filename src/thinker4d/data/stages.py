"""The per-clip stages of a synthesis run: one batch of sources -> finished clips (rows or recorded rejections)
(https://huggingface.co/papers/2605.05997, §3.1).

`process_batch(sources, cfg, teacher, segmenter)` runs, over a batch of clips: ingest, landmarks
(`teacher.landmarks_many`), teacher labels for plain videos (`label_teacher`), questions, masks and overlays
(`build_requests`), chain of thought (`teacher.cot_many`) with validation and regeneration, and the rows (`make_row`).
The teacher calls of a batch run concurrently. `thinker4d.data.pipeline.run_synthesis` runs it over every batch and
writes each finished clip.

```python
>>> from thinker4d.data.config import SynthesisConfig
>>> from thinker4d.data.ingest import list_sources
>>> from thinker4d.data.stages import build_segmenter, build_teacher, process_batch
>>> cfg = SynthesisConfig(world_num_clips=2, world_num_frames=8, world_size=64)
>>> works = process_batch(list_sources(cfg), cfg, build_teacher(cfg), build_segmenter(cfg))  # doctest: +SKIP
>>> [len(w.rows) for w in works], works[0].record()["rejected"]  # doctest: +SKIP
```

What differs from the paper (docs/paper_differences.md, section 10):

1. Every clip ends as rows or as recorded rejections with a reason (never a silent empty result); per-clip errors
   (bad video, missing annotation, wrong mask size, teacher failures) are recorded with the clip and the run continues.
2. Labels come from geometry (`label_source="geometry"`) wherever the clip has it; plain videos are labelled by the
   teacher's `labels_many` (one class of a fixed list per task, `label_source="teacher"`), and with the rule teacher,
   which cannot label them, they are skipped with a recorded reason. The validator checks the answer against the
   label either way.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import writer
from .config import SynthesisConfig
from .ingest import IngestError, Source, load_source
from .overlays import make_overlays, select_key_frames
from .questions import make_questions, needs_teacher_labels, question_subjects
from .validate import validate_cot


def build_teacher(cfg: SynthesisConfig, cache_dir: str | None = None):
    """The teacher `cfg` names: a `RuleTeacher` (`cot_style`), or a `GeminiTeacher` with the `gemini_*` settings and
    its response cache in `cfg.cache_dir` (else `cache_dir`)."""
    from .gemini import GeminiTeacher
    from .teacher import RuleTeacher

    if cfg.teacher == "rule":
        return RuleTeacher(style=cfg.cot_style)
    return GeminiTeacher(
        model=cfg.teacher_model,
        base_url=cfg.gemini_base_url,
        concurrency=cfg.gemini_concurrency,
        max_retries=cfg.gemini_max_retries,
        timeout_s=cfg.gemini_timeout_s,
        backoff_s=cfg.gemini_backoff_s,
        cache_dir=cfg.cache_dir or cache_dir,
        max_frames=cfg.gemini_max_frames,
        seed=cfg.seed,
    )


def build_segmenter(cfg: SynthesisConfig):
    """The segmenter `cfg` names: `GroundTruthSegmenter`, or `Sam2Segmenter` loading `cfg.sam2_model`."""
    from .segmentation import GroundTruthSegmenter, Sam2Segmenter

    if cfg.segmenter == "ground_truth":
        return GroundTruthSegmenter()
    if cfg.sam2_model == "tiny-random":
        return Sam2Segmenter.tiny_random()
    return Sam2Segmenter(cfg.sam2_model)


@dataclass
class ClipWork:
    """Everything known about one clip while it moves through the stages."""

    source: Source
    clip: object = None
    clip_id: str = ""
    landmarks: dict = field(default_factory=dict)
    teacher_labels: dict = field(default_factory=dict)
    requests: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    rejected: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)
    candidates: int = 0
    frames_encoded: list | None = None

    def reject(self, stage: str, reason: str, n: int = 1) -> None:
        self.rejected.setdefault(stage, Counter())[reason] += n

    def fail(self, stage: str, message: str, reason: str) -> None:
        """A clip-level failure: every candidate still open is rejected at `stage` with `reason`."""
        self.errors.append({"stage": stage, "reason": reason, "message": message})
        open_ = self.candidates - sum(sum(c.values()) for c in self.rejected.values()) - len(self.rows)
        if open_ > 0:
            self.reject(stage, reason, open_)
        self.requests = []

    @property
    def failed(self) -> bool:
        return bool(self.errors)

    def record(self) -> dict:
        return {
            "clip_id": self.clip_id,
            "source": dataclasses.asdict(self.source),
            "candidates": self.candidates,
            "kept": len(self.rows),
            "rejected": {s: dict(c) for s, c in self.rejected.items()},
            "errors": self.errors,
        }


def build_requests(work: ClipWork, cfg: SynthesisConfig, segmenter) -> None:
    """Questions, mask tracks (with the consistency filter) and overlays for one clip -> CoT requests."""
    from .cot import mask_cues
    from .segmentation import check_track, mask_prompt

    clip = work.clip
    dyn = (work.landmarks.get("dynamic") or {}).get("name")
    questions, skipped = make_questions(
        clip,
        cfg.tasks,
        work.source.index,
        cfg.seed,
        dynamic=dyn,
        camera_motions=cfg.world_camera_motions or None,
        teacher_labels=work.teacher_labels,
    )
    for reason in skipped.values():
        work.reject("questions", reason)
    tracks: dict = {}

    def track_of(name: str, landmark: dict | None):
        if name not in tracks:
            lm = landmark or {"name": name, "role": "dynamic"}
            if "point" not in lm and "box" not in lm and clip.instance_ids is not None and name in clip.object_names:
                lm = {**lm, **(mask_prompt(clip.instance_ids == clip.object_names.index(name) + 1) or {})}
            masks = segmenter.segment(clip, lm)
            if masks.shape != clip.frames.shape[:3]:
                raise ValueError(
                    f"{segmenter.name} returned masks of shape {masks.shape} for {name!r}, expected "
                    f"{clip.frames.shape[:3]}."
                )
            tracks[name] = (masks, check_track(masks))
        return tracks[name]

    color = tuple(int(c) for c in cfg.overlay_color)
    for q in questions:
        subjects = question_subjects(q)
        if q["task"] == "camera_motion":
            lm = work.landmarks.get("static")
            if lm is None:
                work.reject("landmarks", "no_static_landmark")
                continue
            name, role, num = lm["name"], "static", cfg.camera_key_frames + (1 if " + " in q["answer_text"] else 0)
        else:
            if not subjects:
                work.reject("questions", "no_subject")
                continue
            name, role, num = subjects[0], "dynamic", cfg.object_key_frames
            lm = work.landmarks.get("dynamic") if dyn == name else None
        masks, reason = track_of(name, lm)
        if len(subjects) > 1:  # relation questions highlight both objects
            other, reason2 = track_of(subjects[1], None)
            masks, reason = masks | other, reason or reason2
        if reason is not None:
            work.reject("segmentation", reason)
            continue
        present = masks.reshape(len(masks), -1).sum(1) >= max(1, 0.001 * masks[0].size)
        if q["task"] == "object_bbox":  # the asked frame must be among the imagined ones
            present[q["label"]["frame"]] = True
        key = select_key_frames(present, num)
        if q["task"] == "object_bbox" and q["label"]["frame"] not in key:
            key = sorted(set(key[:-1] if len(key) > 2 else key) | {q["label"]["frame"]})
        if len(key) < 2:
            work.reject("overlays", "too_few_key_frames")
            continue
        overlays = make_overlays(clip.frames, masks, key, color, cfg.overlay_alpha)
        work.requests.append(
            {
                **q,
                "landmark": " and ".join(subjects) if len(subjects) > 1 else name,
                "role": role,
                "key_frames": key,
                "cues": mask_cues(masks, key),
                "overlays": overlays,
                "fps": float(clip.fps),
                "num_frames": clip.num_frames,
                "attempt": 0,
                "feedback": None,
            }
        )


def make_row(work: ClipWork, req: dict, cot: str, cfg: SynthesisConfig, teacher, segmenter) -> dict:
    from thinker4d.prompting import render_options

    clip = work.clip
    if work.frames_encoded is None:
        work.frames_encoded = [writer.encode_image(f, cfg.image_format, cfg.jpeg_quality) for f in clip.frames]
    n = sum(1 for r in work.rows if r["task"] == req["task"])
    meta = {
        "source": clip.meta.get("source"),
        "source_index": work.source.index,
        "seed": clip.meta.get("seed"),
        "teacher": teacher.name,
        "teacher_model": getattr(teacher, "model", None),
        "segmenter": segmenter.name,
        "landmark": req["landmark"],
        "landmark_role": req["role"],
        "key_frames": req["key_frames"],
        "answer_text": req["answer_text"],
        "label": req["label"],
        "cot_attempts": req["attempt"] + 1,
    }
    return {
        "id": f"{clip.clip_id}/{req['task']}/{n}",
        "clip_id": clip.clip_id,
        "frames": work.frames_encoded,
        "fps": float(clip.fps),
        "task": req["task"],
        "question": req["question"],
        "options": render_options(req["options"]),
        "answer": req["answer"],
        "cot": cot,
        "imagery": [writer.encode_image(o, cfg.image_format, cfg.jpeg_quality) for o in req["overlays"]],
        "label_source": req.get("label_source", "geometry"),
        "meta": json.dumps(meta, default=_json_default),
    }


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def label_teacher(works: list, cfg: SynthesisConfig, teacher) -> None:
    """Teacher labels for the plain videos of a batch (one `labels_many` call, so the requests run concurrently):
    sets `work.teacher_labels = {task: class or exception}` for every task. Object tasks are asked about the dynamic
    landmark the teacher chose. A teacher without `labels_many` labels nothing (every task is skipped with a
    `no_geometry` reason that says so)."""
    from .teacher import TeacherError

    pairs = [(w, task) for w in works if not w.failed and needs_teacher_labels(w.clip) for task in cfg.tasks]
    if not pairs:
        return
    requests = [
        {
            "clip": w.clip,
            "task": task,
            "landmark": None if task == "camera_motion" else (w.landmarks or {}).get("dynamic"),
        }
        for w, task in pairs
    ]
    labels_many = getattr(teacher, "labels_many", None)
    if labels_many is None:
        msg = f"teacher {getattr(teacher, 'name', type(teacher).__name__)!r} has no labels_many; use GeminiTeacher"
        results = [TeacherError("no_geometry", msg) for _ in requests]
    else:
        try:
            results = list(labels_many(requests))
        except Exception as e:  # a teacher bug fails these labels, not the run
            results = [e] * len(requests)
        if len(results) != len(requests):
            err = RuntimeError(f"labels_many returned {len(results)} results for {len(requests)} requests")
            results = [err] * len(requests)
    for (w, task), res in zip(pairs, results):
        w.teacher_labels[task] = res


def process_batch(
    sources: list[Source], cfg: SynthesisConfig, teacher, segmenter, bars=None, timings=None, loader=None
) -> list:
    """Run every stage over a batch of sources; returns one finished `ClipWork` per source (rows or rejections).

    `loader(source, cfg) -> Clip` replaces `ingest.load_source` (e.g. clips already in memory)."""
    loader = loader or load_source
    timings = timings if timings is not None else Counter()
    bars = bars or {}

    def tick(stage, n=1):
        if stage in bars:
            bars[stage].update(n)

    works = [ClipWork(source=s, clip_id=s.key.split("-", 1)[1], candidates=len(cfg.tasks)) for s in sources]
    t = time.perf_counter()
    for w in works:
        try:
            w.clip = loader(w.source, cfg)
            w.clip_id = w.clip.clip_id
        except IngestError as e:
            w.fail("ingest", str(e), "bad_input")
        tick("ingest")
    timings["ingest"] += time.perf_counter() - t

    t = time.perf_counter()
    live = [w for w in works if not w.failed]
    for w, res in zip(live, teacher.landmarks_many([w.clip for w in live]) if live else []):
        if isinstance(res, BaseException):
            w.fail("landmarks", f"{type(res).__name__}: {res}", f"teacher_{getattr(res, 'reason', 'error')}")
        else:
            w.landmarks = res
        tick("landmarks")
    timings["landmarks"] += time.perf_counter() - t

    t = time.perf_counter()
    label_teacher(works, cfg, teacher)
    for w in works:
        if not w.failed:
            tick("labels")
    timings["labels"] += time.perf_counter() - t

    t = time.perf_counter()
    for w in works:
        if w.failed:
            continue
        try:
            build_requests(w, cfg, segmenter)
        except Exception as e:
            w.fail("segmentation", f"{type(e).__name__}: {e}", "bad_masks")
        tick("masks+overlays")
    timings["masks_overlays_questions"] += time.perf_counter() - t

    t = time.perf_counter()
    pending = [(w, r) for w in works if not w.failed for r in w.requests]
    for attempt in range(cfg.max_regenerations + 1):
        if not pending:
            break
        t_teacher = time.perf_counter()
        results = teacher.cot_many([r for _, r in pending])
        timings["cot_teacher"] += time.perf_counter() - t_teacher
        retry = []
        for (w, r), res in zip(pending, results):
            if isinstance(res, BaseException):
                w.reject("cot", f"teacher_{getattr(res, 'reason', 'error')}")
                continue
            reason = validate_cot(res, r["options"], r["answer"], len(r["overlays"]))
            if reason is None:
                w.rows.append(make_row(w, r, res, cfg, teacher, segmenter))
            elif attempt < cfg.max_regenerations:
                retry.append((w, {**r, "attempt": attempt + 1, "feedback": reason}))
            else:
                w.reject("validate", reason)
        pending = retry
    for w in works:
        w.requests = []
        w.rows.sort(key=lambda r: r["id"])
        tick("cot+validate")
    timings["cot_validate_rows"] += time.perf_counter() - t
    return works


def _pipeline_info(cfg: SynthesisConfig, teacher, segmenter) -> dict:
    """The provenance of a run for its card and `synthesis_stats.json`: teacher, segmenter, row-changing settings."""
    info = {
        "teacher": teacher.name,
        "teacher_model": getattr(teacher, "model", None),
        "segmenter": segmenter.name,
        "config_fingerprint": cfg.fingerprint(),
    }
    if getattr(segmenter, "model_id", None):
        info["segmenter_model"] = segmenter.model_id
    keep = (
        "tasks",
        "fps",
        "max_frames",
        "max_size",
        "world_num_clips",
        "world_seed_start",
        "world_num_frames",
        "world_size",
        "camera_key_frames",
        "object_key_frames",
        "overlay_alpha",
        "max_regenerations",
        "image_format",
        "seed",
    )
    info.update({k: getattr(cfg, k) for k in keep})
    return info


def _process_and_write(sources, cfg, teacher, segmenter, clips_dir: Path, bars=None, timings=None) -> list:
    """`process_batch`, then each clip's result file (atomic); returns the finished `ClipWork`s."""
    timings = timings if timings is not None else Counter()
    works = process_batch(sources, cfg, teacher, segmenter, bars, timings)
    for w in works:
        t = time.perf_counter()
        writer.write_clip_result(clips_dir, w.source.key, w.rows, w.record())
        timings["write"] += time.perf_counter() - t
        if bars and "write" in bars:
            bars["write"].update(1)
    return works


__all__ = [
    "ClipWork",
    "build_requests",
    "build_segmenter",
    "build_teacher",
    "label_teacher",
    "make_row",
    "process_batch",
]
