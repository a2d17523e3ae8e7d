"""The one converter from the paper's DIFT JSONL layout to the thinker4d 4D CoT schema (and back).

Paper: https://huggingface.co/papers/2605.05997 (data: `jankin123/4DThinker-Training-Data`). A
paper row is `{"id", "text_input", "text_output", "image_input", "image_output"}`: the question with its `A. ...`
option lines, the CoT with one `<output_image>` per overlay and `<answer>B. Pan Right</answer>`, frame paths (1 fps)
and overlay paths. What differs from the paper's reader:

1. Options are parsed out of `text_input` into their own column, and the answer letter is read from the CoT's
   `<answer>`, so the row can be validated (answer among the options) before training.
2. Relative image paths are resolved against `image_root`; frames stay paths (decoded by the collator, which names the
   row when a file cannot be read).
"""

from __future__ import annotations

import json
import os
import re


IMAGERY_MARKER = "<imagery>"
PAPER_MARKER = "<output_image>"
_OPTION_LINE = re.compile(r"^\s*\(?([A-H])[.):]\s*(.*\S)\s*$")
_INLINE_OPTION = re.compile(r"(?:^|\s)\(?([A-H])[.)]\s+")
_ANSWER = re.compile(r"<answer>\s*\(?([A-H])", re.DOTALL)


def split_question(text_input: str) -> tuple[str, list[str]]:
    """`(question, options)` from a paper `text_input` (options one per line, or inline `A. x B. y`)."""
    lines = text_input.strip().splitlines()
    question, options = [], []
    for line in lines:
        m = _OPTION_LINE.match(line)
        if m and m.group(1) == "ABCDEFGH"[len(options)]:
            options.append(f"{m.group(1)}. {m.group(2)}")
        elif not options:
            question.append(line)
    if len(options) < 2:
        flat = " ".join(lines)
        parts = _INLINE_OPTION.split(flat)
        if len(parts) >= 5:
            question = [parts[0]]
            options = [f"{parts[i]}. {parts[i + 1].strip()}" for i in range(1, len(parts) - 1, 2)]
    return "\n".join(question).strip(), options


def _resolve(path: str, root: str | None) -> str:
    return path if root is None or os.path.isabs(path) else os.path.join(root, path)


def paper_row_to_dift(row: dict, image_root: str | None = None, fps: float = 1.0) -> dict:
    """One paper JSONL row -> one 4D CoT row (`frames` / `imagery` as paths).

    Raises:
        ValueError: naming the row id, when `text_input` has no options.
    """
    rid = str(row.get("id", ""))
    question, options = split_question(row.get("text_input", ""))
    if len(options) < 2:
        raise ValueError(f"Row {rid!r}: no 'A. ...' option lines found in text_input {row.get('text_input')!r}.")
    cot = str(row.get("text_output", ""))
    m = _ANSWER.search(cot)
    clip_id, _, task = rid.rpartition("_")
    return {
        "id": rid,
        "clip_id": clip_id or rid,
        "frames": [_resolve(p, image_root) for p in row.get("image_input") or []],
        "fps": float(fps),
        "task": task or "unknown",
        "question": question,
        "options": options,
        "answer": m.group(1) if m else "",
        "cot": cot.replace(PAPER_MARKER, IMAGERY_MARKER),
        "imagery": [_resolve(p, image_root) for p in row.get("image_output") or []],
        "label_source": "teacher",
        "meta": json.dumps({"source": "paper_jsonl"}),
    }


def dift_row_to_paper(row: dict) -> dict:
    """One 4D CoT row (with path-valued `frames` / `imagery`) -> the paper's JSONL layout."""
    return {
        "id": row["id"],
        "text_input": row["question"].strip() + "\n" + "\n".join(row["options"]),
        "text_output": row["cot"].replace(IMAGERY_MARKER, PAPER_MARKER),
        "image_input": list(row["frames"]),
        "image_output": list(row.get("imagery") or []),
    }


def load_paper_jsonl(path: str, image_root: str | None = None, fps: float = 1.0):
    """Read a paper DIFT JSONL file as a `datasets.Dataset` in the 4D CoT schema.

    Args:
        path (`str`): the JSONL file.
        image_root (`str`, *optional*): folder that relative image paths are resolved against (default: the file's).
        fps (`float`, *optional*, defaults to 1.0): frame rate of `image_input` (the paper extracts 1 fps).
    """
    from datasets import Dataset

    root = image_root if image_root is not None else os.path.dirname(os.path.abspath(path))
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not valid JSON ({e}).") from None
            rows.append(paper_row_to_dift(raw, root, fps))
    return Dataset.from_list(rows)


__all__ = ["dift_row_to_paper", "load_paper_jsonl", "paper_row_to_dift", "split_question"]
