"""SynthDSR: a held-out multiple-choice benchmark rendered from the synthetic world
(https://huggingface.co/papers/2605.05997).

What differs from the paper:

1. The paper evaluates on DSR-Bench and Dyn-Bench (real videos, human/teacher labels). SynthDSR is an offline
   stand-in with the same kinds of questions (camera motion, object direction, distance, speed, boxes) whose labels
   are computed from exact geometry.
2. Its clips come from seeds >= `SYNTHDSR_SEED_START`, which the training-side API refuses, so no SynthDSR clip can
   appear in training data made with `thinker4d.world`.
3. Answers are balanced by construction: every answer class of a task has an equal quota, and a question whose class
   is full is not taken (the build reports how many candidates it saw and kept), so no option text is a better guess
   than chance.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from .questions import QUESTION_TASKS, answer_class, iter_questions, task_answer_classes, unsupported_tasks
from .render import render_spec
from .scene import SYNTHDSR_SEED_START, sample_clip_spec, validate_size


SEED_BLOCK = 100_000  # clip seeds of build seed s: SYNTHDSR_SEED_START + s * SEED_BLOCK + i
MAX_BUILD_SEED = 9000
MAX_QUESTIONS_PER_CLIP = 3
QUESTIONS_PER_TASK = 270  # default: a 95% interval at 50% accuracy is then within +-6 points (1.96 * 0.5 / sqrt(270))
BALANCE_TOLERANCE = 0.03  # a built task's majority-answer and "always answer X" rates stay within this of chance


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


def _validate(tasks, num_questions, num_frames, size, fps) -> list:
    tasks = list(QUESTION_TASKS if tasks is None else tasks)
    unknown = [t for t in tasks if t not in QUESTION_TASKS]
    if unknown or not tasks:
        raise ValueError(f"Unknown SynthDSR tasks {unknown or tasks!r}; choose from: {', '.join(QUESTION_TASKS)}.")
    if num_questions is not None and num_questions < 1:
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
    return tasks


def _split(total: int, keys) -> dict:
    """`total` shared as equally as possible over `keys` (the first ones get the remainder)."""
    keys = list(keys)
    return {k: total // len(keys) + (i < total % len(keys)) for i, k in enumerate(keys)}


def balanced_questions(
    num_questions: int | None = None,
    seed: int = 0,
    num_frames: int = 16,
    size: int = 128,
    fps: float = 8.0,
    tasks=None,
    camera_motions=None,
    stats: dict | None = None,
    progress: bool = False,
):
    """Yield `(clip, question)` for a SynthDSR build: the balanced selection that `build_synthdsr` writes.

    Each task gets an equal share of `num_questions` (default `QUESTIONS_PER_TASK` per task), and each of its answer
    classes (`thinker4d.world.questions.task_answer_classes`) an equal share of that. Clips are rendered from the
    build's held-out seeds one after the other; for each task that is not full, the clip's questions
    (`iter_questions`) are examined in order and the first whose answer class still has room is a candidate; of the
    candidates, at most `MAX_QUESTIONS_PER_CLIP` are kept per clip, those of the classes with the most room left
    first. The correct option's position cycles over the letters within each task.

    `stats` (a dict, filled in place): `clips` rendered, per task the questions `examined`, `kept` and `skipped`
    (examined but their class was full), and per task the kept count of each answer class (`answers`).

    Raises:
        RuntimeError: when the quotas are not filled after `50 * num_questions + 100` clips (a class these clip
            settings cannot produce); the message names the missing classes.
    """
    from tqdm.auto import tqdm

    tasks = _validate(tasks, num_questions, num_frames, size, fps)
    if num_questions is None:
        num_questions = QUESTIONS_PER_TASK * len(tasks)
    quota = _split(num_questions, tasks)
    class_quota = {}
    for t in tasks:
        classes = task_answer_classes(t, camera_motions)
        class_quota[t] = None if classes is None else _split(quota[t], classes)
    stats = {} if stats is None else stats
    stats.update(clips=0, examined=dict.fromkeys(tasks, 0), kept=dict.fromkeys(tasks, 0))
    stats["skipped"] = dict.fromkeys(tasks, 0)
    stats["answers"] = {t: dict.fromkeys(class_quota[t] or (), 0) for t in tasks}
    count = stats["kept"]
    bar = tqdm(total=num_questions, desc="SynthDSR", disable=not progress)
    i, total, max_clips = 0, 0, 50 * num_questions + 100
    while total < num_questions:
        if i >= max_clips:
            missing = {t: quota[t] - count[t] for t in tasks if count[t] < quota[t]}
            classes = {
                t: {c: q - stats["answers"][t][c] for c, q in class_quota[t].items() if stats["answers"][t][c] < q}
                for t in missing
                if class_quota[t]
            }
            raise RuntimeError(
                f"Could not fill SynthDSR quotas after {i} clips; still missing {missing} (answer classes: {classes}). "
                "These clip settings rarely or never produce those answers: use longer clips (--num-frames) or leave "
                "the task out (--tasks)."
            )
        clip_seed = synthdsr_clip_seed(seed, i)
        spec = sample_clip_spec(
            clip_seed, num_frames=num_frames, size=size, fps=fps, split="synthdsr", camera_motions=camera_motions
        )
        clip = render_spec(spec)
        candidates = []
        order = [tasks[(i + k) % len(tasks)] for k in range(len(tasks))]  # rotate which task goes first
        for k, task in enumerate(order):
            if count[task] >= quota[task]:
                continue
            rng = np.random.default_rng([clip_seed, k])
            for q in iter_questions(clip, task, rng=rng, answer_index=count[task], camera_motions=camera_motions):
                stats["examined"][task] += 1
                c = answer_class(q, camera_motions)
                room = quota[task] - count[task] if c is None else class_quota[task][c] - stats["answers"][task][c]
                if room > 0:
                    candidates.append((-room / quota[task], k, task, c, q))
                    break
                stats["skipped"][task] += 1
        candidates.sort(key=lambda x: x[:2])
        for _, _, task, c, q in candidates[:MAX_QUESTIONS_PER_CLIP]:
            count[task] += 1
            if c is not None:
                stats["answers"][task][c] += 1
            total += 1
            bar.update(1)
            yield clip, q
        i += 1
        stats["clips"] = i
    bar.close()


def build_synthdsr(
    output_dir,
    num_questions: int | None = None,
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

    Questions come from `balanced_questions`: equal quotas per task and per answer class, the correct option cycling
    over the letters within each task; the rows are then shuffled with `seed`. Columns: `id, clip_id, frames, fps, task,
    question, options, answer, label_source, meta` (the evaluation rows of docs/design.md). The dataset card
    (`README.md`) and `build_stats.json` record the clips rendered, the questions examined and kept per task, the
    answer-class counts and `answer_balance` of the rows.

    Args:
        output_dir (`str` or `Path`): where to write; `datasets.load_dataset(output_dir)["test"]` reads it back.
        num_questions (`int`, *optional*): total number of questions; default `QUESTIONS_PER_TASK` (270) per task,
            so that a 95% interval on one task's accuracy is within +-6 points.
        seed (`int`): build seed, 0 to 8999; clip seeds are `synthdsr_clip_seed(seed, i)`.
        num_frames, size, fps: clip size.
        tasks (`list[str]`, *optional*): subset of `QUESTION_TASKS`. A task that needs more frames than `num_frames`
            (`thinker4d.world.questions.task_min_frames`, e.g. 5 for `object_motion_state`) is refused up front.
        jpeg_quality (`int`): frames are stored as JPEG bytes.
        camera_motions (`list[str]`, *optional*): restrict the clips' camera motion (and the camera-question
            distractors and answer classes) to these classes; default all classes. Recorded in the card.

    Returns:
        `datasets.Dataset`: the rows written.

    Example:

    ```python
    >>> from thinker4d.world import build_synthdsr
    >>> ds = build_synthdsr("synthdsr", num_questions=24, size=64, num_frames=8, progress=False)
    >>> ds.column_names[:4]
    ['id', 'clip_id', 'frames', 'fps']
    ```
    """
    import datasets

    from thinker4d.prompting import render_options

    stats: dict = {}
    rows = []
    frames_of = {}
    kept_before = {}
    for clip, q in balanced_questions(
        num_questions, seed, num_frames, size, fps, tasks, camera_motions, stats=stats, progress=progress
    ):
        if clip.clip_id not in frames_of:
            frames_of.clear()  # one clip at a time
            frames_of[clip.clip_id] = [_jpeg(f, jpeg_quality) for f in clip.frames]
        task = q["task"]
        n = kept_before[task] = kept_before.get(task, -1) + 1
        meta = {
            "label": q["label"],
            "answer_text": q["answer_text"],
            "answer_class": answer_class(q, camera_motions),
            "clip_seed": clip.meta["seed"],
            "camera_motion": clip.camera_motion,
            "objects": clip.object_names,
            "generator": "thinker4d.world",
            "benchmark": "synthdsr",
            "build_seed": seed,
        }
        rows.append(
            {
                "id": f"{clip.clip_id}/{task}/{n}",
                "clip_id": clip.clip_id,
                "frames": frames_of[clip.clip_id],
                "fps": float(clip.fps),
                "task": task,
                "question": q["question"],
                "options": render_options(q["options"]),
                "answer": q["answer"],
                "label_source": q["label_source"],
                "meta": json.dumps(meta),
            }
        )
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
    stats["balance"] = answer_balance(_row_question(r) for r in rows)
    (out / "build_stats.json").write_text(json.dumps(stats, indent=1))
    (out / "README.md").write_text(_card(len(rows), seed, num_frames, size, fps, stats, camera_motions))
    return ds


