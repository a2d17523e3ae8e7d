"""VLM4D (ICCV 2025): 4-way questions on real and synthetic videos; the answer is the *text* of the right choice.

Paper: https://huggingface.co/papers/2605.05997

Layout (HF dataset `shijiezhou/VLM4D`): `QA/real_mc.json` and
`QA/synthetic_mc.json`, each a JSON list of `{"id", "video", "question", "choices": {"A": ..}, "answer": <text>}`;
`video` is a full Hub URL whose part after `resolve/main/` is the path inside the dataset.

Subtasks are the two files (`real`, `synthetic`). **Unverified**: the finer categories some papers report
(ego-/exo-centric, directional, false positive) are not fields of the JSON, so they are not reported.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...datasets_io import is_hub_id
from .base import Example, Task, parse_options


VLM4D_SUBTASKS = {"real": "Real", "synthetic": "Synthetic"}


class VLM4D(Task):
    """VLM4D from a local snapshot folder or the Hub id `shijiezhou/VLM4D`."""

    name = "vlm4d"
    subtasks = VLM4D_SUBTASKS

    def load(self, data, limit: int | None = None, mini: bool = False, **kwargs) -> list[Example]:
        root = Path(data)
        if not root.is_dir() and is_hub_id(data):
            from huggingface_hub import snapshot_download

            root = Path(snapshot_download(str(data), repo_type="dataset"))
        examples: list[Example] = []
        for key in VLM4D_SUBTASKS:
            path = root / "QA" / f"{'mini_' if mini else ''}{key}_mc.json"
            if not path.is_file():
                continue
            items = json.loads(path.read_text())
            for j, item in enumerate(items):
                ex = Example(index=len(examples), id=str(item.get("id") or f"{key}/{j}"), task=key)
                where = f"{path} item {j}"
                try:
                    ex.question = str(item.get("question") or "")
                    if not ex.question.strip():
                        raise ValueError(f"{where}: no question.")
                    choices = item.get("choices")
                    ex.options = parse_options(choices, where)
                    answer = str(item.get("answer", "")).strip()
                    matches = [k for k, v in (choices or {}).items() if str(v).strip() == answer]
                    if len(matches) != 1:
                        raise ValueError(f"{where}: answer {answer[:60]!r} matches {len(matches)} choices, not one.")
                    ex.answer = matches[0]
                    video = str(item.get("video") or "")
                    if not video:
                        raise ValueError(f"{where}: no video.")
                    ex.video = str(root / video.split("resolve/main/", 1)[-1].lstrip("/"))
                except (ValueError, AttributeError) as e:
                    ex.error = f"bad_row: {e}"
                examples.append(ex)
                if limit is not None and len(examples) >= limit:
                    return examples
        if not examples:
            raise FileNotFoundError(f"No QA/real_mc.json or QA/synthetic_mc.json under {root}.")
        return examples
