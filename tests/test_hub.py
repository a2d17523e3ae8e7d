"""Hub folders: remote code round trip without thinker4d, custom_generate on a stock class, model card, attention."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import LogitsProcessorList

import thinker4d
from thinker4d import hub


# Defined once as source so the subprocess (where thinker4d and tests/ are not importable) runs the very same class.
FORCE_SRC = '''
from transformers import LogitsProcessor

class ForceImageryAt(LogitsProcessor):
    """Force <|latent_start|> at fixed generated steps (same steps for every row)."""

    def __init__(self, start_id, steps):
        self.start_id, self.steps, self.start_len = start_id, set(steps), None

    def __call__(self, input_ids, scores):
        self.start_len = input_ids.shape[1] if self.start_len is None else self.start_len
        if input_ids.shape[1] - self.start_len in self.steps:
            scores[:] = -float("inf")
            scores[:, self.start_id] = 0.0
        return scores
'''
_ns = {}
exec(FORCE_SRC, _ns)
ForceImageryAt = _ns["ForceImageryAt"]
STEPS = (1, 8)
MAX_NEW = 14
PROMPTS = ["Which way does the camera pan?", "Is the car moving away?"]

SUBPROCESS_SCRIPT = (
    (
        """
import sys
sys.modules["thinker4d"] = None  # thinker4d cannot be imported in this process
import json
import runpy
import transformers
from transformers import AutoModelForImageTextToText, AutoProcessor, LogitsProcessorList
"""
        + FORCE_SRC
        + """
folder, snippet = sys.argv[1], sys.argv[2]
try:
    import thinker4d  # noqa: F401
    raise SystemExit("thinker4d is importable")
except ImportError:
    pass
report = {}
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
processor.tokenizer.padding_side = "left"
messages = [[{"role": "user", "content": [{"type": "text", "text": t}]}] for t in json.loads(sys.argv[3])]
inputs = processor.apply_chat_template(
    messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt", padding=True
)

def run(model, **extra):
    procs = LogitsProcessorList([ForceImageryAt(model.config.latent_start_id, STEPS)])
    out = model.generate(**inputs, max_new_tokens=MAX_NEW, do_sample=False, logits_processor=procs,
                         return_dict_in_generate=True, **extra)
    return {"sequences": out.sequences.tolist(), "imagery_blocks": out.imagery_blocks.tolist(),
            "latent_positions": [p.tolist() for p in out.latent_positions]}

remote = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
report["remote_class"] = type(remote).__module__ + "." + type(remote).__name__
report["remote"] = run(remote)

stock_name = {"thinker4d_qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
              "thinker4d_qwen3_vl": "Qwen3VLForConditionalGeneration"}[remote.config.model_type]
stock = getattr(transformers, stock_name).from_pretrained(folder).eval()
report["stock_class"] = type(stock).__module__ + "." + type(stock).__name__
report["stock_plain"] = stock.generate(**inputs, max_new_tokens=MAX_NEW, do_sample=False,
    logits_processor=LogitsProcessorList([ForceImageryAt(stock.config.latent_start_id, STEPS)])).tolist()
report["custom_generate"] = run(stock, custom_generate=folder, trust_remote_code=True)

runpy.run_path(snippet, run_name="__main__")
report["thinker4d_modules"] = sorted(k for k, v in sys.modules.items() if k.startswith("thinker4d") and v is not None)
report["files_from_src"] = sorted(
    k for k, v in sys.modules.items() if "/src/thinker4d/" in str(getattr(v, "__file__", "") or ""))
