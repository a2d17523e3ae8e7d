"""The shared shape of a benchmark task: rows become [`Example`]s, every example is asked with the training prompt
(`thinker4d.prompting.build_messages`) and scored with the one strict parser (`thinker4d.eval.extract_choice`).

Paper: https://huggingface.co/papers/2605.05997
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ...answers import extract_choice, extract_choice_lenient
from ...prompting import LETTERS, build_messages, render_options


@dataclass
class Example:
    """One benchmark question.

    Args:
        index (`int`): row number in the benchmark file (stable across runs; results are keyed by it).
        id (`str`): the benchmark's own id for the question (or `str(index)` when it has none).
        task (`str`): subtask key, e.g. `"abs_dis"`.
        question (`str`), options (`list[str]`), answer (`str`): the stem, the option texts and the correct letter.
        video (`str`, *optional*): path of the video file to decode.
        frames (`Callable`, *optional*): returns `(frames THWC uint8, fps)` for benchmarks that ship frames.
        error (`str`, *optional*): `"<reason>: <detail>"` when the row cannot be asked (e.g. `bad_row: ...`); it is
            recorded and counted wrong, never skipped.
    """

    index: int
    id: str
    task: str
    question: str = ""
    options: list[str] = field(default_factory=list)
    answer: str = ""
    video: str | None = None
    frames: Callable[[], tuple[np.ndarray, float]] | None = None
    error: str | None = None

    @property
    def letters(self) -> str:
        return LETTERS[: len(self.options)] if self.options else "ABCD"


def parse_options(value, where: str) -> list[str]:
    """Options from a list, an array, a dict `{letter: text}` or a JSON / Python-literal string (never `eval()`)."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text)
        except ValueError:
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError) as e:
                raise ValueError(f"{where}: options string is neither JSON nor a Python literal: {text[:80]!r}") from e
    if isinstance(value, dict):
        keys = sorted(value)
        if keys != list(LETTERS[: len(keys)]):
            raise ValueError(f"{where}: options dict keys must be A, B, C, ... in order, got {keys}.")
        value = [value[k] for k in keys]
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: options must be a list of strings, got {type(value).__name__}: {str(value)[:80]}")
    options = [str(v) for v in value]
    try:
        render_options(options)  # validates count and letter order
    except ValueError as e:
        raise ValueError(f"{where}: {e} Fix the row's options (2 to {len(LETTERS)}, in letter order).") from None
    return options


def parse_answer(value, options: Sequence[str], where: str) -> str:
    """The correct letter from `"B"`, `"b"`, `"B. Pan Right"`; raises when it is not one of the options' letters."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: answer must be a non-empty string, got {value!r}.")
    text = value.strip()
    letter = text[0].upper()
    valid = LETTERS[: len(options)]
    if letter not in valid or (len(text) > 1 and text[1].isalpha()):
        raise ValueError(f"{where}: answer {value!r} is not one of the option letters {', '.join(valid)}.")
    return letter


class Task:
    """Base class: `load()` turns a local path or Hub id into examples; `messages()` and `score()` are shared.

    Subclasses set `name`, `subtasks` (ordered `{key: display name}`; keys seen in the data but not listed are
    reported too) and implement `load()`.
    """

    name: str = ""
    subtasks: dict[str, str] = {}

    def load(self, data: str | os.PathLike, limit: int | None = None, **kwargs) -> list[Example]:
        raise NotImplementedError

    def display_name(self, key: str) -> str:
        return self.subtasks.get(key) or key.replace("_", " ").title()

    def messages(self, example: Example) -> list[dict]:
        """The chat messages of the question: the same prompt DIFT and GRPO train on."""
        return build_messages(example.question, example.options)

    def score(self, example: Example, completion: str) -> dict:
        """Strict and lenient prediction and hit for one completion."""
        pred = extract_choice(completion, example.letters, example.options)
        lenient = extract_choice_lenient(completion, example.letters, example.options)
        return {
            "pred": pred,
            "hit": int(pred is not None and pred == example.answer),
            "pred_lenient": lenient,
            "hit_lenient": int(lenient is not None and lenient == example.answer),
        }


def frames_from_images(images, fps: float) -> tuple[np.ndarray, float]:
    from ...prompting import frames_to_array

    return frames_to_array(list(images)), float(fps)
