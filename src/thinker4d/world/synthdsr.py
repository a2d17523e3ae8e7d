"""SynthDSR: a held-out multiple-choice benchmark rendered from the synthetic world
(https://huggingface.co/papers/2605.05997).

What differs from the paper:

1. The paper evaluates on DSR-Bench and Dyn-Bench (real videos, human/teacher labels). SynthDSR is an offline
   stand-in with the same kinds of questions (camera motion, object direction, distance, speed, boxes) whose labels
   are computed from exact geometry.
2. Its clips come from seeds >= `SYNTHDSR_SEED_START`, which the training-side API refuses, so no SynthDSR clip can
   appear in training data made with `thinker4d.world`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from .questions import QUESTION_TASKS, ask, unsupported_tasks
from .render import render_spec
from .scene import SYNTHDSR_SEED_START, sample_clip_spec, validate_size


SEED_BLOCK = 100_000  # clip seeds of build seed s: SYNTHDSR_SEED_START + s * SEED_BLOCK + i
MAX_BUILD_SEED = 9000
MAX_QUESTIONS_PER_CLIP = 3


def synthdsr_clip_seed(seed: int, i: int) -> int:
    """The held-out clip seed of clip `i` of a SynthDSR build with seed `seed`."""
    if not 0 <= int(seed) < MAX_BUILD_SEED:
        raise ValueError(f"SynthDSR seed must be in [0, {MAX_BUILD_SEED}), got {seed}.")
    if not 0 <= int(i) < SEED_BLOCK:
        raise ValueError(f"SynthDSR clip index must be in [0, {SEED_BLOCK}), got {i}.")
    return SYNTHDSR_SEED_START + int(seed) * SEED_BLOCK + int(i)


def _jpeg(frame: np.ndarray, quality: int) -> dict:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return {"bytes": buf.getvalue(), "path": None}


def build_synthdsr(
    output_dir,
    num_questions: int = 500,
    seed: int = 0,
    num_frames: int = 16,
    size: int = 128,
    fps: float = 8.0,
    tasks=None,
    jpeg_quality: int = 90,
    progress: bool = True,
    camera_motions=None,
):
    """Render held-out clips and write SynthDSR as parquet under `output_dir/data/` (split `test`).

    Tasks are filled round-robin to equal quotas, the correct option cycles over the letters within each task, and the
    rows are shuffled with `seed`. Columns: `id, clip_id, frames, fps, task, question, options, answer, label_source,
    meta` (the evaluation rows of docs/design.md).

    Args:
        output_dir (`str` or `Path`): where to write; `datasets.load_dataset(output_dir)["test"]` reads it back.
        num_questions (`int`): total number of questions (default 500).
        seed (`int`): build seed, 0 to 8999; clip seeds are `synthdsr_clip_seed(seed, i)`.
        num_frames, size, fps: clip size.
        tasks (`list[str]`, *optional*): subset of `QUESTION_TASKS`. A task that needs more frames than `num_frames`
            (`thinker4d.world.questions.task_min_frames`, e.g. 5 for `object_motion_state`) is refused up front.
        jpeg_quality (`int`): frames are stored as JPEG bytes.
        camera_motions (`list[str]`, *optional*): restrict the clips' camera motion (and the camera-question
            distractors) to these classes; default all classes. Recorded in the card.

    Returns:
        `datasets.Dataset`: the rows written.

    Example:

    ```python
    >>> from thinker4d.world import build_synthdsr
    >>> ds = build_synthdsr("synthdsr", num_questions=18, size=64, num_frames=8, progress=False)
    >>> ds.column_names[:4]
    ['id', 'clip_id', 'frames', 'fps']
    ```
    """
    import datasets
    from tqdm.auto import tqdm

    from thinker4d.prompting import render_options

    tasks = list(QUESTION_TASKS if tasks is None else tasks)
    unknown = [t for t in tasks if t not in QUESTION_TASKS]
    if unknown or not tasks:
        raise ValueError(f"Unknown SynthDSR tasks {unknown or tasks!r}; choose from: {', '.join(QUESTION_TASKS)}.")
    if num_questions < 1:
        raise ValueError(f"num_questions must be at least 1, got {num_questions}.")
    validate_size(num_frames, size, size, fps)
    too_short = unsupported_tasks(tasks, num_frames)
    if too_short:  # such a task never gets a question: refuse now rather than after rendering thousands of clips
        need = max(too_short.values())
        kept = [t for t in tasks if t not in too_short]
        raise ValueError(
            f"SynthDSR cannot ask {', '.join(f'{t} (needs >= {n} frames)' for t, n in too_short.items())} on "
            f"{num_frames}-frame clips; pass num_frames >= {need} (--num-frames {need})"
            + (f" or leave it out of tasks (--tasks {' '.join(kept)})." if kept else ".")
        )
    quota = {t: num_questions // len(tasks) + (k < num_questions % len(tasks)) for k, t in enumerate(tasks)}
    count = dict.fromkeys(tasks, 0)
    rows = []
    bar = tqdm(total=num_questions, desc="SynthDSR", disable=not progress)
    i = 0
    max_clips = 50 * num_questions + 100
    while len(rows) < num_questions:
        if i >= max_clips:
            missing = {t: quota[t] - count[t] for t in tasks if count[t] < quota[t]}
            raise RuntimeError(f"Could not fill SynthDSR quotas after {i} clips; still missing {missing}.")
        clip_seed = synthdsr_clip_seed(seed, i)
        spec = sample_clip_spec(
            clip_seed, num_frames=num_frames, size=size, fps=fps, split="synthdsr", camera_motions=camera_motions
        )
        clip = render_spec(spec)
        frames = None
        asked = 0
        order = [tasks[(i + k) % len(tasks)] for k in range(len(tasks))]  # rotate which task goes first
        for k, task in enumerate(order):
            if count[task] >= quota[task] or asked >= MAX_QUESTIONS_PER_CLIP:
                continue
            q = ask(
                clip,
                task,
                rng=np.random.default_rng([clip_seed, k]),
                answer_index=count[task],
                camera_motions=camera_motions,
            )
            if q is None:
                continue
            if frames is None:
                frames = [_jpeg(f, jpeg_quality) for f in clip.frames]
            meta = {
                "label": q["label"],
                "answer_text": q["answer_text"],
                "clip_seed": clip_seed,
                "camera_motion": clip.camera_motion,
                "objects": clip.object_names,
                "generator": "thinker4d.world",
                "benchmark": "synthdsr",
                "build_seed": seed,
            }
            rows.append(
                {
                    "id": f"{clip.clip_id}/{task}/{count[task]}",
                    "clip_id": clip.clip_id,
                    "frames": frames,
                    "fps": float(clip.fps),
                    "task": task,
                    "question": q["question"],
                    "options": render_options(q["options"]),
                    "answer": q["answer"],
                    "label_source": q["label_source"],
                    "meta": json.dumps(meta),
                }
            )
            count[task] += 1
            asked += 1
            bar.update(1)
        i += 1
    bar.close()
    order = np.random.default_rng([seed, 7]).permutation(len(rows))
    rows = [rows[j] for j in order]
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "clip_id": datasets.Value("string"),
            "frames": datasets.Sequence(datasets.Image()),
            "fps": datasets.Value("float32"),
            "task": datasets.Value("string"),
            "question": datasets.Value("string"),
            "options": datasets.Sequence(datasets.Value("string")),
            "answer": datasets.Value("string"),
            "label_source": datasets.Value("string"),
            "meta": datasets.Value("string"),
        }
    )
    ds = datasets.Dataset.from_list(rows, features=features)
    out = Path(output_dir)
    (out / "data").mkdir(parents=True, exist_ok=True)
    ds.to_parquet(str(out / "data" / "test-00000-of-00001.parquet"))
    (out / "README.md").write_text(_card(num_questions, seed, num_frames, size, fps, count, i))
    return ds


def _card(n, seed, num_frames, size, fps, count, num_clips) -> str:
    lines = "\n".join(f"| `{t}` | {c} |" for t, c in count.items())
    return f"""---
configs:
- config_name: default
  data_files:
  - split: test
    path: data/test-*.parquet
---
# SynthDSR (thinker4d synthetic world, held out)

{n} multiple-choice questions over {num_clips} rendered clips ({num_frames} frames, {size}x{size}, {fps} fps),
build seed {seed}; clip seeds start at {SYNTHDSR_SEED_START} and are never used for training. Labels are computed from
exact geometry (`label_source = geometry`); `meta` holds the structured label. Made with `thinker4d synthdsr`.

| task | questions |
|---|---|
{lines}
"""
