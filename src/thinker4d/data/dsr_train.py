"""DSR-Train (the paper's 4DRL JSONL) -> the RL rows of docs/design.md: one pure per-example function and a dataset
helper.

Paper: https://huggingface.co/papers/2605.05997. What differs from the paper's loader (docs/paper_differences.md,
section 8):

1. Rows keep the question and options apart (`question`, `options`) and are rendered by `thinker4d.prompting`, the
   one prompt DIFT, 4DRL and evaluation share (the paper's RL suffix differed and had a `</think>` typo).
2. Videos stay paths (`video`) and are decoded at rollout time at the trainer's `video_fps` / `video_max_frames`,
   with the real frame rate passed to the processor.
3. A row with a missing question, fewer than two options or a correct letter that names no option raises a
   `ValueError` naming the row, instead of being silently skipped.
"""

from __future__ import annotations

import os

from thinker4d.prompting import LETTERS


def dsr_train_to_rl_row(row: dict, index: int, video_root: str | os.PathLike | None = None) -> dict:
    """One DSR-Train row (`Question`, `A`-`D` or `options`, `Correct`, `video_path`/`frame_paths`, `Type`) as an RL row.

    Returns a dict with `id`, `clip_id`, `task`, `question`, `options` (texts without letters), `answer` (letter),
    `video` (path or `None`), `frames` (frame paths or `None`), `fps`, `label_source` and `meta`.

    Example:

    ```python
    >>> from thinker4d.data.dsr_train import dsr_train_to_rl_row
    >>> r = dsr_train_to_rl_row({"Question": "Camera?", "A": "Pan Left", "B": "Pan Right", "Correct": "B. Pan Right",
    ...                          "video_path": "v/1.mp4", "Type": "abs_dir"}, 0, video_root="/data")
    >>> r["options"], r["answer"], r["video"], r["task"]
    (['Pan Left', 'Pan Right'], 'B', '/data/v/1.mp4', 'abs_dir')
    ```
    """
    name = f"DSR-Train row {index}" + (f" (id={row.get('id')!r})" if row.get("id") is not None else "")
    question = row.get("Question", row.get("question"))
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"{name}: `Question` must be a non-empty string, got {question!r}.")
    options = row.get("options")
    if options is None:
        options = [row[k] for k in LETTERS if row.get(k) not in (None, "")]
    options = [str(o).strip() for o in options]
    if len(options) < 2:
        raise ValueError(f"{name}: needs at least 2 options (columns A-D or `options`), got {options!r}.")
    correct = str(row.get("Correct", row.get("answer", "")) or "").strip().lstrip("(")
    letter = correct[:1].upper()
    if letter not in LETTERS[: len(options)]:
        raise ValueError(f"{name}: `Correct` must start with one of {LETTERS[: len(options)]!r}, got {correct!r}.")
    video = row.get("video_path", row.get("video"))
    frames = row.get("frame_paths")
    if not video and not frames:
        raise ValueError(f"{name}: no `video_path` (or `frame_paths`); every RL row needs a video.")
    if video_root is not None:
        video = os.path.join(video_root, video) if video else None
        frames = [os.path.join(video_root, f) for f in frames] if frames else None
    clip = os.path.splitext(os.path.basename(video or frames[0]))[0]
    task = str(row.get("Type", row.get("type", "")) or "")
    return {
        "id": str(row.get("id") or f"{clip}/{task}/{index}"),
        "clip_id": clip,
        "task": task,
        "question": question.strip(),
        "options": options,
        "answer": letter,
        "video": video or None,
        "frames": list(frames) if frames else None,
        "fps": float(row.get("fps") or 1.0),
        "label_source": "teacher",
        "meta": "{}",
    }


def convert_dsr_train(dataset, video_root: str | os.PathLike | None = None, num_proc: int | None = None):
    """Map a DSR-Train `datasets.Dataset` (or a JSONL path) to RL rows with [`dsr_train_to_rl_row`]."""
    if isinstance(dataset, (str, os.PathLike)):
        from datasets import load_dataset

        dataset = load_dataset("json", data_files=str(dataset), split="train")
    return dataset.map(
        dsr_train_to_rl_row,
        with_indices=True,
        fn_kwargs={"video_root": str(video_root) if video_root is not None else None},
        remove_columns=dataset.column_names,
        num_proc=num_proc,
        desc="DSR-Train -> RL rows",
    )


__all__ = ["convert_dsr_train", "dsr_train_to_rl_row"]
