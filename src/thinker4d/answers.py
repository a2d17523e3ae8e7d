"""Answer extraction for multiple-choice completions: one strict parser used for the headline numbers and the GRPO
accuracy reward, one clearly labelled lenient variant, and a faithful copy of the paper's loose rule for re-scoring.

Paper: https://huggingface.co/papers/2605.05997

What differs from the paper's `evaluation/dsr_eval.py` (docs/paper_differences.md, section 9):

1. The paper takes the first `<answer>` block, then the **first capital A-D anywhere** in it (or in the whole
   completion when the block has none), so `<answer>Based on the video ...</answer>` scores as "B" and an answer
   written outside the tags still counts. [`extract_choice`] reads only the **last** closed `<answer>...</answer>`
   block and accepts a letter only where it is marked as the choice (`B`, `B.`, `(B)`, `B) ...`, `Answer: B`) or
   the option text itself; two different letters, a letter inside a word, or no closed block give `None`.
2. Reading answers outside the tags is kept, but only as [`extract_choice_lenient`], and summaries label the
   number it produces "lenient".
3. [`paper_extract_choice`] reproduces the paper's rule so that its published result files can be re-scored
   (see `thinker4d.eval.metrics.rescore_paper_results`).

This module imports only the standard library: `thinker4d.rewards` (training) and `thinker4d.eval` import the parsers
from here, so the rewards do not import the evaluation package.
"""

from __future__ import annotations

import re
from collections.abc import Sequence


__all__ = [
    "extract_choice",
    "extract_choice_lenient",
    "paper_extract_choice",
    "strip_special_tokens",
]

# Any Qwen-style special token (`<|latent_pad|>`, `<|im_end|>`, `<|endoftext|>`, ...).
_SPECIAL = re.compile(r"<\|[A-Za-z0-9_]+\|>")
_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_OPTION_PREFIX = re.compile(r"^\s*\(?([A-Za-z])[.):]\s*")
_WORD_CHARS = re.compile(r"[^0-9a-z]+")


def strip_special_tokens(text: str) -> str:
    """Removes `<|...|>` special tokens (latent tokens, `<|im_end|>`, padding) left in a decoded completion."""
    return _SPECIAL.sub(" ", text)


def _normalise(text: str) -> str:
    return _WORD_CHARS.sub(" ", text.lower()).strip()


def _option_texts(options: Sequence[str] | None, letters: str) -> dict[str, str]:
    """`{letter: normalised option text}` with any `"A. "` prefix removed."""
    if not options:
        return {}
    out = {}
    for letter, opt in zip(letters, options):
        opt = str(opt)
        m = _OPTION_PREFIX.match(opt)
        if m and m.group(1).upper() == letter:
            opt = opt[m.end() :]
        norm = _normalise(opt)
        if norm:
            out[letter] = norm
    return out


def _parse_content(content: str, letters: str, options: Sequence[str] | None) -> str | None:
    """The choice written in one answer span, or `None` when it is absent or ambiguous."""
    content = strip_special_tokens(content).strip()
    if not content:
        return None
    texts = _option_texts(options, letters)
    lset = re.escape(letters)

    # 1. A bare letter: "B", "B.", "(B)", "B)", "B:"; lowercase only when nothing else is there ("b" but not "a car").
    m = re.fullmatch(rf"\(?([{lset}{lset.lower()}])\)?[.):]?", content)
    if m:
        return m.group(1).upper()

    # 2. A marked letter followed by text: "B. Pan Right", "B) ...", "(B) ...", "B: ...".
    m = re.match(rf"\(?([{lset}])(?:[.):]|\)[.:]?)\s+(.+)", content, re.DOTALL)
    if not m:
        m = re.match(rf"\(([{lset}])\)\s*(.+)", content, re.DOTALL)
    if m:
        letter, rest = m.group(1), m.group(2)
        # "A. B." or "B) ... (C)": a second, different choice marked in the same answer.
        if _marked_letters(rest, lset) - {letter}:
            return None
        # The text names a *different* option: the completion contradicts itself.
        named = [k for k, v in texts.items() if v == _normalise(rest)]
        if named and letter not in named:
            return None
        return letter

    # 3. The option text itself (with or without its letter), when the options are known.
    norm = _normalise(content)
    named = [k for k, v in texts.items() if v == norm]
    if len(named) == 1:
        return named[0]

    # 4. "B Pan Right" (no punctuation): only when the rest is exactly option B's text.
    m = re.match(rf"([{lset}])\s+(.+)", content, re.DOTALL)
    if m and texts.get(m.group(1)) == _normalise(m.group(2)):
        return m.group(1)

    # 5. One letter marked as the choice inside a sentence ("The answer is B", "Option C", "(D)", "... so B."), and
    # no other stand-alone capital from `letters` anywhere ("A or B" and "A car ..., so B" are ambiguous).
    standalone = set(re.findall(rf"(?<![A-Za-z])([{lset}])(?![A-Za-z])", content))
    marked = _marked_letters(content, lset)
    marked.update(re.findall(rf"(?i:answer|option|choice)\s*(?:is|:|=)?\s*\(?([{lset}])\)?(?![A-Za-z])", content))
    marked.update(re.findall(rf"(?:^|\s)([{lset}])[.)]?\s*$", content))
    if len(marked) == 1 and standalone == marked:
        return marked.pop()
    return None


def _marked_letters(text: str, lset: str) -> set[str]:
    """Capital letters written as a choice marker: `(C)`, or `C.` / `C)` / `C:` standing alone."""
    found = set(re.findall(rf"\(([{lset}])\)", text))
    found.update(re.findall(rf"(?<![A-Za-z'])([{lset}])[.):](?![A-Za-z0-9])", text))
    return found


