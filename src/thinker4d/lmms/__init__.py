"""thinker4d inside lmms-eval: the model `thinker4d` (a thinker4d checkpoint decoding with latent imagery) and the
tasks `thinker4d_dsr_bench`, `thinker4d_dyn_bench`, `thinker4d_vlm4d` and `thinker4d_synthdsr` (docs/lmms-eval.md).

lmms-eval finds the model through the `lmms_eval.models` entry point ([`manifests`]) and the tasks through
`--include_path` [`TASKS_DIR`] (`python -m thinker4d.lmms` prints it). The tasks read the benchmarks with
`thinker4d.eval.tasks`, ask with the training prompt, sample frames as `thinker4d eval` does and score with the
strict parser, so both harnesses give the same score on the same completions.

Nothing here imports lmms-eval until lmms-eval itself loads the model or a task; `import thinker4d` never loads this
package.

Paper: https://huggingface.co/papers/2605.05997
"""

from __future__ import annotations

from pathlib import Path


MODEL_ID = "thinker4d"
TASKS_DIR = Path(__file__).resolve().parent / "tasks"


def manifests():
    """The `lmms_eval.models` entry point: the model `thinker4d` ([`thinker4d.lmms.model.Thinker4DLMM`])."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id=MODEL_ID, simple_class_path="thinker4d.lmms.model.Thinker4DLMM")]


__all__ = ["MODEL_ID", "TASKS_DIR", "manifests"]
