"""The Hub package's boundaries: `import thinker4d` leaves it out, the remote code leaves out `models/auto.py`, the
dataset columns are described once (and docs/design.md agrees), the tokenizer and processor load as stock classes."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, *args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )


def test_import_thinker4d_does_not_import_the_hub_package():
    code = (
        "import sys, thinker4d\n"
        "print(sorted(m for m in sys.modules if m == 'thinker4d.hub' or m.startswith('thinker4d.hub.')))\n"
        "print(thinker4d.pick_attn_implementation('cpu'))\n"
        "assert thinker4d.save_for_hub.__module__ == 'thinker4d.hub.model_folder'\n"
    )
    import thinker4d  # the copy under test, wherever it is installed from

    proc = _run(code, env={**os.environ, "PYTHONPATH": str(Path(thinker4d.__file__).parents[1])})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == ["[]", "sdpa"]


def test_remote_code_is_the_classes_files_without_auto_py(tmp_path):
    from thinker4d.hub import write_remote_code

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "thinker4d_qwen3_vl"}))
    copied = write_remote_code(tmp_path)
    assert copied == [
        "configuration_thinker4d.py",
        "generation.py",
        "imagery.py",
        "modeling_thinker4d_base.py",
        "modeling_thinker4d_qwen3_vl.py",
    ]
    assert not (tmp_path / "auto.py").exists()  # registers with the local auto classes: not remote code
    assert json.loads((tmp_path / "config.json").read_text())["auto_map"] == {
        "AutoConfig": "configuration_thinker4d.Thinker4DQwen3VLConfig",
        "AutoModelForImageTextToText": "modeling_thinker4d_qwen3_vl.Thinker4DQwen3VLForConditionalGeneration",
    }


def _design_columns() -> dict[str, str]:
    """`{column: feature}` of the 4D CoT table in docs/design.md."""
    text = (ROOT / "docs" / "design.md").read_text()
    section = text.split("## The 4D CoT dataset", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", section, re.MULTILINE)
    assert rows, "docs/design.md lost its 4D CoT column table"
    return {name: feature.strip() for name, feature in rows}


def test_dataset_columns_are_described_once_and_the_design_doc_agrees():
    from thinker4d.data.writer import COLUMN_DESCRIPTIONS, features
    from thinker4d.hub.cards import feature_text

    documented = _design_columns()
    assert list(COLUMN_DESCRIPTIONS) == list(features()) == list(documented)
    for name, feature in features().items():
        # the doc may annotate a type (`string (JSON)`), never name another one
        assert documented[name].split(" ")[0] == feature_text(feature), name
        assert COLUMN_DESCRIPTIONS[name]


def test_dataset_card_shows_the_shared_column_descriptions():
    from datasets import Features, Value

    from thinker4d.data.writer import COLUMN_DESCRIPTIONS
    from thinker4d.hub.cards import render_dataset_card

    text = render_dataset_card(
        Features({"task": Value("string"), "extra": Value("int64")}), {"train": 3}, pretty_name="x", stats={}
    )
    assert f"| `task` | string | {COLUMN_DESCRIPTIONS['task']} |" in text
    assert "| `extra` | int64 |  |" in text  # a column the contract does not name gets no invented meaning
    assert "## Rejections\n\nNot recorded." in text


LOAD_STOCK = """
import sys
sys.modules["thinker4d"] = None  # thinker4d cannot be imported in this process
from transformers import AutoProcessor, AutoTokenizer
folder = sys.argv[1]
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=False)
print("LOADED", type(tokenizer).__module__.split(".")[0], type(processor).__name__,
      tokenizer.convert_tokens_to_ids("<|latent_pad|>"), processor.tokenizer.convert_tokens_to_ids("<|latent_pad|>"))
"""


def test_tokenizer_and_processor_load_as_stock_classes_without_remote_code(tmp_path):
    """As docs/hub.md says: `trust_remote_code=False` loads the stock tokenizer and processor with no prompt."""
    import thinker4d
    from thinker4d.hub import save_for_hub
    from thinker4d.tiny import build_tiny_model, build_tiny_processor

    processor = build_tiny_processor("qwen2_5_vl")
    model, processor = thinker4d.from_base(build_tiny_model("qwen2_5_vl", processor), processor)
    folder = save_for_hub(model, processor, tmp_path / "hub", card=False, custom_generate=False)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    proc = _run(LOAD_STOCK, str(folder), env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "run the custom code" not in proc.stdout + proc.stderr
    pad = str(model.config.latent_pad_id)
    assert proc.stdout.split("LOADED ", 1)[1].split() == ["transformers", type(processor).__name__, pad, pad]
    assert not (tmp_path / "modules").exists()  # no remote code was fetched or run
