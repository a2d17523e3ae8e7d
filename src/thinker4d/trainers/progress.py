"""What a training run shows in the terminal: one progress bar with the latest loss / reward, one summary line at the
end, and every log dict in a JSON-lines file instead of on the screen.

transformers' `ProgressCallback` (and `PrinterCallback`, with `disable_tqdm=True`) prints every log dict of the run,
one line per `logging_steps`; [`use_training_progress`] swaps them for [`TrainingProgressCallback`]. The other
callbacks (the `report_to` trackers among them) see the same log dicts as before.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback


LOG_FILE = "log_history.jsonl"


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


class TrainingProgressCallback(TrainerCallback):
    """One tqdm bar per `train()` call with the latest values of `keys` in its postfix, a one-line summary when
    training ends (steps, time, first and last logged values, the log file), and every log dict written as a JSON line
    to `log_file` instead of being printed.

    The file holds the run's `trainer.state.log_history`, one entry per line (`step` included): it is rewritten when
    training begins (with the entries restored from a checkpoint when resuming) and appended at every log call. Only
    the main process shows the bar and writes the file. With `disable_tqdm=True` there is no bar, the summary line
    stays.

    Args:
        description (`str`, *optional*): the bar's label and the summary's first word (default: the output folder's
            name).
        log_file (`str` or `os.PathLike`, *optional*): where the log dicts go (default `<output_dir>/log_history.jsonl`).
        keys (`tuple[str, ...]`): the logged values shown in the postfix and the summary, when a log dict has them.

    Example:

    ```python
    >>> from thinker4d.trainers import DIFTTrainer, use_training_progress
    >>> trainer = DIFTTrainer(model="Qwen/Qwen2.5-VL-3B-Instruct", args=args, train_dataset=rows)  # doctest: +SKIP
    >>> use_training_progress(trainer, description="dift")  # doctest: +SKIP
    >>> trainer.train()  # doctest: +SKIP
    ```

    The summary line reads `dift: <steps> steps in <time>, loss <first> -> <last>, mean loss <mean>; log dicts in
    <output_dir>/log_history.jsonl`.
    """

    def __init__(
        self,
        description: str | None = None,
        log_file: str | os.PathLike | None = None,
        keys: tuple[str, ...] = ("loss", "reward", "eval_loss"),
    ):
        self.description = description
        self.log_file = log_file
        self.keys = tuple(keys)
        self.bar = None
        self.prediction_bar = None
        self.path: Path | None = None
        self._first: dict = {}
        self._last: dict = {}
        self._train_loss = None
        self._start_step = 0
        self._t0 = 0.0

    def _label(self, args) -> str:
        return self.description or Path(args.output_dir or ".").resolve().name

    def _file(self, args) -> Path:
        if self.path is None:
            self.path = Path(self.log_file) if self.log_file is not None else Path(args.output_dir) / LOG_FILE
            self.path.parent.mkdir(parents=True, exist_ok=True)
        return self.path

    def on_train_begin(self, args, state, control, **kwargs):
        self._first, self._last, self._train_loss = {}, {}, None
        self._start_step, self._t0 = state.global_step, time.time()
        if not state.is_world_process_zero:
            return
        # A resumed run restored the history up to its checkpoint: the file starts from the same entries.
        self._file(args).write_text("".join(json.dumps(h, default=str) + "\n" for h in state.log_history))
        if not args.disable_tqdm:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=state.max_steps,
                initial=state.global_step,
                desc=self._label(args),
                dynamic_ncols=True,
                leave=False,
            )

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        with open(self._file(args), "a") as fh:
            fh.write(json.dumps({**logs, "step": state.global_step}, default=str) + "\n")
        if isinstance(logs.get("train_loss"), (int, float)):  # Trainer's mean over the run, logged at its end
            self._train_loss = logs["train_loss"]
        shown = {k: logs[k] for k in self.keys if isinstance(logs.get(k), (int, float))}
        for key, value in shown.items():
            self._first.setdefault(key, value)
            self._last[key] = value
        if self.bar is not None and shown:
            self.bar.set_postfix({k: _number(v) for k, v in shown.items()}, refresh=True)

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if not state.is_world_process_zero or args.disable_tqdm:
            return
        if self.prediction_bar is None:
            from tqdm.auto import tqdm

            try:
                total = len(eval_dataloader)
            except TypeError:  # an iterable data set
                total = None
            self.prediction_bar = tqdm(total=total, desc="evaluating", leave=False, dynamic_ncols=True)
        self.prediction_bar.update(1)

    def on_evaluate(self, args, state, control, **kwargs):
        if self.prediction_bar is not None:
            self.prediction_bar.close()
            self.prediction_bar = None

    on_predict = on_evaluate

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if not state.is_world_process_zero:
            return
        steps = state.global_step - self._start_step
        parts = [f"{self._label(args)}: {steps} step{'s' * (steps != 1)} in {_duration(time.time() - self._t0)}"]
        if self._start_step:
            parts[0] += f" (resumed at step {self._start_step})"
        for key, last in self._last.items():
            first = self._first[key]
            values = _number(last) if first == last or math.isnan(first) else f"{_number(first)} -> {_number(last)}"
            parts.append(f"{key} {values}")
        if self._train_loss is not None:
            parts.append(f"mean loss {_number(self._train_loss)}")
        from tqdm.auto import tqdm

        tqdm.write(", ".join(parts) + f"; log dicts in {self.path}")


def use_training_progress(trainer, **kwargs) -> TrainingProgressCallback:
    """Swap `trainer`'s printing callbacks (`ProgressCallback`, `PrinterCallback`, the notebook one) for a
    [`TrainingProgressCallback`] built with `kwargs`, and return it. The other callbacks stay as they are."""
    from transformers.trainer import DEFAULT_PROGRESS_CALLBACK  # the notebook one under IPython

    printing = (ProgressCallback, PrinterCallback, DEFAULT_PROGRESS_CALLBACK)
    for callback in list(trainer.callback_handler.callbacks):
        if isinstance(callback, printing):
            trainer.remove_callback(callback)
    callback = TrainingProgressCallback(**kwargs)
    trainer.add_callback(callback)
    return callback
