"""Dyn-Bench ("Thinking in Dynamics"): the QA part, three categories, over pre-extracted frames.

Paper: https://huggingface.co/papers/2605.05997

Layout, from the benchmark's eval code (`utils/load_tasks.py`):
`multi_json/<source>/<scene>_<suffix>.json` (a list of `{"question", "options", "answer"}`, suffix `qa` ->
Inter-Object, `sceneqa` -> Object-Scene, `cameraqa` -> Camera-Object) and `frames/<source>/<scene>/*.jpg|png`.

**Unverified** (no copy of the data could be read here): whether `options` carry their `"A."` prefix (both forms are
accepted), the frame rate of the extracted frames (taken as `frame_fps`, default 1.0), and that the paper's "Avg."
is the mean of the three categories. Files with `frame_sampling` in their name are skipped, as the official loader
does. Mask-grounding files (`*mask.json`) are not read: the paper uses only the QA part.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...datasets_io import is_hub_id
from .base import Example, Task, parse_answer, parse_options


DYN_SUBTASKS = {"inter_object": "Inter-Object", "object_scene": "Object-Scene", "camera_object": "Camera-Object"}
_SUFFIX = {"cameraqa": "camera_object", "sceneqa": "object_scene", "qa": "inter_object"}


def _frame_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("frame_*.jpg")) or sorted(folder.glob("frame_*.png"))
    return files or sorted([*folder.glob("*.jpg"), *folder.glob("*.png")])


class DynBench(Task):
    """Dyn-Bench QA from a local snapshot folder or a Hub dataset id (downloaded with `snapshot_download`)."""

    name = "dyn_bench"
    subtasks = DYN_SUBTASKS

    def load(self, data, limit: int | None = None, frame_fps: float = 1.0, **kwargs) -> list[Example]:
        root = Path(data)
        if not root.is_dir() and is_hub_id(data):
            from huggingface_hub import snapshot_download

            root = Path(
                snapshot_download(str(data), repo_type="dataset", allow_patterns=["multi_json/**", "frames/**"])
            )
        if not (root / "multi_json").is_dir():
            raise FileNotFoundError(f"{root}/multi_json not found: pass a Dyn-Bench snapshot folder or its Hub id.")
        examples: list[Example] = []
        for path in sorted((root / "multi_json").glob("*/*.json")):
            if "frame_sampling" in path.name:
                continue
            stem, _, suffix = path.stem.rpartition("_")
            if suffix not in _SUFFIX or not stem:
                continue
            items = json.loads(path.read_text())
            if not isinstance(items, list):
                raise ValueError(f"{path}: a QA file must hold a JSON list, got {type(items).__name__}.")
            frames_dir = root / "frames" / path.parent.name / stem
            for j, item in enumerate(items):
                ex = Example(index=len(examples), id=f"{path.parent.name}/{stem}/{suffix}/{j}", task=_SUFFIX[suffix])
                where = f"{path} item {j}"
                try:
                    if not isinstance(item, dict) or not str(item.get("question", "")).strip():
                        raise ValueError(f"{where}: no question.")
                    ex.question = str(item["question"])
                    ex.options = parse_options(item.get("options"), where)
                    ex.answer = parse_answer(item.get("answer"), ex.options, where)
                except ValueError as e:
                    ex.error = f"bad_row: {e}"
                ex.frames = _folder_frames(frames_dir, frame_fps)
                examples.append(ex)
                if limit is not None and len(examples) >= limit:
                    return examples
        return examples


def _folder_frames(folder: Path, fps: float):
    def load():
        from PIL import Image

        from ...images import to_rgb_array
        from ...video import VideoError

        files = _frame_files(folder) if folder.is_dir() else []
        if not files:
            raise VideoError("missing_video", f"no frame_*.jpg/png in {folder}.")
        frames = []
        for f in files:
            with Image.open(f) as im:
                frames.append(to_rgb_array(im, str(f)))
        return np.stack(frames), fps

    return load
