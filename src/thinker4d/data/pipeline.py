"""The synthesis runner: clips -> landmarks -> masks -> questions -> overlays -> CoT -> validation -> rows
(https://huggingface.co/papers/2605.05997, §3.1).

```python
>>> from thinker4d.data.pipeline import SynthesisConfig, run_synthesis
>>> report = run_synthesis(SynthesisConfig(world_num_clips=8), "out/cot", resume=True)  # doctest: +SKIP
>>> report["kept"], report["complete"]                                                 # doctest: +SKIP
```

What differs from the paper (docs/paper_differences.md, section 10):

1. One resumable runner instead of a shell loop restarting a 100-video script: clips are processed in batches, each
   finished clip is written atomically (see `thinker4d.data.writer`), a resumed run skips finished clips, and shards of
   a job array (`num_shards`, `shard_index`) are combined with `merge_outputs`. On one machine, `num_proc` worker
   processes share the clips through `datasets.Dataset.map(..., num_proc=N)`.
2. Every clip ends as rows or as recorded rejections with a reason (never a silent empty result); per-clip errors
   (bad video, missing annotation, wrong mask size, teacher failures) are listed in the report and the run continues.
   The settings are checked as a whole before anything is written; a run that keeps no row raises `SynthesisFailed`
   instead of marking an empty dataset complete, and a resumed run retries the candidates rejected for transient
   teacher failures (timeouts, 429, 5xx, transport errors).
3. Labels come from geometry (`label_source="geometry"`) wherever the clip has it; plain videos are labelled by the
   teacher's `labels_many` (one class of a fixed list per task, `label_source="teacher"`), and with the rule teacher,
   which cannot label them, they are skipped with a recorded reason. The validator checks the answer against the
   label either way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import writer
from .ingest import IngestError, Source, list_sources, load_source, sample_indices, shard_sources
from .overlays import make_overlays, select_key_frames
from .questions import DEFAULT_TASKS, make_questions, needs_teacher_labels, question_subjects
from .validate import validate_cot


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and bool(np.isfinite(v))


def _problems_message(title: str, problems: list[str]) -> str:
    return f"{title} ({len(problems)}; fix each and rerun):\n" + "\n".join(f"  - {p}" for p in problems)


def config_problems(values: dict) -> list[str]:
    """Every bad value among the `SynthesisConfig` fields in `values` (types, ranges, allowed values, and tasks that
    the configured frames can never support), one line per field naming it and saying what it must be; empty when all
    are valid. `SynthesisConfig` raises one `ValueError` listing them, so a bad setting is refused before a run
    writes anything."""
    from thinker4d.world import QUESTION_TASKS, TRAIN_SEED_LIMIT
    from thinker4d.world.camera import CAMERA_MOTIONS, canonical_motion
    from thinker4d.world.questions import unsupported_tasks

    out: list[str] = []
    get = values.get

    def bad(name: str, what: str) -> None:
        v = get(name)
        got = f"a string {v!r}" if isinstance(v, str) else f"{v!r} ({type(v).__name__})"
        out.append(f"{name} must be {what}, got {got}")

    def integer(name: str, lo: int, hi: int | None = None) -> bool:
        v = get(name)
        if _is_int(v) and v >= lo and (hi is None or v <= hi):
            return True
        bad(name, f"an integer {f'from {lo} to {hi}' if hi is not None else f'>= {lo}'}")
        return False

    def number(name: str, lo: float, hi: float | None = None, above: bool = False, optional: bool = False) -> bool:
        v = get(name)
        if optional and v is None:
            return True
        if _is_number(v) and (v > lo if above else v >= lo) and (hi is None or v <= hi):
            return True
        rng = f"> {lo}" if above else (f"from {lo} to {hi}" if hi is not None else f">= {lo}")
        bad(name, f"a number {rng}" + (" or null" if optional else ""))
        return False

    def choice(name: str, allowed: tuple) -> None:
        if get(name) not in allowed:
            bad(name, "one of " + ", ".join(repr(a) for a in allowed))

    def text(name: str, optional: bool = False) -> None:
        v = get(name)
        if not ((optional and v is None) or (isinstance(v, str) and v.strip())):
            bad(name, "a non-empty string" + (" or null" if optional else ""))

    def str_list(name: str, what: str) -> list | None:
        v = get(name)
        if isinstance(v, (list, tuple)) and all(isinstance(x, str) and x for x in v):
            return list(v)
        hint = f" (write [{v!r}] for one)" if isinstance(v, str) else ""
        bad(name, f"a list of {what}{hint}")
        return None

    counts_ok = integer("world_num_clips", 0) & integer("world_seed_start", 0)
    if counts_ok and get("world_num_clips") and get("world_seed_start") + get("world_num_clips") > TRAIN_SEED_LIMIT:
        first, n = get("world_seed_start"), get("world_num_clips")
        out.append(
            f"world_seed_start, world_num_clips: world seeds {first}..{first + n - 1} reach the held-out range "
            f"(>= {TRAIN_SEED_LIMIT}); training data must use smaller seeds"
        )
    world_frames_ok = integer("world_num_frames", 1)
    v = get("world_size")
    if not (_is_int(v) and 16 <= v <= 1024 and v % 2 == 0):
        bad("world_size", "an even integer from 16 to 1024 (pixels; mp4 needs even sizes)")
    world_fps_ok = number("world_fps", 0, above=True)
    motions = str_list("world_camera_motions", "camera-motion classes (empty: all)")
    if motions:
        unknown_motions = []
        for m in motions:
            try:
                canonical_motion(m)
            except ValueError:
                unknown_motions.append(m)
        if unknown_motions:
            bad(
                "world_camera_motions",
                f"camera-motion classes (unknown: {unknown_motions}; valid: {', '.join(CAMERA_MOTIONS)}, Stay)",
            )
        elif len(set(motions)) < 4 and "camera_motion" in (get("tasks") or ()):
            bad("world_camera_motions", "at least 4 distinct classes (camera questions have 4 options) or empty")
    str_list("clip_dirs", "glob patterns of clip folders")
    str_list("video_dirs", "folders of plain videos")
    fps_ok = number("fps", 0, above=True, optional=True)
    max_frames_ok = integer("max_frames", 2)
    integer("max_size", 16)
    tasks = get("tasks")
    if not isinstance(tasks, (list, tuple)):
        bad(
            "tasks",
            f"a list of tasks from {', '.join(QUESTION_TASKS)}"
            + (f" (write [{tasks!r}] for one)" if isinstance(tasks, str) else ""),
        )
        tasks = None
    elif not tasks or any(t not in QUESTION_TASKS for t in tasks):
        wrong = [t for t in tasks if t not in QUESTION_TASKS] or tasks
        out.append(f"tasks: Unknown or empty tasks {wrong!r}; give a non-empty list of {', '.join(QUESTION_TASKS)}")
        tasks = None
    if tasks and max_frames_ok:
        short = unsupported_tasks(tasks, get("max_frames"))
        for t, need in short.items():
            out.append(
                f"tasks, max_frames: {t} needs clips of >= {need} frames, but max_frames is {get('max_frames')}"
            )
        if get("world_num_clips") and counts_ok and world_frames_ok and world_fps_ok and fps_ok:
            n = len(sample_indices(get("world_num_frames"), get("world_fps"), get("fps"), get("max_frames")))
            for t, need in unsupported_tasks(tasks, n).items():
                if t not in short:
                    out.append(
                        f"tasks, world_num_frames: {t} needs clips of >= {need} frames, but the world clips have {n} "
                        f"(world_num_frames={get('world_num_frames')}, world_fps={get('world_fps')}, "
                        f"fps={get('fps')}); raise world_num_frames or leave {t} out of tasks"
                    )
    integer("camera_key_frames", 2, 8)
    integer("object_key_frames", 2, 8)
    number("overlay_alpha", 0.0, 1.0)
    color = get("overlay_color")
    if not (isinstance(color, (list, tuple)) and len(color) == 3 and all(_is_int(c) and 0 <= c <= 255 for c in color)):
        bad("overlay_color", "three integers 0-255 (RGB), e.g. [255, 0, 0]")
    integer("max_regenerations", 0)
    choice("image_format", ("jpeg", "png"))
    integer("jpeg_quality", 1, 100)
    choice("teacher", ("rule", "gemini"))
    choice("cot_style", ("full", "compact"))
    text("teacher_model")
    text("gemini_base_url", optional=True)
    integer("gemini_concurrency", 1)
    integer("gemini_max_retries", 0)
    number("gemini_timeout_s", 0, above=True)
    number("gemini_backoff_s", 0)
    integer("gemini_max_frames", 1)
    text("cache_dir", optional=True)
    choice("segmenter", ("ground_truth", "sam2"))
    text("sam2_model")
    integer("seed", 0)
    integer("batch_size", 1)
    integer("rows_per_shard", 1)
    info = get("sources_info")
    if not (isinstance(info, (list, tuple)) and all(isinstance(x, dict) for x in info)):
        bad("sources_info", "a list of {name, license, url} mappings")
    integer("num_proc", 1)
    return out


@dataclass
class SynthesisConfig:
    """Settings of one synthesis run (YAML keys are the field names).

    > Parameters that control the sources

    Args:
        world_num_clips (`int`, defaults to 0): synthetic clips (seeds `world_seed_start ...`; training seeds only).
        world_seed_start (`int`, defaults to 0)
        world_num_frames (`int`, defaults to 16), world_size (`int`, defaults to 128), world_fps (`float`, 8.0)
        world_camera_motions (`list[str]`): restrict the world's camera motion, and camera-question distractors, to
            these classes (default: all).
        clip_dirs (`list[str]`): glob patterns of clip folders (thinker4d world or SpatialVID annotation folders).
        video_dirs (`list[str]`): folders of plain videos (frames only; no geometry labels).
        fps (`float`, *optional*): target fps of the sampled frames (`None` keeps the source rate).
        max_frames (`int`, defaults to 16): most frames per clip.
        max_size (`int`, defaults to 512): longest side in pixels of the frames of clip folders and plain videos;
            larger frames are scaled down (aspect kept) while they are decoded, one at a time, and masks, depth and
            intrinsics follow, so ingest memory is bounded by `max_frames` and `max_size`, not by the input. World
            clips are rendered at `world_size`.

    > Parameters that control the questions and imagery

    Args:
        tasks (`list[str]`): question tasks (`thinker4d.world.QUESTION_TASKS`); default the paper's five types.
        camera_key_frames (`int`, defaults to 2): overlays for camera motion (boundary frames; +1 for combinations).
        object_key_frames (`int`, defaults to 4): overlays for object questions (2-8, first/last of the active span).
        overlay_alpha (`float`, defaults to 0.4), overlay_color (`list[int]`, defaults to red).
        max_regenerations (`int`, defaults to 3): CoT regenerations after a failed validation.
        image_format (`str`, `"jpeg"` or `"png"`), jpeg_quality (`int`, defaults to 90).

    > Parameters that control the teacher and segmenter

    Args:
        teacher (`str`): `"rule"` (offline) or `"gemini"`.
        cot_style (`str`): RuleTeacher CoT template, `"full"` (default) or `"compact"` (short, for tiny models).
        teacher_model, gemini_base_url, gemini_concurrency, gemini_max_retries, gemini_timeout_s, gemini_backoff_s,
        cache_dir: `GeminiTeacher` arguments (the key comes from `GEMINI_API_KEY` / `GOOGLE_API_KEY`).
        segmenter (`str`): `"ground_truth"` or `"sam2"`; sam2_model (`str`): checkpoint id/path or `"tiny-random"`.

    > Parameters that control the run

    Args:
        seed (`int`), batch_size (`int`, clips per batch; teacher calls of a batch run concurrently),
        rows_per_shard (`int`), sources_info (`list[dict]`): `[{name, license, url}]` for the card.
        num_proc (`int`, defaults to 1): worker processes for the local stages (`datasets.Dataset.map(...,
            num_proc=N)` over the sources; each worker has its own teacher and segmenter, and `gemini_concurrency` is
            split between them). The rows do not depend on it.
    """

    world_num_clips: int = field(default=0, metadata={"help": "number of synthetic world clips"})
    world_seed_start: int = field(default=0, metadata={"help": "first world seed (< 1_000_000)"})
    world_num_frames: int = field(default=16, metadata={"help": "frames rendered per world clip"})
    world_size: int = field(default=128, metadata={"help": "world clip height and width (even)"})
    world_fps: float = field(default=8.0, metadata={"help": "world clip frame rate"})
    world_camera_motions: list = field(
        default_factory=list, metadata={"help": "restrict world camera motion (and its distractors) to these classes"}
    )
    clip_dirs: list = field(default_factory=list, metadata={"help": "glob patterns of clip folders"})
    video_dirs: list = field(default_factory=list, metadata={"help": "folders of plain videos"})
    fps: float | None = field(default=None, metadata={"help": "target fps of sampled frames (None: source rate)"})
    max_frames: int = field(default=16, metadata={"help": "most frames per clip"})
    max_size: int = field(
        default=512, metadata={"help": "longest side (pixels) of frames decoded from clip folders and plain videos"}
    )
    tasks: list = field(default_factory=lambda: list(DEFAULT_TASKS), metadata={"help": "question tasks"})
    camera_key_frames: int = field(default=2, metadata={"help": "overlays per camera-motion question"})
    object_key_frames: int = field(default=4, metadata={"help": "overlays per object question (2-8)"})
    overlay_alpha: float = field(default=0.4, metadata={"help": "overlay opacity"})
    overlay_color: list = field(default_factory=lambda: [255, 0, 0], metadata={"help": "overlay RGB colour"})
    max_regenerations: int = field(default=3, metadata={"help": "CoT regenerations after a failed validation"})
    image_format: str = field(default="jpeg", metadata={"help": "jpeg or png"})
    jpeg_quality: int = field(default=90, metadata={"help": "JPEG quality"})
    teacher: str = field(default="rule", metadata={"help": "rule or gemini"})
    cot_style: str = field(default="full", metadata={"help": "RuleTeacher CoT: full or compact"})
    teacher_model: str = field(default="gemini-2.5-flash", metadata={"help": "Gemini model name"})
    gemini_base_url: str | None = field(default=None, metadata={"help": "API base URL (fake server in tests)"})
    gemini_concurrency: int = field(default=8, metadata={"help": "Gemini requests in flight"})
    gemini_max_retries: int = field(default=5, metadata={"help": "retries per Gemini request"})
    gemini_timeout_s: float = field(default=120.0, metadata={"help": "per-attempt timeout (s)"})
    gemini_backoff_s: float = field(default=1.0, metadata={"help": "first retry backoff (s)"})
    gemini_max_frames: int = field(default=8, metadata={"help": "video frames sent per Gemini request"})
    cache_dir: str | None = field(
        default=None, metadata={"help": "Gemini response cache (default <output>/.work/cache)"}
    )
    segmenter: str = field(default="ground_truth", metadata={"help": "ground_truth or sam2"})
    sam2_model: str = field(default="facebook/sam2.1-hiera-tiny", metadata={"help": "SAM2 checkpoint or tiny-random"})
    seed: int = field(default=0, metadata={"help": "run seed (question randomness)"})
    batch_size: int = field(default=16, metadata={"help": "clips per batch"})
    rows_per_shard: int = field(default=2000, metadata={"help": "rows per output parquet shard"})
    sources_info: list = field(default_factory=list, metadata={"help": "[{name, license, url}] for the card"})
    num_proc: int = field(default=1, metadata={"help": "worker processes for the local stages (rows do not change)"})

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise one `ValueError` listing every bad field (see `config_problems`)."""
        problems = config_problems({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        if problems:
            raise ValueError(_problems_message("Invalid synthesis settings", problems))

    @classmethod
    def from_yaml(cls, path, **overrides) -> SynthesisConfig:
        """Read a YAML file of field names; `overrides` win. Unknown keys and bad values are reported together, in
        one error naming the file and every bad field."""
        import yaml

        data = yaml.safe_load(Path(path).read_text())
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ValueError(
                f"{path}: expected a mapping of synthesis settings (key: value lines), got a {type(data).__name__}."
            )
        data.update({k: v for k, v in overrides.items() if v is not None})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields), key=str)
        problems = []
        if unknown:
            problems.append(f"unknown synthesis settings {unknown}; valid keys: {', '.join(sorted(fields))}")
        values = {n: f.default_factory() if f.default is dataclasses.MISSING else f.default for n, f in fields.items()}
        values.update({k: v for k, v in data.items() if k in fields})
        problems += config_problems(values)
        if problems:
            raise ValueError(_problems_message(f"{path}: invalid synthesis settings", problems))
        return cls(**{k: v for k, v in data.items() if k in fields})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """Hash of the settings that change rows (not batch size, shard size, cache, concurrency or processes)."""
        ignore = {
            "batch_size",
            "rows_per_shard",
            "cache_dir",
            "gemini_concurrency",
            "gemini_timeout_s",
            "sources_info",
            "num_proc",
        }
        d = {k: v for k, v in self.to_dict().items() if k not in ignore}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