def _row_question(row: dict) -> dict:
    """A written row back as `{task, options (texts), answer_text}` for `answer_balance`."""
    meta = json.loads(row["meta"])
    options = [o.split(". ", 1)[1] for o in row["options"]]
    return {"task": row["task"], "options": options, "answer_text": meta["answer_text"], "class": meta["answer_class"]}


def answer_balance(questions) -> dict:
    """How far a blind guesser gets on each task: `{task: {n, chance, majority_rate, always, max_always_rate,
    letters}}`.

    * `chance`: the mean over questions of 1 / number of options.
    * `majority_rate`: the share of the most common answer class (`class` when a question has it, else its answer
      text); `object_bbox` boxes are all different, so its rate is tiny.
    * `always[X]`: the accuracy of the policy "answer option text X when it is offered, else guess uniformly" (for
      every X that occurs); `max_always_rate` is the largest. A balanced task keeps both rates within a few points of
      `chance`.
    * `letters`: the share of each correct letter.

    `questions`: dicts with `task`, `options` (texts, no letters) and `answer_text` (and optionally `class`), e.g.
    from `generate_questions`.
    """
    by_task: dict = {}
    for q in questions:
        by_task.setdefault(q["task"], []).append(q)
    out = {}
    for task, qs in by_task.items():
        n = len(qs)
        chance = sum(1 / len(q["options"]) for q in qs) / n
        classes, hits, offered_guess, letters = {}, {}, {}, {}
        for q in qs:
            c = q.get("class") or q["answer_text"]
            classes[c] = classes.get(c, 0) + 1
            letter = "ABCDEFGH"[q["options"].index(q["answer_text"])]
            letters[letter] = letters.get(letter, 0) + 1
            for o in q["options"]:
                hits[o] = hits.get(o, 0) + (o == q["answer_text"])
                offered_guess[o] = offered_guess.get(o, 0) + 1 / len(q["options"])
        # where X is not offered the policy guesses (chance); where it is, it scores a hit when X is the answer
        always = {o: round(chance + (hits[o] - offered_guess[o]) / n, 4) for o in hits}
        out[task] = {
            "n": n,
            "chance": round(chance, 4),
            "majority_rate": round(max(classes.values()) / n, 4),
            "always": always,
            "max_always_rate": max(always.values()),
            "letters": {k: round(v / n, 4) for k, v in sorted(letters.items())},
        }
    return out


