"""Settings of a synthesis run: `SynthesisConfig` and the checks of its fields
(https://huggingface.co/papers/2605.05997, §3.1).

```python
>>> from thinker4d.data.config import SynthesisConfig
>>> cfg = SynthesisConfig.from_yaml("examples/synthesis/offline.yaml", num_proc=2)  # doctest: +SKIP
>>> SynthesisConfig(world_num_clips=8, batch_size="16")  # doctest: +SKIP
ValueError: Invalid synthesis settings (1; fix each and rerun):
  - batch_size must be an integer >= 1, got a string '16'
```

What differs from the paper (docs/paper_differences.md, section 10): the paper's scripts take their settings as
constants and command-line flags; here one dataclass holds every setting of a run (YAML keys are its field names), and
the settings are checked as a whole before a run writes anything: one error lists every bad field and says what it must
be, including tasks that the configured frames can never support.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from thinker4d.configfile import allowed_keys_hint, read_config
from thinker4d.errors import UserValueError

from .ingest import sample_indices
from .questions import DEFAULT_TASKS


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
    choice("cot_style", ("full", "compact", "imagery_only"))
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
        cot_style (`str`): RuleTeacher CoT template, `"full"` (default), `"compact"` (short, for tiny models) or
            `"imagery_only"` (the compact CoT without the text that states what the imagery shows; a probe).
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
    cot_style: str = field(default="full", metadata={"help": "RuleTeacher CoT: full, compact or imagery_only"})
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
        """Read a YAML (or JSON) file of field names; `overrides` that are not `None` win.

        Raises:
            UserFileNotFoundError: the file does not exist.
            UserValueError (a `ValueError`): the file is not YAML (naming the line) or not a mapping; or, in one error
                naming the file and every bad field, unknown keys (with the valid ones) and bad values.
        """
        data = read_config(path, what="synthesis setting")
        data.update({k: v for k, v in overrides.items() if v is not None})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        problems = []
        if unknown:
            hint = allowed_keys_hint(unknown, sorted(fields), "SynthesisConfig field")
            problems.append(f"unknown synthesis settings {unknown}; {hint}")
        values = {n: f.default_factory() if f.default is dataclasses.MISSING else f.default for n, f in fields.items()}
        values.update({k: v for k, v in data.items() if k in fields})
        problems += config_problems(values)
        if problems:
            raise UserValueError(_problems_message(f"{path}: invalid synthesis settings", problems))
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


__all__ = ["SynthesisConfig", "config_problems"]
