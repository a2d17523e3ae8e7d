"""Hugging Face Hub integration: Hub-ready model folders (remote code + `custom_generate/`), model and dataset cards,
uploads. `import thinker4d` does not import this package; auto-class registration and the attention choice live in
`thinker4d.models.auto` (re-exported here).

Paper: https://huggingface.co/papers/2605.05997. What differs from the paper's release:

1. The paper's checkpoint loads with the stock Qwen class, whose `generate` never feeds latents back (it opens an
   imagery block, then decodes ordinary tokens). Folders written here carry `models/` as remote code (`auto_map` in
   config.json), so `AutoModelForImageTextToText.from_pretrained(repo, trust_remote_code=True).generate` decodes with
   latent feedback without thinker4d installed.
2. A `custom_generate/` folder ships the same decoding loop (`generation.py` is copied byte for byte from
   `thinker4d/models/generation.py`, never rewritten), so a stock-class model whose config carries the latent fields
   can use it through `generate(custom_generate=repo, trust_remote_code=True)`.

Modules: `remote_code` (remote-code files, `custom_generate/`), `model_folder` (save / stage a model folder),
`cards` (model cards), `training_record` (what a checkpoint records for its card), `dataset_folder` (stage a
dataset), `push` (upload). The dataset card renderer (`thinker4d.data.card`) and credential scrubbing with the
pre-upload check (`thinker4d.redact`, which the trainers use too) live in lower layers and are re-exported here.

Example:

```python
>>> import thinker4d
>>> from thinker4d.hub import save_for_hub
>>> from thinker4d.tiny import build_tiny_model, build_tiny_processor
>>> processor = build_tiny_processor("qwen2_5_vl")
>>> model, processor = thinker4d.from_base(build_tiny_model("qwen2_5_vl", processor), processor)
>>> folder = save_for_hub(model, processor, "tiny-thinker4d", repo_id="me/tiny-thinker4d")  # doctest: +SKIP
```
"""

from ..models.auto import pick_attn_implementation, register_auto_classes
from ..redact import SECRET_ENV_VARS, assert_no_secrets, find_secrets, scrub
from .cards import (
    DATASET_TAGS,
    MODEL_TAGS,
    PAPER_URL,
    STAGE_DESCRIPTIONS,
    feature_text,
    load_eval_summary,
    render_dataset_card,
    render_model_card,
    usage_snippet,
)
from .dataset_folder import stage_dataset
from .model_folder import finalize_model_folder, save_for_hub, stage_model_checkpoint
from .push import push_dataset, push_folder, staging_dir
from .remote_code import write_custom_generate, write_remote_code
from .training_record import (
    _fmt,  # noqa: F401 -- how a card writes a value; tests compare against it
    load_training_args_bin,
    read_training_record,
    training_hyperparameters,
)


__all__ = [
    "DATASET_TAGS",
    "MODEL_TAGS",
    "PAPER_URL",
    "SECRET_ENV_VARS",
    "STAGE_DESCRIPTIONS",
    "assert_no_secrets",
    "feature_text",
    "find_secrets",
    "finalize_model_folder",
    "load_eval_summary",
    "load_training_args_bin",
    "pick_attn_implementation",
    "push_dataset",
    "push_folder",
    "read_training_record",
    "register_auto_classes",
    "render_dataset_card",
    "render_model_card",
    "save_for_hub",
    "scrub",
    "stage_dataset",
    "stage_model_checkpoint",
    "staging_dir",
    "training_hyperparameters",
    "usage_snippet",
    "write_custom_generate",
    "write_remote_code",
]
