"""DSR-Bench (DSR Suite, arXiv 2512.20557): 13 dynamic-spatial subtasks, 4-way multiple choice over Koala-36M clips.

Paper: https://huggingface.co/papers/2605.05997

Layout read (the released `TencentARC/DSR_Suite-Data`): `benchmark.parquet` with columns `videoID`, `question`,
`options` (list of 4 strings already prefixed `"A. ..."`), `answer` (a letter), `type` (subtask key); the videos are
*not* in the dataset and are read from `<video_root>/<videoID>.mp4`. The VLMEvalKit re-host's column names
(`video`, `task_type`, options as a string) and the paper's `candidates` are accepted too.

What differs from the paper's `evaluation/dsr_eval.py` (docs/paper_differences.md, section 9):

1. Rows whose video is missing are kept and counted wrong with reason `missing_video` (the paper dropped 37 of 1,450
   rows from every denominator).
2. A row that cannot be asked (no question, options that do not parse, an answer that is not an option letter)
   becomes a `bad_row` error instead of crashing or being skipped.
3. `options` given as a string are parsed with `json` / `ast.literal_eval`, never `eval()`.
4. The prompt is the training prompt (`thinker4d.prompting`), not the paper's third suffix variant.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...datasets_io import is_hub_id
from .base import Example, Task, parse_answer, parse_options


DSR_SUBTASKS = {
    "abs_dis": "Abs Dis",
    "abs_dir": "Abs Dir",
    "abs_ori": "Abs Ori",
    "abs_spd": "Abs Spd",
    "abs_spd_comp": "Abs Spd Comp",
    "abs_dir_pred": "Abs Dir Pred",
    "rel_dis": "Rel Dis",
    "rel_dir": "Rel Dir",
    "rel_ori": "Rel Ori",
    "rel_spd": "Rel Spd",
    "rel_spd_comp": "Rel Spd Comp",
    "rel_dir_pred": "Rel Dir Pred",
    "non_temp": "Non-Temp Based",
}

HUB_ID = "TencentARC/DSR_Suite-Data"


def _first(row: dict, *names):
    for name in names:
        value = row.get(name)
        if value is not None and not (isinstance(value, float) and value != value):
            return value
    return None


class DSRBench(Task):
    """DSR-Bench from a local `benchmark.parquet` (or a folder holding it) or a Hub dataset id.

    Example:

    ```python
    >>> from thinker4d.eval.tasks import DSRBench
    >>> examples = DSRBench().load("DSR_Suite-Data/benchmark.parquet", video_root="bmk_video")  # doctest: +SKIP
    ```
    """

    name = "dsr_bench"
    subtasks = DSR_SUBTASKS

    def resolve(self, data: str | os.PathLike) -> Path:
        """The parquet file: `data` itself, `data/benchmark.parquet`, or `benchmark.parquet` of a Hub dataset."""
        path = Path(data)
        if path.is_dir():
            path = path / "benchmark.parquet"
        if path.is_file():
            return path
        if is_hub_id(data):
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(repo_id=str(data), filename="benchmark.parquet", repo_type="dataset"))
        raise FileNotFoundError(
            f"DSR-Bench file {path} not found. Pass the path of benchmark.parquet (or its folder), or a Hub dataset "
            f"id such as {HUB_ID!r}."
        )

    def load(
        self, data: str | os.PathLike = HUB_ID, limit: int | None = None, video_root: str | None = None, **kwargs
    ) -> list[Example]:
        """Reads the benchmark rows.

        Args:
            data (`str`): `benchmark.parquet`, its folder, or a Hub dataset id.
            limit (`int`, *optional*): keep the first `limit` rows.
            video_root (`str`, *optional*): folder of `<videoID>.mp4`; defaults to `<folder of the parquet>/videos`.
        """
        import pandas as pd

        path = self.resolve(data)
        table = pd.read_parquet(path)
        if "question" not in table.columns:
            raise ValueError(f"{path} has no `question` column (columns: {list(table.columns)}); is it DSR-Bench?")
        root = Path(video_root) if video_root else path.parent / "videos"
        rows = table.to_dict(orient="records")
        if limit is not None:
            rows = rows[:limit]
        return [self._example(i, row, root, path) for i, row in enumerate(rows)]

    def _example(self, index: int, row: dict, root: Path, path: Path) -> Example:
        where = f"{path.name} row {index}"
        video_id = _first(row, "videoID", "video")
        task = str(_first(row, "type", "task_type") or "unknown").strip().lower()
        ex = Example(index=index, id=str(_first(row, "id") or index), task=task)
        try:
            question = _first(row, "question")
            if not isinstance(question, str) or not question.strip():
                raise ValueError(f"{where}: `question` is empty or missing.")
            options = _first(row, "options", "candidates")
            if options is None:
                raise ValueError(f"{where}: no `options` (or `candidates`) column value.")
            ex.question = question
            ex.options = parse_options(options, where)
            ex.answer = parse_answer(_first(row, "answer"), ex.options, where)
            if not video_id or not str(video_id).strip():
                raise ValueError(f"{where}: `videoID` is empty or missing.")
        except ValueError as e:
            ex.error = f"bad_row: {e}"
            return ex
        video_id = str(video_id).strip()
        ex.id = str(_first(row, "id") or f"{video_id}/{index}")
        ex.video = str(root / (video_id if video_id.endswith(".mp4") else f"{video_id}.mp4"))
        return ex