class SynthesisFailed(RuntimeError):
    """A run whose every candidate was rejected: nothing is assembled and `COMPLETE` is not written. The message
    summarizes the rejections and says what to do; `report` holds the statistics (`retryable` counts the candidates a
    `resume=True` rerun will try again)."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


def _retryable(rejected: dict) -> int:
    from .teacher import is_transient_rejection

    return sum(n for reasons in rejected.values() for r, n in reasons.items() if is_transient_rejection(r))


def _failure_message(out: Path, summary: dict) -> str:
    rejected = ", ".join(
        f"{stage}/{reason}: {n}" for stage, rs in summary["rejected"].items() for reason, n in rs.items()
    )
    lines = [
        f"{out}: all {summary['candidates']} candidates of {summary['clips']} clips were rejected, so no dataset was "
        f"written (no {writer.COMPLETE} marker). Rejections: {rejected}."
    ]
    for e in summary["errors"][:3]:
        lines.append(f"  clip {e.get('clip_id')} at {e.get('stage')}: {e.get('message')}")
    if len(summary["errors"]) > 3:
        lines.append(f"  ... and {len(summary['errors']) - 3} more clip errors")
    if summary["retryable"]:
        lines.append(
            f"{summary['retryable']} of them failed for transient reasons (teacher timeouts, transport errors, HTTP "
            "429/5xx): check that the teacher endpoint is reachable (gemini_base_url, network, proxy, quota), then "
            "rerun with --resume (resume=True) to retry them."
        )
    else:
        lines.append(
            "None of these reasons is transient, so a rerun would reject them again: fix the inputs or settings they "
            "name (docs/synthesis.md lists the reasons) and write to a new output folder."
        )
    return "\n".join(lines)


def build_teacher(cfg: SynthesisConfig, cache_dir: str | None = None):
    from .teacher import GeminiTeacher, RuleTeacher

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
    from .segmentation import GroundTruthSegmenter, Sam2Segmenter

    if cfg.segmenter == "ground_truth":
        return GroundTruthSegmenter()
    if cfg.sam2_model == "tiny-random":
        return Sam2Segmenter.tiny_random()
    return Sam2Segmenter(cfg.sam2_model)


# ---------------------------------------------------------------------------------------------- per-clip stages


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


# ---------------------------------------------------------------------------------------------- the runner


def _pipeline_info(cfg: SynthesisConfig, teacher, segmenter) -> dict:
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


def _default_sources(cfg: SynthesisConfig) -> list:
    out = list(cfg.sources_info)
    if cfg.world_num_clips and not any(s.get("name") == "thinker4d synthetic world" for s in out):
        out.append(
            {
                "name": "thinker4d synthetic world",
                "license": "apache-2.0",
                "url": "https://huggingface.co/papers/2605.05997",
            }
        )
    return out


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


# Worker processes of a `num_proc > 1` run must not outlive it: after a SIGKILL of the run, the pool's workers would
# go on writing clip files (and then wait forever) while a resumed run works on the same folder. While `run_synthesis`
# maps over its workers, every process it forks (the pool's workers and the queue manager that `datasets` starts)
# asks the kernel for SIGKILL when its parent dies (Linux `PR_SET_PDEATHSIG`; elsewhere this is skipped).
_FORK_PARENT: int | None = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    global _FORK_PARENT
    parent, _FORK_PARENT = _FORK_PARENT, None  # only the run's direct children, not their own children
    if parent is None or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no usable libc: the workers may outlive a killed run
        return
    if os.getppid() != parent:  # the run died before prctl took effect
        os._exit(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_die_with_parent)


class _MapWorker:
    """What `datasets.Dataset.map(..., batched=True, with_rank=True, num_proc=N)` calls in each worker process: one
    batch of sources (columns `index`, `kind`, `ref`) -> its clip result files, and one summary row (clips, timings,
    the worker's cumulative teacher usage, the pipeline info). The teacher and segmenter are built once per process,
    on the first batch; `gemini_concurrency` is split between the `num_proc` workers, so the requests in flight stay
    within the configured total."""

    def __init__(self, config: dict, clips_dir: str, cache_dir: str, num_proc: int, teacher=None, segmenter=None):
        self.config, self.clips_dir, self.cache_dir, self.num_proc = config, clips_dir, cache_dir, num_proc
        self.teacher, self.segmenter = teacher, segmenter
        self._state = None  # (config, teacher, segmenter, pipeline info) of this process

    def _setup(self, rank: int):
        cfg = SynthesisConfig(**self.config)
        total = cfg.gemini_concurrency
        share = max(1, total // self.num_proc + (rank % self.num_proc < total % self.num_proc))
        cfg = dataclasses.replace(cfg, gemini_concurrency=share)
        teacher = self.teacher or build_teacher(cfg, cache_dir=self.cache_dir)
        segmenter = self.segmenter or build_segmenter(cfg)
        if "torch" in sys.modules:  # e.g. SAM2: the workers share the cores instead of each taking all of them
            sys.modules["torch"].set_num_threads(max(1, (os.cpu_count() or 1) // self.num_proc))
        return cfg, teacher, segmenter, json.dumps(_pipeline_info(cfg, teacher, segmenter), default=_json_default)

    def __call__(self, batch: dict, rank: int) -> dict:
        if self._state is None:
            self._state = self._setup(rank or 0)
        cfg, teacher, segmenter, info = self._state
        sources = [Source(int(i), k, r) for i, k, r in zip(batch["index"], batch["kind"], batch["ref"])]
        timings: Counter = Counter()
        works = _process_and_write(sources, cfg, teacher, segmenter, Path(self.clips_dir), timings=timings)
        return {
            "rank": [rank or 0],
            "clips": [len(works)],
            "timings": [json.dumps(timings)],
            "teacher_usage": [json.dumps(teacher.stats(), default=str)],
            "pipeline": [info],
        }


def _sum_usage(per_worker: list[dict]) -> dict:
    """Teacher usage of several workers: numbers summed, other fields (teacher, model) from the first."""
    out: dict = {}
    for usage in per_worker:
        for k, v in usage.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[k] = out.get(k, 0) + v
            else:
                out.setdefault(k, v)
    if "estimated_cost_usd" in out:
        out["estimated_cost_usd"] = round(out["estimated_cost_usd"], 6)
    return {**out, "workers": len(per_worker)}


def _map_in_workers(todo, config, clips_dir, cache_dir, num_proc, teacher, segmenter, progress, timings) -> tuple:
    """Process `todo` in `num_proc` worker processes through `datasets.Dataset.map`; returns (teacher usage summed
    over the workers, pipeline info)."""
    import pickle

    import datasets

    global _FORK_PARENT
    for name, obj in (("teacher", teacher), ("segmenter", segmenter)):
        if obj is not None:
            try:
                pickle.dumps(obj)
            except Exception as e:
                raise ValueError(
                    f"num_proc={num_proc} sends the {name} you passed ({type(obj).__name__}) to each worker process, "
                    f"but it cannot be pickled ({type(e).__name__}: {e}); pass num_proc=1, or leave {name}=None so "
                    "each worker builds its own from the config."
                ) from e
    table = datasets.Dataset.from_dict(
        {"index": [s.index for s in todo], "kind": [s.kind for s in todo], "ref": [s.ref for s in todo]}
    )
    worker = _MapWorker(config.to_dict(), str(clips_dir), cache_dir, num_proc, teacher, segmenter)
    bars_were_on = datasets.is_progress_bar_enabled()
    (datasets.enable_progress_bars if progress else datasets.disable_progress_bars)()
    _FORK_PARENT = os.getpid()
    try:
        result = table.map(
            worker,
            batched=True,
            batch_size=config.batch_size,
            with_rank=True,
            num_proc=num_proc,
            remove_columns=table.column_names,
            keep_in_memory=True,
            load_from_cache_file=False,
            new_fingerprint=uuid.uuid4().hex,  # never reuse a cached map: the clip files are the real output
            desc="synthesize clips",
        )
    finally:
        _FORK_PARENT = None
        (datasets.enable_progress_bars if bars_were_on else datasets.disable_progress_bars)()
    last_usage: dict = {}
    for row in result:
        for k, v in json.loads(row["timings"]).items():
            timings[k] += v
        last_usage[row["rank"]] = json.loads(row["teacher_usage"])  # cumulative per worker: keep its last
    return _sum_usage([last_usage[r] for r in sorted(last_usage)]), json.loads(result[0]["pipeline"])


def run_synthesis(
    config: SynthesisConfig,
    output_dir,
    resume: bool = False,
    num_shards: int = 1,
    shard_index: int = 0,
    teacher=None,
    segmenter=None,
    progress: bool = True,
) -> dict:
    """Run (or resume) the pipeline into `output_dir`; returns the report (statistics, errors, timings).

    Args:
        config (`SynthesisConfig`): the settings (`config.num_proc` worker processes).
        output_dir (`str` or `Path`): the dataset folder (`data/`, `README.md`, `synthesis_stats.json`, `COMPLETE`;
            work files under `.work/`).
        resume (`bool`): continue a run in `output_dir` (finished clips are kept). Without it, a non-empty
            `output_dir` is an error.
        num_shards / shard_index (`int`): process only `sources[shard_index::num_shards]`.
        teacher / segmenter: override the ones the config names (e.g. an already-built SAM2). With `num_proc > 1`
            each worker gets a pickled copy.
        progress (`bool`): tqdm bars per stage (with `num_proc > 1`: one bar of finished clips over all workers).

    Raises:
        FileExistsError: when `output_dir` holds a run and `resume` is False.
        ValueError: when resuming a run made with different row-changing settings, or when `num_proc > 1` and the
            `teacher`/`segmenter` passed cannot be pickled.
    """
    from tqdm.auto import tqdm

    from .teacher import is_transient_rejection

    config.validate()  # again: the fields may have been changed after construction
    all_sources = list_sources(config)  # bad paths are refused before anything is written
    if not all_sources:
        raise ValueError(
            "The settings name no sources: set world_num_clips > 0, clip_dirs (glob patterns of clip folders) or "
            "video_dirs (folders of videos), or check that the clip_dirs patterns match folders."
        )
    sources = shard_sources(all_sources, num_shards, shard_index)
    out = Path(output_dir)
    work_dir = out / writer.WORK
    clips_dir = work_dir / writer.CLIPS
    if out.exists() and any(out.iterdir()) and not resume:
        raise FileExistsError(f"{out} is not empty; pass resume=True (--resume) to continue it, or pick a new folder.")
    run_info = {"fingerprint": config.fingerprint(), "num_shards": num_shards, "shard_index": shard_index}
    info_path = work_dir / "run.json"
    if info_path.is_file():
        old = json.loads(info_path.read_text())
        if old != run_info:
            raise ValueError(
                f"{out} was started with different settings ({old}) than now ({run_info}); use a new output folder."
            )
    if resume:
        writer.remove_stale_temporaries(out)
    clips_dir.mkdir(parents=True, exist_ok=True)
    if not info_path.is_file():
        writer._atomic_write_bytes(info_path, json.dumps(run_info).encode())
        writer._atomic_write_bytes(work_dir / "config.json", json.dumps(config.to_dict(), indent=1).encode())

    t0 = time.perf_counter()
    if resume and writer.is_complete(out):
        stats = json.loads((out / "synthesis_stats.json").read_text())
        if not _retryable(stats["rejected"]):
            return {**stats, "complete": True, "output_dir": str(out), "resumed_complete": True, "retryable": 0}

    done = writer.done_keys(clips_dir)
    if resume:  # clips rejected for transient teacher failures (timeouts, 429, 5xx) are done again
        done -= writer.keys_to_retry(clips_dir, done & {s.key for s in sources}, is_transient_rejection)
    todo = [s for s in sources if s.key not in done]
    timings: Counter = Counter()
    num_proc = min(config.num_proc, len(todo))
    if num_proc > 1:
        teacher_stats, pipeline = _map_in_workers(
            todo, config, clips_dir, str(work_dir / "cache"), num_proc, teacher, segmenter, progress, timings
        )
    else:
        num_proc = 1
        teacher = teacher or build_teacher(config, cache_dir=str(work_dir / "cache"))
        segmenter = segmenter or build_segmenter(config)
        stages = ("ingest", "landmarks", "labels", "masks+overlays", "cot+validate", "write")
        bars = {s: tqdm(total=len(todo), desc=f"{s:>15}", disable=not progress, leave=False) for s in stages}
        try:
            for start in range(0, len(todo), config.batch_size):
                _process_and_write(
                    todo[start : start + config.batch_size], config, teacher, segmenter, clips_dir, bars, timings
                )
        finally:
            for b in bars.values():
                b.close()
            teacher_stats = teacher.stats()
            if hasattr(teacher, "close"):
                teacher.close()
        pipeline = json.loads(json.dumps(_pipeline_info(config, teacher, segmenter), default=_json_default))

    t = time.perf_counter()
    files = [clips_dir / f"{s.key}.parquet" for s in sources]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise RuntimeError(
            f"{len(missing)} clip results are missing after the run ({missing[:3]}); rerun with --resume."
        )
    summary = writer.summarize([writer.read_clip_record(f) for f in files], Counter())
    summary["retryable"] = _retryable(summary["rejected"])
    if summary["candidates"] and not summary["kept"]:
        (out / writer.COMPLETE).unlink(missing_ok=True)
        report = {**summary, "complete": False, "output_dir": str(out), "teacher_usage": teacher_stats}
        raise SynthesisFailed(_failure_message(out, summary), report)
    stats = writer.assemble(out, files, pipeline, _default_sources(config), config.rows_per_shard)
    timings["assemble"] += time.perf_counter() - t
    return {
        **stats,
        "retryable": summary["retryable"],
        "complete": True,
        "output_dir": str(out),
        "processed_now": len(todo),
        "skipped_done": len(sources) - len(todo),
        "num_proc": num_proc,
        "teacher_usage": teacher_stats,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "wall_s": round(time.perf_counter() - t0, 3),
    }


def merge_outputs(shard_dirs, output_dir) -> dict:
    """Combine the outputs of `--num-shards N --shard-index i` runs into one dataset in `output_dir`.

    Every shard must be complete and made with the same settings; together they must cover every source exactly once.
    The result equals a single unsharded run (rows in global source order).

    Raises:
        ValueError: naming the shard that is incomplete, has other settings, or when sources are missing/duplicated.
    """
    shard_dirs = [Path(d) for d in shard_dirs]
    if not shard_dirs:
        raise ValueError("merge needs at least one shard folder.")
    infos, config = [], None
    for d in shard_dirs:
        if not writer.is_complete(d):
            raise ValueError(f"Shard {d} is not complete (no COMPLETE marker); finish it with --resume first.")
        infos.append(json.loads((d / writer.WORK / "run.json").read_text()))
        cfg = json.loads((d / writer.WORK / "config.json").read_text())
        if config is None:
            config = cfg
    fps = {i["fingerprint"] for i in infos}
    if len(fps) != 1:
        raise ValueError(f"Shards were made with different settings (fingerprints {sorted(fps)}); cannot merge.")
    cfg = SynthesisConfig(**config)
    sources = list_sources(cfg)
    by_key = {}
    for d in shard_dirs:
        for key in writer.done_keys(d / writer.WORK / writer.CLIPS):
            if key in by_key:
                raise ValueError(f"Clip {key} appears in both {by_key[key].parent.parent.parent} and {d}.")
            by_key[key] = d / writer.WORK / writer.CLIPS / f"{key}.parquet"
    missing = [s.key for s in sources if s.key not in by_key]
    if missing:
        raise ValueError(
            f"{len(missing)} sources have no result in the given shards (e.g. {missing[:3]}); pass every shard folder."
        )
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pipeline = json.loads((shard_dirs[0] / "synthesis_stats.json").read_text())["pipeline"]
    stats = writer.assemble(out, [by_key[s.key] for s in sources], pipeline, _default_sources(cfg), cfg.rows_per_shard)
    return {**stats, "complete": True, "output_dir": str(out), "merged_shards": len(shard_dirs)}


__all__ = [
    "SynthesisConfig",
    "SynthesisFailed",
    "build_requests",
    "config_problems",
    "label_teacher",
    "merge_outputs",
    "process_batch",
    "run_synthesis",
]
