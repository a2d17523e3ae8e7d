"""thinker4d multiple-choice accuracy as an `evaluate` metric (the numbers of `thinker4d eval`'s summary).

Paper: https://huggingface.co/papers/2605.05997

Load it from the installed package (`evaluate.load` takes the path of this file):

```python
>>> import evaluate
>>> from thinker4d.eval import metric_path
>>> mcq = evaluate.load(metric_path())
>>> mcq.compute(predictions=["<answer>B</answer>", "<answer>Based</answer>"], references=["B", "B"])["accuracy"]
0.5
```
"""

import datasets
import evaluate


_DESCRIPTION = """Strict multiple-choice accuracy of free-form completions: the option letter is read from the last
<answer>...</answer> block with thinker4d.eval.extract_choice (no answer, several letters or a letter inside a word
count wrong). Also returns the lenient accuracy (answers outside the tags read too, labelled), per-subtask and
macro/micro accuracy when `subtasks` are given."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): decoded completions.
    references (`list[str]`): correct letters ("A", "B", ...).
    subtasks (`list[str]`, *optional*): subtask key of each example (per-subtask and macro accuracy).
    options (`list[list[str]]`, *optional*): option texts of each example (answers written as option text).
    errors (`list[str | None]`, *optional*): per-example error ("missing_video: ...") counted wrong.
Returns:
    accuracy, micro_accuracy, macro_accuracy, subtask_accuracy, lenient_accuracy, lenient_macro_accuracy, unparsed,
    errors, error_counts.
"""

_CITATION = """@article{4dthinker2026, title={4DThinker}, journal={arXiv:2605.05997}, year={2026}}"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Thinker4dMcq(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://huggingface.co/papers/2605.05997"],
        )

    def _compute(self, predictions, references, subtasks=None, options=None, errors=None):
        from thinker4d.answers import extract_choice, extract_choice_lenient
        from thinker4d.eval.metrics import score_records
        from thinker4d.prompting import LETTERS

        n = len(predictions)
        for name, value in (("subtasks", subtasks), ("options", options), ("errors", errors)):
            if value is not None and len(value) != n:
                raise ValueError(f"`{name}` has {len(value)} entries but there are {n} predictions.")
        records = []
        for i, (raw, ref) in enumerate(zip(predictions, references)):
            opts = options[i] if options is not None else None
            letters = LETTERS[: len(opts)] if opts else "ABCD"
            error = errors[i] if errors is not None else None
            gt = (ref or "").strip()[:1].upper()
            pred = None if error else extract_choice(raw, letters, opts)
            lenient = None if error else extract_choice_lenient(raw, letters, opts)
            records.append(
                {
                    "index": i,
                    "task": subtasks[i] if subtasks is not None else "all",
                    "pred": pred,
                    "hit": int(pred is not None and pred == gt),
                    "hit_lenient": int(lenient is not None and lenient == gt),
                    "error": error,
                }
            )
        s = score_records(records)
        return {
            "accuracy": s["accuracy"],
            "micro_accuracy": s["micro_accuracy"],
            "macro_accuracy": s["macro_accuracy"],
            "subtask_accuracy": s["subtask_accuracy"],
            "lenient_accuracy": s["lenient"]["accuracy"],
            "lenient_macro_accuracy": s["lenient"]["macro_accuracy"],
            "unparsed": s["unparsed"],
            "errors": s["errors"],
            "error_counts": s["error_counts"],
        }
