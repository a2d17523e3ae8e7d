"""One small Task per benchmark. `load_task(name)` is the lookup the CLI uses."""

from __future__ import annotations

from .base import Example, Task
from .dsr_bench import DSRBench
from .dyn_bench import DynBench
from .synthdsr import SynthDSR
from .vlm4d import VLM4D


TASKS: dict[str, type[Task]] = {
    "dsr_bench": DSRBench,
    "synthdsr": SynthDSR,
    "dyn_bench": DynBench,
    "vlm4d": VLM4D,
}
_ALIASES = {"dsr": "dsr_bench", "dsr-bench": "dsr_bench", "dsrbench": "dsr_bench", "dyn-bench": "dyn_bench"}


def load_task(name: str) -> Task:
    """The task for a benchmark name (`dsr_bench`, `synthdsr`, `dyn_bench`, `vlm4d`; `-`/case are ignored)."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key.replace("-", "_"))
    if key not in TASKS:
        raise ValueError(f"Unknown benchmark {name!r}; choose one of: {', '.join(sorted(TASKS))}.")
    return TASKS[key]()


__all__ = ["TASKS", "DSRBench", "DynBench", "Example", "SynthDSR", "Task", "VLM4D", "load_task"]