print("REPORT " + json.dumps(report))
"""
    )
    .replace("STEPS", repr(STEPS))
    .replace("MAX_NEW", str(MAX_NEW))
)


def _inputs(processor):
    processor.tokenizer.padding_side = "left"
    messages = [[{"role": "user", "content": [{"type": "text", "text": t}]}] for t in PROMPTS]
    return processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt", padding=True
    )


def _eval_summary(path):
    summary = {
        "benchmark": "synthdsr",
        "total": 40,
        "evaluated": 40,
        "errors": 1,
        "correct": 23,
        "accuracy": 0.575,
        "macro_accuracy": 0.5625,
        "subtask_accuracy": {"camera_motion": 0.75, "object_direction": 0.375},
        "subtask_total": {"camera_motion": 24, "object_direction": 16},
        "parser": "strict",
        "generation": {"max_new_tokens": 512, "do_sample": False},
        "model": "out/4drl",
        "thinker4d_version": "0.1.0",
    }
    path.write_text(json.dumps(summary))
    return path


@pytest.fixture
def saved(tiny_model_and_processor, tmp_path):
    model, processor = tiny_model_and_processor
    folder = hub.save_for_hub(
        model,
        processor,
        tmp_path / "hub",
        base_model="Qwen/Qwen2.5-VL-3B-Instruct",
        datasets=["me/4d-cot"],
        training_args={"learning_rate": 1e-5, "imagery_weight": 1.0, "hub_token": "hf_should_not_appear"},
        eval_summaries=[_eval_summary(tmp_path / "summary.json")],
        stages="DIFT then 4DRL",
        snippet_max_new_tokens=6,
    )
    return model, processor, folder


def test_saved_folder_layout(saved):
    model, processor, folder = saved
    config = json.loads((folder / "config.json").read_text())
    stem = (
        "modeling_thinker4d_qwen2_5_vl"
        if config["model_type"] == "thinker4d_qwen2_5_vl"
        else "modeling_thinker4d_qwen3_vl"
    )
    assert config["auto_map"] == {
        "AutoConfig": f"configuration_thinker4d.{type(model.config).__name__}",
        "AutoModelForImageTextToText": f"{stem}.{type(model).__name__}",
    }
    for name in (
        "configuration_thinker4d.py",
        f"{stem}.py",
        "modeling_thinker4d_base.py",
        "generation.py",
        "imagery.py",
    ):
        assert (folder / name).read_bytes() == (Path(thinker4d.models.__file__).parent / name).read_bytes()
    # The loop ships once per consumer, byte for byte from the single source file.
    source = Path(thinker4d.models.generation.__file__).read_bytes()
    assert (folder / "custom_generate" / "generation.py").read_bytes() == source
    assert "from .generation import latent_generate" in (folder / "custom_generate" / "generate.py").read_text()
    readme = ModelCard.load(folder / "custom_generate" / "README.md")
    assert "custom_generate" in readme.data.tags
    for documented in ("max_imagery_blocks", "on_imagery_limit", "latents", "latent_positions", "imagery_blocks"):
        assert f"`{documented}`" in readme.text
    # Processor beside the weights: the three tokens with the config's ids and the chat template.
    reloaded = type(processor).from_pretrained(folder)
    vocab = reloaded.tokenizer.get_vocab()
    assert [vocab[t] for t in ("<|latent_start|>", "<|latent_pad|>", "<|latent_end|>")] == [
        config["latent_start_id"],
        config["latent_pad_id"],
        config["latent_end_id"],
    ]
    assert reloaded.chat_template == processor.chat_template
    # Remote code never imports flash-attn unconditionally (transformers would then demand it at load time).
    for path in folder.rglob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+flash_attn", path.read_text(), re.MULTILINE), path


def test_round_trip_without_thinker4d(saved, tmp_path):
    """Remote code and custom_generate (stock class) in a process where thinker4d cannot be imported; same tokens."""
    model, processor, folder = saved
    inputs = _inputs(processor)
    procs = LogitsProcessorList([ForceImageryAt(model.config.latent_start_id, STEPS)])
    with torch.no_grad():
        expected = model.generate(
            **inputs, max_new_tokens=MAX_NEW, do_sample=False, logits_processor=procs, return_dict_in_generate=True
        )
    assert expected.imagery_blocks.tolist() == [2, 2]

    card = (folder / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", card, re.DOTALL).group(1)
    (tmp_path / "snippet.py").write_text(snippet)
    (tmp_path / "check.py").write_text(SUBPROCESS_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2")
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            str(tmp_path / "check.py"),
            str(folder),
            str(tmp_path / "snippet.py"),
            json.dumps(PROMPTS),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.split("REPORT ", 1)[1])
    assert report["thinker4d_modules"] == [] and report["files_from_src"] == []
    assert report["remote_class"].startswith("transformers_modules.")
    assert report["stock_class"].startswith("transformers.models.")

    want = expected.sequences.tolist()
    assert report["remote"]["sequences"] == want
    assert report["remote"]["imagery_blocks"] == [2, 2]
    assert report["remote"]["latent_positions"] == [p.tolist() for p in expected.latent_positions]
    assert report["custom_generate"]["sequences"] == want
    assert report["custom_generate"]["imagery_blocks"] == [2, 2]
    # Without custom_generate the stock class opens the blocks but never feeds latents back (the paper's release).
    pad_id = model.config.latent_pad_id
    assert all(pad_id not in row for row in report["stock_plain"])
    assert all(row.count(pad_id) == 2 * model.config.latent_size for row in want)
    # The card's snippet ran to the end.
    assert "imagery blocks:" in proc.stdout


TOKENIZER_SCRIPT = """
import contextlib, io, json, sys
if sys.argv[2] == "without":
    sys.modules["thinker4d"] = None  # thinker4d cannot be imported in this process
else:
    import thinker4d.models  # noqa: F401 -- registers the thinker4d classes
from transformers import AutoProcessor, AutoTokenizer

