"""Reward functions for 4DRL, as plain functions `(completions, solution=None, **kwargs) -> list[float | None]`.

They plug straight into trl's `GRPOTrainer(reward_funcs=[accuracy_reward, format_reward])` and into
[`thinker4d.trainers.LatentGRPOTrainer`], whose defaults they are (weights 1.0 and 0.2, as in the paper).
`completions` may be plain strings or conversational (`[{"role": "assistant", "content": str}]`).

Paper: https://huggingface.co/papers/2605.05997 (4DRL). What differs from the paper's code
(docs/paper_differences.md, section 7):

1. `accuracy_reward` is strict: the letter must be the only option named inside the final `<answer>...</answer>`
   (parsed once, by [`thinker4d.answers.extract_choice`], the same parser evaluation uses). The paper took the first
   capital A-F anywhere in the text, so "Based on the Camera..." without an answer block could collect reward.
2. `format_reward` anchors the whole completion (`^<think>...</think><answer>...</answer>$`, each tag exactly once)
   and checks every imagery block (`<|latent_start|>`, exactly K `<|latent_pad|>`, `<|latent_end|>`, only inside
   `<think>`). The paper used an unanchored `re.search` with no latent check.
3. Nothing is printed or written to a log file per call.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from thinker4d.answers import extract_choice
from thinker4d.prompting import LETTERS


LATENT_START, LATENT_PAD, LATENT_END = "<|latent_start|>", "<|latent_pad|>", "<|latent_end|>"
_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_STRUCTURE = re.compile(r"^\s*<think>(?P<think>.*)</think>\s*<answer>(?P<answer>.*)</answer>\s*$", re.DOTALL)
_LATENT_ANY = re.compile(re.escape(LATENT_START) + "|" + re.escape(LATENT_PAD) + "|" + re.escape(LATENT_END))

DEFAULT_REWARD_WEIGHTS = (1.0, 0.2)


def completion_text(completion) -> str:
    """The text of one completion: a string, or the content of the last conversational message."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, Sequence) and completion:
        content = completion[-1].get("content", "")
        if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
            return "".join(part.get("text") or "" for part in content if isinstance(part, dict))
        return content or ""
    return ""


def _per_row(value, n: int, name: str) -> list:
    if value is None or isinstance(value, (str, bytes)):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise ValueError(f"{name} has {len(value)} entries for {n} completions; pass one per completion.")
    return value


def _letter(solution, row: int) -> str | None:
    if solution is None:
        return None
    s = str(solution).strip()
    m = re.match(r"^\(?([A-H])(?:[.):]|\s|$)", s)
    if not m:
        raise ValueError(
            f"Row {row}: solution {solution!r} is not an option letter. Pass the correct letter ('B'), "
            "optionally followed by its text ('B. Pan Right')."
        )
    return m.group(1)


def accuracy_reward(completions, solution=None, options=None, **kwargs) -> list[float | None]:
    """1.0 when the letter in the final `<answer>...</answer>` equals the correct letter, else 0.0.

    Args:
        completions (`list[str]` or conversational `list[list[dict]]`):
            The sampled completions.
        solution (`list[str]`, *optional*):
            The correct letter per completion (`"B"` or `"B. Pan Right"`); falls back to the `answer` column. A
            `None` solution gives a `None` reward (unscorable; trl ignores it).
        options (`list[list[str]]`, *optional*):
            The options per completion; they set the valid letters and let `<answer>Pan Right</answer>` count.

    Example:

    ```python
    >>> from thinker4d.rewards import accuracy_reward
    >>> accuracy_reward(["<think>x</think><answer>B. Pan Right</answer>", "<answer>Based on it</answer>"], ["B", "B"])
    [1.0, 0.0]
    ```
    """
    n = len(completions)
    if solution is None:
        solution = kwargs.get("answer")
    solutions = _per_row(solution, n, "solution")
    if options is not None and len(options) and isinstance(options[0], str):
        options = [options] * n  # one option list shared by every completion
    options = _per_row(options, n, "options")
    rewards: list[float | None] = []
    for i, (completion, sol, opts) in enumerate(zip(completions, solutions, options)):
        gt = _letter(sol, i)
        if gt is None:
            rewards.append(None)
            continue
        letters = LETTERS[: len(opts)] if opts else "ABCD"
        if gt not in letters:
            letters = LETTERS[: max(LETTERS.index(gt) + 1, len(letters))]
        pred = extract_choice(completion_text(completion), letters=letters, options=list(opts) if opts else None)
        rewards.append(1.0 if pred == gt else 0.0)
    return rewards


def _imagery_ok(think: str, latent_size: int | None) -> bool:
    pads = "(?:" + re.escape(LATENT_PAD) + (f"){{{latent_size}}}" if latent_size else ")+")
    block = re.compile(re.escape(LATENT_START) + pads + re.escape(LATENT_END))
    rest = block.sub("", think)
    return _LATENT_ANY.search(rest) is None


def is_well_formed(text: str, latent_size: int | None = None) -> bool:
    """Whether `text` is exactly `<think>...</think><answer>...</answer>` with well-formed imagery blocks.

    Each tag appears exactly once, the answer is not empty, and every latent token belongs to a complete block
    `<|latent_start|>` + K x `<|latent_pad|>` + `<|latent_end|>` inside `<think>` (any K >= 1 when `latent_size` is
    `None`).
    """
    if any(text.count(tag) != 1 for tag in _TAGS):
        return False
    m = _STRUCTURE.match(text)
    if m is None:
        return False
    if not m.group("answer").strip() or _LATENT_ANY.search(m.group("answer")):
        return False
    return _imagery_ok(m.group("think"), latent_size)


def format_reward(completions, latent_size=None, **kwargs) -> list[float]:
    """1.0 for a completion that is exactly `<think>...</think><answer>...</answer>` with well-formed imagery blocks.

    Args:
        completions (`list[str]` or conversational `list[list[dict]]`):
            The sampled completions, decoded with the latent tokens kept ([`LatentGRPOTrainer`] does so).
        latent_size (`int` or `list[int]`, *optional*):
            K, the number of `<|latent_pad|>` per block; [`LatentGRPOTrainer`] passes the model's. When `None`,
            any K >= 1 is accepted.

    Example:

    ```python
    >>> from thinker4d.rewards import format_reward
    >>> block = "<|latent_start|>" + "<|latent_pad|>" * 4 + "<|latent_end|>"
    >>> format_reward([f"<think>look {block} ok</think><answer>B</answer>", "<answer>B</answer>"], latent_size=4)
    [1.0, 0.0]
    ```
    """
    if isinstance(latent_size, int):
        latent_size = [latent_size] * len(completions)
    sizes = _per_row(latent_size, len(completions), "latent_size")
    return [1.0 if is_well_formed(completion_text(c), k) else 0.0 for c, k in zip(completions, sizes)]


__all__ = ["DEFAULT_REWARD_WEIGHTS", "accuracy_reward", "completion_text", "format_reward", "is_well_formed"]