def _card(n, seed, num_frames, size, fps, stats, camera_motions) -> str:
    def rates(t):
        b = stats["balance"].get(t)  # a task whose share of a tiny build is 0 has no rows
        return (
            " - | - | - |"
            if b is None
            else f" {b['chance']:.3f} | {b['majority_rate']:.3f} | {b['max_always_rate']:.3f} |"
        )

    lines = "\n".join(f"| `{t}` | {k} | {stats['examined'][t]} |{rates(t)}" for t, k in stats["kept"].items())
    world = f"camera motions {', '.join(camera_motions)}" if camera_motions else "all camera motions"
    return f"""---
configs:
- config_name: default
  data_files:
  - split: test
    path: data/test-*.parquet
---
# SynthDSR (thinker4d synthetic world, held out)

{n} multiple-choice questions over {stats["clips"]} rendered clips ({num_frames} frames, {size}x{size}, {fps} fps,
{world}), build seed {seed}; clip seeds start at {SYNTHDSR_SEED_START} and are never used for training. Labels are
computed from exact geometry (`label_source = geometry`); `meta` holds the structured label. Made with
`thinker4d synthdsr`.

Each task's answer classes have equal quotas: of the questions the clips supported (`examined`), those whose class
was already full were not taken. `majority` is the share of the most common answer class and `max always-X` the best
accuracy of always answering one option text when it is offered (`build_stats.json` has every rate).

| task | questions | examined | chance | majority | max always-X |
|---|---|---|---|---|---|
{lines}
"""
