"""Stage 7, validation of a chain of thought (https://huggingface.co/papers/2605.05997, Appendix F).

What differs from the paper's validator (`validate_cot_format`; docs/paper_differences.md, section 10):

1. The answer must be one of the options **and equal the ground-truth letter**; the paper's validator never checks the
   answer against the label it put in the prompt.
2. The `<imagery>` markers must all sit inside `<think>` and their count must equal the number of overlays; nothing
   but whitespace may follow `</answer>`. The paper's "markers within N*150 characters" grouping rule is dropped:
   the templated and teacher CoTs interleave text between views.
"""

from __future__ import annotations

import re

from thinker4d.prompting import LETTERS, render_options


IMAGERY = "<imagery>"
_FULL = re.compile(r"^\s*<think>(?P<think>.*)</think>\s*<answer>(?P<answer>.*?)</answer>\s*$", re.DOTALL)
_LETTER = re.compile(r"^\s*\(?([A-H])(?:[.):]|\s|$)")
MIN_THINK_CHARS = 40

REASONS = (
    "malformed_tags",
    "answer_in_think",
    "think_too_short",
    "imagery_count_mismatch",
    "imagery_outside_think",
    "answer_not_an_option",
    "answer_mismatch",
)


def parse_answer_letter(answer: str, options) -> str | None:
    """The letter an `<answer>` text names: `"B"`, `"B. Pan Right"` or the exact option text; `None` otherwise."""
    rendered = render_options(options)
    text = answer.strip()
    for i, line in enumerate(rendered):
        if text == line or text == line[3:].strip():
            return LETTERS[i]
    m = _LETTER.match(text)
    if m and LETTERS.index(m.group(1)) < len(rendered):
        letter = m.group(1)
        rest = text[m.end() :].strip()
        if not rest or rest == rendered[LETTERS.index(letter)][3:].strip():
            return letter
    return None


def validate_cot(cot: str, options, answer: str, num_imagery: int) -> str | None:
    """`None` when `cot` is a valid 4D CoT for this question, else the rejection reason (one of `REASONS`).

    Args:
        cot (`str`): `<think>...</think><answer>...</answer>`.
        options (`list[str]`): the question's options (with or without letters).
        answer (`str`): the ground-truth letter.
        num_imagery (`int`): number of overlay images (= required `<imagery>` markers).

    Example:

    ```python
    >>> validate_cot("<think>" + "x" * 40 + " <imagery></think><answer>B. Right</answer>", ["Left", "Right"], "B", 1)
    >>> validate_cot("<think>" + "x" * 40 + "</think><answer>A</answer>", ["Left", "Right"], "B", 0)
    'answer_mismatch'
    ```
    """
    if not isinstance(cot, str):
        return "malformed_tags"
    m = _FULL.match(cot)
    if not m or cot.count("<think>") != 1 or cot.count("</think>") != 1 or cot.count("<answer>") != 1:
        return "malformed_tags"
    think, ans = m.group("think"), m.group("answer")
    if "<answer>" in think or "</answer>" in think:
        return "answer_in_think"
    if len(think.replace(IMAGERY, "").strip()) < MIN_THINK_CHARS:
        return "think_too_short"
    if IMAGERY in ans or cot.count(IMAGERY) != think.count(IMAGERY):
        return "imagery_outside_think"
    if think.count(IMAGERY) != num_imagery:
        return "imagery_count_mismatch"
    letter = parse_answer_letter(ans, options)
    if letter is None:
        return "answer_not_an_option"
    if letter != answer:
        return "answer_mismatch"
    return None


__all__ = ["IMAGERY", "REASONS", "parse_answer_letter", "validate_cot"]
