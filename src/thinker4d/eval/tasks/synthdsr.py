"""SynthDSR: the held-out benchmark rendered from thinker4d's synthetic 4D world (`thinker4d.world.build_synthdsr`).

Paper: https://huggingface.co/papers/2605.05997 (SynthDSR is thinker4d's own; the paper has no synthetic benchmark.)

Rows use the evaluation columns of the design doc: `id, clip_id, frames (list of images), fps, task, question,
options, answer` (plus `label_source`, `meta`). The frames are in the dataset, so nothing is decoded from video;
the runner's frame cap still applies.
"""

from __future__ import annotations

from .base import Example, Task, frames_from_images, parse_answer, parse_options


SYNTHDSR_SUBTASKS = {
    "camera_motion": "Camera Motion",
    "object_direction": "Object Direction",
    "object_distance": "Object Distance",
    "object_speed": "Object Speed",
    "object_bbox": "Object Box",
}


class SynthDSR(Task):
    """SynthDSR from a local dataset folder or a Hub id.

    Example:

    ```python
    >>> from thinker4d.eval.tasks import SynthDSR
    >>> examples = SynthDSR().load("synthdsr/")  # doctest: +SKIP
    ```
    """

    name = "synthdsr"
    subtasks = SYNTHDSR_SUBTASKS

    def load(self, data, limit: int | None = None, split: str = "test", **kwargs) -> list[Example]:
        from thinker4d.datasets_io import load_thinker4d_dataset

        ds = load_thinker4d_dataset(data, split=split)
        missing = {"question", "options", "answer", "frames"} - set(ds.column_names)
        if missing:
            raise ValueError(
                f"{data} lacks the columns {sorted(missing)} (has {ds.column_names}); see docs/design.md."
            )
        n = len(ds) if limit is None else min(limit, len(ds))
        # Read the text columns once; images are decoded lazily, one row at a time.
        text = ds.select_columns([c for c in ("id", "task", "question", "options", "answer") if c in ds.column_names])
        examples = []
        for i in range(n):
            row = text[i]
            ex = Example(index=i, id=str(row.get("id") or i), task=str(row.get("task") or "unknown"))
            where = f"{data} row {i} (id {ex.id})"
            try:
                if not isinstance(row.get("question"), str) or not row["question"].strip():
                    raise ValueError(f"{where}: `question` is empty or missing.")
                ex.question = row["question"]
                ex.options = parse_options(row["options"], where)
                ex.answer = parse_answer(row["answer"], ex.options, where)
            except ValueError as e:
                ex.error = f"bad_row: {e}"
            ex.frames = _row_frames(ds, i)
            examples.append(ex)
        return examples


def _row_frames(ds, i: int):
    def load():
        row = ds[i]
        if not row.get("frames"):
            raise ValueError(f"row {i} has no frames")
        return frames_from_images(row["frames"], row.get("fps") or 1.0)

    return load