report = {}
for name, kwargs in [("false", {"trust_remote_code": False}), ("unset", {})]:
    if sys.argv[2] == "without" or name == "unset":
        for loader in (AutoTokenizer, AutoProcessor):
            shown = io.StringIO()
            with contextlib.redirect_stdout(shown):  # input() writes its prompt to stdout when stdin is not a tty
                loaded = loader.from_pretrained(sys.argv[1], **kwargs)
            report[f"{loader.__name__}/{name}"] = [type(loaded).__module__, "[y/N]" in shown.getvalue()]
print("REPORT " + json.dumps(report))
"""


@pytest.mark.parametrize("thinker4d_importable", [False, True], ids=["without_thinker4d", "with_thinker4d"])
def test_stock_tokenizer_and_processor_load_without_a_prompt(saved, tmp_path, thinker4d_importable):
    """The tokenizer and processor of a saved folder are stock transformers classes. They load without remote code
    and without transformers' "run the custom code? [y/N]" prompt (stdin closed, so a prompt would end at once) when
    `trust_remote_code=False` is passed or thinker4d's classes are registered; left unset in a process without
    thinker4d, transformers asks (config.json's `auto_map["AutoConfig"]`, which `AutoModelForImageTextToText` needs),
    as docs/hub.md says."""
    _, _, folder = saved
    (tmp_path / "load.py").write_text(TOKENIZER_SCRIPT)
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    mode = "with" if thinker4d_importable else "without"
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "load.py"), str(folder), mode],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.split("REPORT ", 1)[1])
    assert all(module.startswith("transformers.models.") for module, _ in report.values()), report
    assert not (tmp_path / "modules").exists()  # no remote code was fetched or run
    prompted = {key for key, (_, asked) in report.items() if asked}
    if thinker4d_importable:
        assert set(report) == {"AutoTokenizer/unset", "AutoProcessor/unset"} and prompted == set()
    else:
        assert prompted == {"AutoTokenizer/unset", "AutoProcessor/unset"}, report


def test_model_card(saved):
    model, _, folder = saved
    card = ModelCard.load(folder / "README.md")
    assert card.data.license == "apache-2.0"
    assert card.data.base_model == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert card.data.datasets == ["me/4d-cot"]
    assert card.data.pipeline_tag == "image-text-to-text"
    assert set(hub.MODEL_TAGS) <= set(card.data.tags)
    text = card.text
    assert "https://huggingface.co/papers/2605.05997" in text
    assert f"K = {model.config.latent_size}" in text
    assert "| accuracy (micro, errors count as wrong) | 57.5% |" in text
    assert "| macro accuracy (mean over subtasks) | 56.2% |" in text
    assert "| camera_motion | 75.0% | 24 |" in text
    assert "| object_direction | 37.5% | 16 |" in text
    assert "| `learning_rate` | 1e-05 |" in text
    assert "| `imagery_weight` | 1 |" in text
    assert "hub_token" not in text and "hf_should_not_appear" not in text
    for section in ("## Limitations", "## Citation", "## Training data", "DIFT then 4DRL"):
        assert section in text


def test_training_hyperparameters_from_training_arguments(tmp_path):
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=3e-6, warmup_steps=10, hub_token="hf_secret1")
    rows = dict(hub.training_hyperparameters(args))
    assert rows["learning_rate"] == "3e-06" and rows["warmup_steps"] == "10"
    assert rows["per_device_train_batch_size"] == "8"  # always shown, even at its default
    assert "weight_decay" not in rows  # default values are left out
    assert "output_dir" not in rows and not any("token" in k for k in rows)
    with pytest.raises(TypeError, match="training_args must be a TrainingArguments-like dataclass"):
        hub.training_hyperparameters(42)
    with pytest.raises(FileNotFoundError, match="Training config .*missing.yaml does not exist"):
        hub.training_hyperparameters(tmp_path / "missing.yaml")


def test_eval_summary_errors(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"total": 3}))
    with pytest.raises(ValueError, match="has no 'accuracy' field"):
        hub.load_eval_summary(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="nope.json does not exist"):
        hub.load_eval_summary(tmp_path / "nope.json")


def test_save_for_hub_rejects_stock_model(tiny_base_model, tiny_processor, tmp_path):
    with pytest.raises(TypeError, match="save_for_hub needs a thinker4d model.*thinker4d.from_base"):
        hub.save_for_hub(tiny_base_model, tiny_processor, tmp_path / "x")


def test_write_remote_code_rejects_stock_folder(tiny_base_model, tmp_path):
    tiny_base_model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a thinker4d model"):
        hub.write_remote_code(tmp_path)


def test_pick_attn_implementation(monkeypatch):
    assert hub.pick_attn_implementation("cpu") == "sdpa"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "flash_attn" else None)
    assert hub.pick_attn_implementation("cuda:0") == "flash_attention_2"
    assert hub.pick_attn_implementation("cpu") == "sdpa"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert hub.pick_attn_implementation() == "sdpa"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert hub.pick_attn_implementation("cuda") == "sdpa"
