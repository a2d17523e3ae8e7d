"""The quickstart's warm-up data ([`option_reading_rows`]) and option-order copies of the training rows
([`option_order_variants`]): both train the option scan that the tiny model's answers end with."""

from __future__ import annotations


def _option_texts(options) -> list[str]:
    """The option texts without their letters, in order (`["A. Pan Left", ...]` or `["Pan Left", ...]` -> `["Pan Left",
    ...]`)."""
    from thinker4d.prompting import render_options

    return [line.split(". ", 1)[1] for line in render_options(options)]


def option_reading_rows(train, seed: int = 0):
    """The warm-up data: for every training row, a question answered from the option list alone.

    A pretrained LLM can already read a multiple-choice list; the quickstart's random tiny model cannot, and without
    this warm-up it does not learn, within the budget, to copy the letter of the option its reasoning named
    (docs/quickstart.md). Each row keeps the clip (so the prompt has its usual shape) and gets "Which option says
    <text>?" over options drawn from the option texts of the training set, with the row's option count, and the
    answer `<think>It says <text>. A. <option A>? No. B. <text>? Yes = B.</think><answer>B. <text></answer>` (the
    same option scan, [`thinker4d.data.cot.option_scan`], as the compact CoT ends with). The clip carries no
    information about the answer.

    Args:
        train (`datasets.Dataset`): 4D CoT rows (`id`, `frames`, `fps`, `options`, ...).
        seed (`int`): the draw of texts and letters (row `i` uses `seed * 1_000_003 + i`).

    Returns:
        `datasets.Dataset` with the columns `id, frames, fps, question, options, answer, cot, imagery`.
    """
    import random

    from thinker4d.data.cot import option_scan
    from thinker4d.prompting import LETTERS

    texts = sorted({text for opts in train["options"] for text in _option_texts(opts)})
    if len(texts) < 2:
        raise ValueError(f"The option-reading warm-up needs at least 2 distinct option texts; the data has {texts}.")

    def make(row, i):
        rng = random.Random(seed * 1_000_003 + i)
        n = min(len(row["options"]), len(texts))
        options = rng.sample(texts, n)
        k = rng.randrange(n)
        letter, text = LETTERS[k], options[k]
        return {
            "id": f"{row['id']}/option-reading",
            "question": f"Which option says {text}?",
            "options": options,
            "answer": letter,
            "cot": f"<think>It says {text}. " + option_scan(options, letter),
            "imagery": [],
        }

    keep = ["id", "frames", "fps", "options"]
    rows = train.select_columns(keep)
    return rows.map(make, with_indices=True, desc="Option-reading warm-up rows")


def option_order_variants(train, copies: int, seed: int = 0):
    """Every training row `copies` times: as synthesized, then with its options in `copies - 1` other random orders.

    The answer letter, and the CoT's option scan (`A. <option A>? No. B. <text>? Yes = B.</think><answer>B.
    <text></answer>`, the ending of the compact RuleTeacher CoT, [`thinker4d.data.cot.option_scan`]), follow the
    correct option to its new place, so a clip seen several times does not always come with the same letter.

    Args:
        train (`datasets.Dataset`): rows with `id`, `options`, `answer` and a compact `cot`.
        copies (`int`): 1 returns `train` as it is.
        seed (`int`): the draw of orders (copy `v` of row `i` uses `seed * 1_000_003 + 7919 * v + i`). An order may
            repeat by chance; the copy is kept, so every row has the same weight.

    Returns:
        `datasets.Dataset`: `copies * len(train)` rows, the copies of row `i` with ids `<id>/order<v>` (`v >= 1`).

    Raises:
        ValueError: if a CoT does not end with the option scan of its options and answer (other CoTs may mention the
            letter elsewhere, which this function cannot rewrite; use `copies=1`).
    """
    import random

    from datasets import concatenate_datasets

    from thinker4d.data.cot import option_scan
    from thinker4d.prompting import LETTERS, render_options

    if copies < 1:
        raise ValueError(f"copies must be >= 1, got {copies}.")
    if copies == 1:
        return train

    def reorder(row, i, v):
        texts = _option_texts(row["options"])
        old = row["answer"]
        text = texts[LETTERS.index(old)]
        ending = option_scan(texts, old)
        if not row["cot"].endswith(ending):
            raise ValueError(
                f"Row {row['id']!r}: option_order_variants rewrites CoTs that end with {ending!r} (the compact "
                f"RuleTeacher CoT); this one ends with {row['cot'][-60:]!r}. Use copies=1 (--option-orders 1)."
            )
        rng = random.Random(seed * 1_000_003 + 7919 * v + i)
        rng.shuffle(texts)
        new = LETTERS[texts.index(text)]
        cot = row["cot"][: -len(ending)] + option_scan(texts, new)
        return {"id": f"{row['id']}/order{v}", "options": render_options(texts), "answer": new, "cot": cot}

    # The first copy is `train` itself; the second copy's map checks every row's ending (and raises) on the way.
    parts = [
        train.map(reorder, with_indices=True, fn_kwargs={"v": v}, desc=f"Option order {v + 1}/{copies}")
        for v in range(1, copies)
    ]
    return concatenate_datasets([train, *parts])