def extract_choice(text: str | None, letters: str = "ABCD", options: Sequence[str] | None = None) -> str | None:
    """The option letter written in the **last** `<answer>...</answer>` block of a completion (strict).

    Accepted inside the block: `B`, `B.`, `(B)`, `B)`, `B. Pan Right`, `B) Pan Right`, a lone lowercase `b`, a
    marked letter in a sentence (`The answer is B`), and, when `options` are given, the option text itself
    (`Pan Right`). Latent and other `<|...|>` special tokens left in the text are ignored.

    Args:
        text (`str`):
            A decoded completion.
        letters (`str`, *optional*, defaults to `"ABCD"`):
            The valid option letters, in order.
        options (`Sequence[str]`, *optional*):
            The option texts (`"Pan Right"` or `"B. Pan Right"`), in letter order, to recognise an answer written
            as the option text and to reject `B. <text of option C>`.

    Returns:
        `str | None`: the upper-case letter, or `None` when there is no closed answer block, the block is empty,
        names several different letters, or the only capital is inside a word (`<answer>Based on ...</answer>`).

    Example:

    ```python
    >>> from thinker4d.answers import extract_choice
    >>> extract_choice("<think>...<|latent_start|><|latent_pad|><|latent_end|></think><answer>B. Pan Right</answer>")
    'B'
    >>> extract_choice("<answer>Pan Right</answer>", options=["A. Pan Left", "B. Pan Right"])
    'B'
    >>> extract_choice("<answer>Based on the motion</answer>") is None
    True
    ```
    """
    if not text:
        return None
    blocks = _ANSWER_BLOCK.findall(strip_special_tokens(str(text)))
    if not blocks:
        return None
    return _parse_content(blocks[-1], letters, options)


def extract_choice_lenient(
    text: str | None, letters: str = "ABCD", options: Sequence[str] | None = None
) -> str | None:
    """**Lenient** extraction: [`extract_choice`] first, then answers written outside the `<answer>` tags.

    The fallbacks, in order: the text after an unclosed final `<answer>` (a completion cut by `max_new_tokens`), the
    text after `</think>`, the last non-empty line, and finally the whole completion; each is read with the same
    rules as the strict parser, so a lone capital inside a word still never counts. Numbers produced with this
    function are reported as "lenient" next to the strict ones, never instead of them.

    Example:

    ```python
    >>> from thinker4d.answers import extract_choice_lenient
    >>> extract_choice_lenient("<think>the camera turns</think> The answer is C.")
    'C'
    ```
    """
    if not text:
        return None
    strict = extract_choice(text, letters, options)
    if strict is not None:
        return strict
    clean = strip_special_tokens(str(text))
    candidates = []
    opens = list(_ANSWER_OPEN.finditer(clean))
    if opens and "</answer>" not in clean[opens[-1].end() :].lower():
        candidates.append(clean[opens[-1].end() :])
    blocks = _ANSWER_BLOCK.findall(clean)
    if blocks:
        candidates.append(blocks[-1])
    tail = re.split(r"</think>", clean, flags=re.IGNORECASE)[-1]
    tail = re.sub(r"</?answer>", " ", tail, flags=re.IGNORECASE)
    candidates.append(tail)
    lines = [ln for ln in tail.splitlines() if ln.strip()]
    if lines:
        candidates.append(lines[-1])
    for cand in candidates:
        got = _parse_content(cand, letters, options)
        if got is not None:
            return got
    return None


# The answer prefixes stripped by Video-MME's `extract_characters_regex`, which the paper's `extract_option_letter`
# (dsr_eval.py:89-113) is modelled on.
_PAPER_PREFIXES = (
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    "The best option is",
    "The correct option is",
    "Best answer:",
    "Best option:",
)
_PAPER_LATENT = re.compile(r"<\|latent_(?:start|pad|end)\|>")


def _paper_letter(s: str) -> str:
    s = s.strip()
    for prefix in _PAPER_PREFIXES:
        s = s.replace(prefix, "")
    if len(s.split()) > 10 and not re.search(r"[ABCD]", s):
        return ""
    m = re.search(r"[ABCD]", s)
    return m.group(0) if m else ""


def paper_extract_choice(raw: str | None) -> str:
    """The paper's **loose** answer rule, reproduced to re-score its result files (not used for our numbers).

    Steps: keep the text after the last `<|im_start|>assistant` and cut at `<|im_end|>`; take
    the first `<answer>` block (else the whole text); strip the Video-MME answer prefixes; return `""` if more than
    10 words and no A-D, else the **first capital A, B, C or D anywhere**; when that is empty retry on the raw text,
    then on the raw text with latent tokens removed.

    Returns:
        `str`: a letter, or `""` when nothing was found (the paper's convention).

    Example:

    ```python
    >>> from thinker4d.answers import paper_extract_choice
    >>> paper_extract_choice("<answer>Based on the video, C</answer>")  # "B" of "Based": the rule's known flaw
    'B'
    ```
    """
    if not raw:
        return ""
    text = str(raw)
    if "<|im_start|>assistant" in text:
        text = text.rsplit("<|im_start|>assistant", 1)[1]
    text = text.split("<|im_end|>", 1)[0]
    m = re.search(r"<answer>(.*?)</answer>", text, re.IGNORECASE | re.DOTALL)
    content = m.group(1).strip() if m else text.strip()
    for candidate in (content, str(raw), _PAPER_LATENT.sub("", str(raw))):
        letter = _paper_letter(candidate)
        if letter:
            return letter
    return ""
