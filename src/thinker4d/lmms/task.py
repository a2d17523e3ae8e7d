"""The lmms-eval task of a thinker4d benchmark: the YAMLs under `tasks/` name [`Thinker4DTask`] as their `class`.

What `thinker4d eval` does, the task does the same way, with the same code:

- rows: `thinker4d.eval.tasks.load_task(benchmark).load(...)`, so the questions, their order (`doc_id` is the row
  index of `thinker4d eval`'s results) and the rows that cannot be asked (`bad_row`) are the same;
- prompt: `doc_to_text` is the user text of the training prompt (`thinker4d.prompting.user_text`); the model
  `thinker4d` puts the video before it, which is `thinker4d.prompting.build_messages`;
- frames: `thinker4d.eval.runner.FrameLoader` with the YAML's `fps`, `max_frames` and `max_pixels` (the defaults of
  `thinker4d eval`), handed to the model as one [`Video`];
- score: each completion becomes the record `thinker4d eval` writes (`thinker4d.eval.runner.result_record`, the strict
  parser), and the metrics are those of its summary (`thinker4d.eval.metrics.score_records`): `accuracy` (micro,
  errors counted wrong), `macro_accuracy` and `accuracy_lenient`. A row that cannot be asked, or whose video is
  missing or unreadable, is not generated and counts wrong with its reason, as in `thinker4d eval`.

Where the data is: the YAML's `dataset_path` (a local path or a Hub id), overridden by the environment variable
`THINKER4D_LMMS_<BENCHMARK>` (e.g. `THINKER4D_LMMS_DSR_BENCH`); DSR-Bench's videos by
`THINKER4D_LMMS_DSR_BENCH_VIDEOS` (default: `videos/` beside the parquet).

Paper: https://huggingface.co/papers/2605.05997
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from lmms_eval.api.task import ConfigurableTask

from ..datasets_io import is_hub_id
from ..errors import UserFileNotFoundError, UserValueError
from ..eval.config import EvalConfig
from ..eval.metrics import score_records
from ..eval.runner import FrameLoader, result_record
from ..eval.tasks import load_task
from ..prompting import user_text


FRAME_SETTINGS = ("fps", "max_frames", "max_pixels")
METRICS = ("accuracy", "macro_accuracy", "accuracy_lenient")


@dataclass
class Video:
    """One question's video as `thinker4d eval` samples it: `frames` (THWC uint8) at `fps`; or, for a row that cannot
    be asked, `error` (`"<reason>: <detail>"`) and no frames. The model `thinker4d` generates nothing for the latter."""

    frames: np.ndarray | None = None
    fps: float = 1.0
    error: str | None = None


def data_env(benchmark: str) -> str:
    """The environment variable that overrides a task's `dataset_path`: `THINKER4D_LMMS_DSR_BENCH` for `dsr_bench`."""
    return f"THINKER4D_LMMS_{benchmark.upper()}"


class Thinker4DTask(ConfigurableTask):
    """A `ConfigurableTask` whose rows, frames and scores come from `thinker4d.eval` (see the module docstring).

    Its YAML's `dataset_kwargs` hold `benchmark` (a `thinker4d eval --benchmark` name), the frame settings `fps`,
    `max_frames`, `max_pixels`, and what the benchmark's loader takes (`split`, `video_root`, `frame_fps`, `mini`).
    """

    def __init__(self, config: dict | None = None, **kwargs):
        config = {k: v for k, v in (config or {}).items() if k != "class"}
        # the metrics are computed here ([`process_results`]), not looked up in lmms-eval's metric registry
        config["process_results"] = self.process_results
        super().__init__(config=config, **kwargs)

    def download(self, dataset_kwargs=None) -> None:
        settings = dict(dataset_kwargs or {})
        if "benchmark" not in settings:
            raise UserValueError(f"Task {self.config.task}: its YAML's dataset_kwargs need `benchmark`.")
        self.benchmark = load_task(settings.pop("benchmark"))
        frames = {k: settings.pop(k) for k in FRAME_SETTINGS if k in settings}
        self.frame_loader = FrameLoader(EvalConfig(**frames))
        env = data_env(self.benchmark.name)
        data = os.environ.get(env) or self.DATASET_PATH
        if os.environ.get(f"{env}_VIDEOS"):
            settings["video_root"] = os.environ[f"{env}_VIDEOS"]
        if not data or not (Path(data).exists() or is_hub_id(data)):
            raise UserFileNotFoundError(
                f"Task {self.config.task}: {data!r} is neither a local path nor a Hub id. Set {env} to the "
                f"{self.benchmark.name} data (or dataset_path in the task's YAML)."
            )
        self.examples = self.benchmark.load(data, **settings)
        self.decode_errors: dict[int, str] = {}
        docs = [
            {
                "index": ex.index,
                "id": ex.id,
                "subtask": ex.task,
                "question": ex.question,
                "options": list(ex.options),
                "answer": ex.answer,
                "error": ex.error,
            }
            for ex in self.examples
        ]
        features = datasets.Features(
            {
                "index": datasets.Value("int64"),
                "id": datasets.Value("string"),
                "subtask": datasets.Value("string"),
                "question": datasets.Value("string"),
                "options": datasets.List(datasets.Value("string")),
                "answer": datasets.Value("string"),
                "error": datasets.Value("string"),
            }
        )
        split = self.config.test_split or "test"
        self.dataset = datasets.DatasetDict({split: datasets.Dataset.from_list(docs, features=features)})
        self.dataset_no_image = self.dataset

    def doc_to_visual(self, doc: dict) -> list[Video]:
        """The question's frames as `thinker4d eval` samples them, or the reason the row cannot be asked."""
        ex = self.examples[doc["index"]]
        if ex.error:
            return [Video(error=ex.error)]
        try:
            frames, fps = self.frame_loader(ex)
        except Exception as e:  # as the runner records it: VideoError carries its reason
            error = str(e) if getattr(e, "reason", None) else f"unreadable_video: {e}"
            self.decode_errors[ex.index] = error
            return [Video(error=error)]
        self.decode_errors.pop(ex.index, None)
        return [Video(frames=frames, fps=fps)]

    def process_results(self, doc: dict, results: list, full_docs=None) -> dict:
        """The completion (unstripped, as `thinker4d eval` scores it) as the record `thinker4d eval` writes."""
        ex = self.examples[doc["index"]]
        raw = results[0] if results else None
        error = ex.error or self.decode_errors.get(ex.index)
        record = result_record(ex, 0, None if error else raw, error, self.benchmark)
        return dict.fromkeys(METRICS, record)


def doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    """The user text of the training prompt (question, lettered options, reasoning suffix); `""` for a bad row."""
    if doc.get("error") or not doc.get("options"):
        return ""
    return user_text(doc["question"], doc["options"])


def doc_to_target(doc: dict) -> str:
    return doc.get("answer") or ""


def accuracy(records: list[dict]) -> float:
    """Micro accuracy over every question, errors counted wrong (`thinker4d eval`'s headline `accuracy`)."""
    return score_records(records)["accuracy"]


def macro_accuracy(records: list[dict]) -> float:
    """Mean of the subtask accuracies (`macro_accuracy` of `thinker4d eval`'s summary)."""
    return score_records(records)["macro_accuracy"]


def accuracy_lenient(records: list[dict]) -> float:
    """Accuracy with the lenient parser (`lenient.accuracy` of the summary; not the headline number)."""
    return score_records(records)["lenient"]["accuracy"]


__all__ = ["Thinker4DTask", "Video", "accuracy", "accuracy_lenient", "data_env", "doc_to_text", "macro_accuracy"]
