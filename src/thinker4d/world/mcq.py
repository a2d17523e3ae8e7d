"""What every question of the synthetic world shares: the option letters, where the correct option goes, the
question dict, and the fewest frames a generator needs."""

from __future__ import annotations


LETTERS = "ABCDEFGH"


def _requires(min_frames: int, classes=None):
    """Declare the fewest frames a generator's question can be asked on (2 for any question about a change between
    frames) and its answer classes; `ask` enforces the frames (returns `None` below them) and `task_min_frames`
    reports them, so a build can refuse settings under which a task never has a question. `classes` (the possible
    `answer_class` values, `None` when every answer is unique, as for boxes) lets a build give each class an equal
    quota (`thinker4d.world.questions.task_answer_classes`)."""

    def mark(fn):
        fn.min_frames = int(min_frames)
        fn.classes = None if classes is None else tuple(classes)
        return fn

    return mark


def place_answer(correct: str, distractors: list, rng, answer_index: int | None) -> tuple[list, str]:
    """`(options, letter)`: the distinct distractors (minus `correct`) shuffled by `rng`, with `correct` inserted at
    `answer_index % num_options` (random when `None`). Every question of the world and of the synthesis pipeline
    places its answer this way."""
    distractors = [d for d in dict.fromkeys(distractors) if d != correct]
    opts = list(distractors)
    rng.shuffle(opts)
    n = len(opts) + 1
    idx = int(rng.integers(n)) if answer_index is None else int(answer_index) % n
    opts.insert(idx, correct)
    return opts, LETTERS[idx]


def _question(task, question, correct, distractors, label, rng, answer_index):
    options, letter = place_answer(correct, distractors, rng, answer_index)
    return {
        "task": task,
        "question": question,
        "options": options,
        "answer": letter,
        "answer_text": correct,
        "label": label,
        "label_source": "geometry",
    }
