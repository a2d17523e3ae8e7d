"""`thinker4d push`: staging, dry run == upload, calls huggingface_hub receives (API-level test double), secrets."""

import json
import logging
from pathlib import Path

import pytest
from huggingface_hub import DatasetCard, ModelCard

import thinker4d
from thinker4d import hub
from thinker4d.commands import push


SECRETS = {
    "HF_TOKEN": "hf_FAKEtokenPLANTEDforTHEtest123",
    "HUGGING_FACE_HUB_TOKEN": "hf_FAKEsecondTOKENplanted456",
    "GEMINI_API_KEY": "AIzaFAKEgeminiKEYplanted789",
    "GOOGLE_API_KEY": "AIzaFAKEgoogleKEYplanted000",
}


class FakeHfApi:
    """Records the calls `push_folder` makes and snapshots the folder handed to `upload_folder`."""

    calls: list = []
    uploaded: dict = {}

    def __init__(self, *args, **kwargs):
        FakeHfApi.calls.append(("__init__", args, kwargs))

    def create_repo(self, **kwargs):
        FakeHfApi.calls.append(("create_repo", (), kwargs))
        return f"https://huggingface.co/{kwargs['repo_id']}"

    def create_branch(self, **kwargs):
        FakeHfApi.calls.append(("create_branch", (), kwargs))

    def upload_folder(self, **kwargs):
        FakeHfApi.calls.append(("upload_folder", (), {k: v for k, v in kwargs.items() if k != "folder_path"}))
        root = Path(kwargs["folder_path"])
        FakeHfApi.uploaded = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{kwargs['repo_id']}/commit/0"})()


@pytest.fixture
def fake_api(monkeypatch):
    FakeHfApi.calls, FakeHfApi.uploaded = [], {}
    monkeypatch.setattr(hub.push, "HfApi", FakeHfApi)  # where push_folder looks it up
    return FakeHfApi


@pytest.fixture
def secrets(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return SECRETS


def _tree(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _assert_clean(texts):
    for text in texts:
        for value in SECRETS.values():
            assert value not in text


@pytest.fixture
def checkpoint(tmp_path):
    """A DIFT/GRPO-style checkpoint folder: weights, processor, and training leftovers that must not be uploaded."""
    from thinker4d.tiny import build_tiny_model, build_tiny_processor

    processor = build_tiny_processor("qwen2_5_vl")
    model, processor = thinker4d.from_base(build_tiny_model("qwen2_5_vl", processor), processor)
    folder = tmp_path / "ckpt"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / "optimizer.pt").write_bytes(b"optimizer state")
    (folder / "training_args.bin").write_bytes(b"pickle")
    (folder / "stale_modeling.py").write_text("raise RuntimeError")
    (folder / "training_args.json").write_text(
        json.dumps({"learning_rate": 1e-5, "ce_weight": 0.1, "hub_token": SECRETS["HF_TOKEN"], "output_dir": "out"})
    )
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"benchmark": "synthdsr", "accuracy": 0.5, "macro_accuracy": 0.25, "total": 4}))
    return folder, summary


def test_push_model_dry_run_equals_upload(checkpoint, tmp_path, fake_api, secrets, caplog, capsys):
    folder, summary = checkpoint
    caplog.set_level(logging.DEBUG)
    common = [str(folder), "--repo-id", "me/tiny-4d", "--eval-summary", str(summary), "--base-model", "Qwen/X"]
    assert push.main([*common, "--dry-run", str(tmp_path / "preview")]) == 0
    assert fake_api.calls == []  # a dry run talks to nobody
    assert push.main([*common, "--private", "--revision", "v1"]) == 0

    preview = _tree(tmp_path / "preview")
    assert preview == fake_api.uploaded
    names = set(preview)
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja", "README.md"} <= names
    assert {"custom_generate/generate.py", "custom_generate/generation.py", "custom_generate/README.md"} <= names
    assert {"modeling_thinker4d_qwen2_5_vl.py", "modeling_thinker4d_base.py", "configuration_thinker4d.py"} <= names
    assert not names & {"optimizer.pt", "training_args.bin", "stale_modeling.py", "training_args.json"}
    assert json.loads(preview["config.json"])["auto_map"]["AutoModelForImageTextToText"].endswith(
        "Thinker4DQwen2_5_VLForConditionalGeneration"
    )
    card = ModelCard(preview["README.md"].decode())
    assert card.data.base_model == "Qwen/X"
    assert "| `ce_weight` | 0.1 |" in card.text and "| accuracy (micro, errors count as wrong) | 50.0% |" in card.text

    methods = [name for name, _, _ in fake_api.calls]
    assert methods == ["__init__", "create_repo", "create_branch", "upload_folder"]
    assert fake_api.calls[0][1:] == ((), {})  # no token passed around: huggingface_hub reads its own sources
    assert fake_api.calls[1][2] == {"repo_id": "me/tiny-4d", "repo_type": "model", "private": True, "exist_ok": True}
    assert fake_api.calls[2][2] == {"repo_id": "me/tiny-4d", "repo_type": "model", "branch": "v1", "exist_ok": True}
    upload = fake_api.calls[3][2]
    assert upload["repo_id"] == "me/tiny-4d" and upload["repo_type"] == "model" and upload["revision"] == "v1"
    assert upload["commit_message"].startswith("Upload model with thinker4d")

    out = capsys.readouterr()
    _assert_clean([b.decode("latin-1") for b in preview.values()] + [caplog.text, out.out, out.err])


def test_push_main_branch_skips_create_branch(checkpoint, fake_api):
    folder, _ = checkpoint
    assert push.main([str(folder), "--repo-id", "me/tiny-4d"]) == 0
    assert [name for name, _, _ in fake_api.calls] == ["__init__", "create_repo", "upload_folder"]
    assert fake_api.calls[1][2]["private"] is None
    assert fake_api.calls[2][2]["revision"] is None


def test_push_refuses_a_file_holding_a_secret(checkpoint, tmp_path, fake_api, secrets):
    folder, _ = checkpoint
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["note"] = f"token {SECRETS['GEMINI_API_KEY']}"
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(RuntimeError, match=r"tokenizer_config\.json \(GEMINI_API_KEY\)") as err:
        push.main([str(folder), "--repo-id", "me/tiny-4d"])
    assert SECRETS["GEMINI_API_KEY"] not in str(err.value)
    assert [name for name, _, _ in fake_api.calls] == []


def test_push_model_bad_inputs(checkpoint, tmp_path, tiny_base_model):
    folder, _ = checkpoint
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="--dry-run folder .*busy exists and is not empty"):
        push.main([str(folder), "--repo-id", "me/x", "--dry-run", str(tmp_path / "busy")])
    tiny_base_model.save_pretrained(tmp_path / "stock")
    with pytest.raises(ValueError, match="not a thinker4d model .*thinker4d.from_base"):
        push.main([str(tmp_path / "stock"), "--repo-id", "me/x", "--dry-run", str(tmp_path / "o1")])
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="has no \\*.safetensors weights"):
        push.main([str(folder), "--repo-id", "me/x", "--dry-run", str(tmp_path / "o2")])
    assert push.main([str(tmp_path / "nowhere"), "--repo-id", "me/x"]) == 2


def _cot_dataset(n, task_cycle, size=8):
    import numpy as np
    from datasets import Dataset

    from thinker4d.data.writer import features as cot_features

    image = np.zeros((size, size, 3), dtype=np.uint8)
    rows = {
        "id": [f"clip{i}/{task_cycle[i % len(task_cycle)]}/0" for i in range(n)],
        "clip_id": [f"clip{i}" for i in range(n)],
        "frames": [[image, image] for _ in range(n)],
        "fps": [1.0] * n,
        "task": [task_cycle[i % len(task_cycle)] for i in range(n)],
        "question": ["Which way?"] * n,
        "options": [["A. Left", "B. Right"]] * n,
        "answer": ["A"] * n,
        "cot": ["<think>look <imagery> ok</think><answer>A. Left</answer>"] * n,
        "imagery": [[image] for _ in range(n)],
        "label_source": ["geometry" if i % 2 else "teacher" for i in range(n)],
        "meta": ["{}"] * n,
    }
    return Dataset.from_dict(rows, features=cot_features())


@pytest.fixture
def dataset_dir(tmp_path):
    folder = tmp_path / "cot"
    (folder / "train").mkdir(parents=True)
    (folder / "test").mkdir()
    _cot_dataset(5, ["camera_motion", "object_direction"]).to_parquet(str(folder / "train" / "part0.parquet"))
    _cot_dataset(2, ["object_speed"]).to_parquet(str(folder / "test" / "part0.parquet"))
    stats = {
        "candidates": 10,
        "kept": 7,
        "rejected": {"verify": {"answer_mismatch": 2}, "overlay": {"empty_mask": 1}},
        "pipeline": {"teacher_model": "gemini-2.5-pro", "api_key": SECRETS["GEMINI_API_KEY"], "clips": 4},
        "sources": [{"name": "synthetic world", "license": "apache-2.0", "url": "thinker4d world"}],
    }
    (folder / "synthesis_stats.json").write_text(json.dumps(stats))
    return folder


def test_push_dataset_dry_run_equals_upload(dataset_dir, tmp_path, fake_api, secrets, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    common = [str(dataset_dir), "--repo-type", "dataset", "--repo-id", "me/4d-cot", "--license", "cc-by-nc-sa-4.0"]
    assert push.main([*common, "--dry-run", str(tmp_path / "preview")]) == 0
    assert push.main(common) == 0
    preview = _tree(tmp_path / "preview")
    assert preview == fake_api.uploaded
    assert set(preview) == {"README.md", "data/train-00000-of-00001.parquet", "data/test-00000-of-00001.parquet"}
    assert fake_api.calls[1][2] == {"repo_id": "me/4d-cot", "repo_type": "dataset", "private": None, "exist_ok": True}
    assert fake_api.calls[2][2]["repo_type"] == "dataset"

    card = DatasetCard(preview["README.md"].decode())
    assert card.data.license == "cc-by-nc-sa-4.0"
    assert card.data.configs[0]["data_files"] == [
        {"split": "test", "path": "data/test-*"},
        {"split": "train", "path": "data/train-*"},
    ]
    text = card.text
    assert "| train | 5 |" in text and "| test | 2 |" in text
    assert (
        "| `camera_motion` | 3 |" in text and "| `object_direction` | 2 |" in text and "| `object_speed` | 2 |" in text
    )
    assert "| `geometry` | 3 |" in text and "| `teacher` | 4 |" in text
    assert "| verify | answer_mismatch | 2 |" in text and "| overlay | empty_mask | 1 |" in text
    assert "Kept 7 of 10 candidate questions (30.0% rejected)." in text
    assert "| `frames` | Sequence(Image) |" in text and "| `fps` | float32 |" in text
    assert "| synthetic world | apache-2.0 | thinker4d world |" in text
    assert "teacher_model: gemini-2.5-pro" in text and "api_key" not in text

    out = capsys.readouterr()
    _assert_clean([b.decode("latin-1") for b in preview.values()] + [caplog.text, out.out, out.err])


def test_stage_dataset_from_save_to_disk(tmp_path):
    from datasets import DatasetDict

    DatasetDict({"train": _cot_dataset(3, ["camera_motion"])}).save_to_disk(str(tmp_path / "disk"))
    out = hub.stage_dataset(tmp_path / "disk", tmp_path / "out", "me/d")
    assert sorted(p.name for p in (out / "data").iterdir()) == ["train-00000-of-00001.parquet"]
    assert "| `camera_motion` | 3 |" in (out / "README.md").read_text()
    with pytest.raises(FileNotFoundError, match="holds no \\*.parquet shards"):
        (tmp_path / "empty").mkdir()
        hub.stage_dataset(tmp_path / "empty", tmp_path / "out2", "me/d")


@pytest.fixture(scope="module")
def synthesis_dir(tmp_path_factory):
    """A finished `thinker4d synthesize` folder: data/ shards, .work/clips/ per-clip files, stats, COMPLETE."""
    from thinker4d.data.pipeline import SynthesisConfig, run_synthesis

    out = tmp_path_factory.mktemp("synthesis") / "cot"
    run_synthesis(
        SynthesisConfig(world_num_clips=3, world_num_frames=8, world_size=64, batch_size=3), out, progress=False
    )
    assert any((out / ".work" / "clips").glob("*.parquet"))  # the work files the push must leave out
    return out


def _staged_ids(folder: Path) -> list:
    import pyarrow.parquet as pq

    return [i for p in sorted((folder / "data").glob("*.parquet")) for i in pq.read_table(p).column("id").to_pylist()]


def test_push_synthesis_folder_stages_exactly_the_rows_load_dataset_returns(synthesis_dir, tmp_path, fake_api):
    import datasets

    source = datasets.load_dataset(str(synthesis_dir), cache_dir=str(tmp_path / "hf_cache"))
    assert list(source) == ["train"]
    want = source["train"]["id"]
    assert len(want) == len(set(want)) > 0
    preview = tmp_path / "preview"
    assert (
        push.main([str(synthesis_dir), "--repo-type", "dataset", "--repo-id", "me/cot", "--dry-run", str(preview)])
        == 0
    )
    staged = _staged_ids(preview)
    assert len(staged) == len(want) and sorted(staged) == sorted(want)
    again = datasets.load_dataset(str(preview), cache_dir=str(tmp_path / "hf_cache2"))
    assert list(again) == ["train"] and sorted(again["train"]["id"]) == sorted(want)

    card = DatasetCard((preview / "README.md").read_text())
    assert card.data.license == "apache-2.0"  # the only source's license, not a default
    assert card.data.size_categories == ["n<1K"]
    assert f"| train | {len(want)} |" in card.text
    assert "| thinker4d synthetic world | apache-2.0 |" in card.text
    assert "github.com/zhangquanchen/4DThinker" not in card.text  # the paper's code is not thinker4d

    # `thinker4d synthesize push` uploads the same folder
    from thinker4d.hub import push_dataset

    push_dataset(synthesis_dir, "me/cot")
    assert fake_api.uploaded == _tree(preview)


def test_synthesis_card_and_push_license_follow_the_sources(synthesis_dir, tmp_path):
    from thinker4d.data import writer

    own = DatasetCard((synthesis_dir / "README.md").read_text())
    assert own.data.license == "apache-2.0"
    assert writer.sources_license([]) is None
    assert writer.sources_license([{"license": "mit"}, {"license": "apache-2.0"}, {"name": "x"}]) == [
        "apache-2.0",
        "mit",
    ]
    stats = json.loads((synthesis_dir / "synthesis_stats.json").read_text())
    stats["sources"].append({"name": "SpatialVID", "license": "cc-by-nc-sa-4.0", "url": "https://example.org"})
    out = hub.stage_dataset(synthesis_dir, tmp_path / "two", "me/cot", stats=stats)
    assert DatasetCard((out / "README.md").read_text()).data.license == ["apache-2.0", "cc-by-nc-sa-4.0"]
    out = hub.stage_dataset(synthesis_dir, tmp_path / "chosen", "me/cot", stats=stats, license="cc-by-nc-sa-4.0")
    assert DatasetCard((out / "README.md").read_text()).data.license == "cc-by-nc-sa-4.0"
    out = hub.stage_dataset(synthesis_dir, tmp_path / "none", "me/cot", stats={})
    assert DatasetCard((out / "README.md").read_text()).data.license == "unknown"


def test_synthesis_card_and_pushed_card_are_one_rendering(synthesis_dir, tmp_path):
    """`thinker4d synthesize` and `thinker4d push --repo-type dataset` write the same card body for the same folder: one renderer,
    one description of the columns."""
    from thinker4d.data.writer import CARD_TITLE, COLUMN_DESCRIPTIONS

    own = DatasetCard((synthesis_dir / "README.md").read_text())
    pushed = DatasetCard((hub.stage_dataset(synthesis_dir, tmp_path / "out", "me/cot") / "README.md").read_text())
    assert own.data.pretty_name == CARD_TITLE and pushed.data.pretty_name == "cot"
    assert own.data.configs == pushed.data.configs and own.data.size_categories == pushed.data.size_categories
    assert own.data.tags == pushed.data.tags and own.data.license == pushed.data.license
    body = own.text.split("## Schema", 1)[1]
    assert body == pushed.text.split("## Schema", 1)[1]
    for name, meaning in COLUMN_DESCRIPTIONS.items():
        assert f"| `{name}` | " in body and f" | {meaning} |" in body
    stats = json.loads((synthesis_dir / "synthesis_stats.json").read_text())
    assert f"Source clips processed: {stats['clips']}" in body


def test_push_refuses_an_unfinished_synthesis(synthesis_dir, tmp_path, fake_api):
    import shutil

    from thinker4d.hub import push_dataset

    unfinished = tmp_path / "unfinished"
    shutil.copytree(synthesis_dir, unfinished)
    (unfinished / "COMPLETE").unlink()
    with pytest.raises(RuntimeError, match=r"unfinished thinker4d synthesis .*no COMPLETE marker.*--resume"):
        push.main(
            [str(unfinished), "--repo-type", "dataset", "--repo-id", "me/cot", "--dry-run", str(tmp_path / "p1")]
        )
    with pytest.raises(RuntimeError, match=r"not a finished synthesis \(no COMPLETE marker\).*--resume"):
        push_dataset(unfinished, "me/cot")
    assert fake_api.calls == []

    changed = tmp_path / "changed"
    shutil.copytree(synthesis_dir, changed)
    (changed / "COMPLETE").write_text(json.dumps({"rows": 10_000, "shards": []}))
    with pytest.raises(RuntimeError, match=r"COMPLETE records 10000 rows but its data files hold \d+.*--resume"):
        push.main([str(changed), "--repo-type", "dataset", "--repo-id", "me/cot", "--dry-run", str(tmp_path / "p2")])


# ------------------------------------------------------------------------------------------------ cards from records


def _train(model, output_dir, *, trainer="dift", steps=2, **kw):
    """A tiny run of `steps` steps from `model` (a folder), saved with `save_model` to `output_dir`; returns the
    trainer."""
    from datasets import Dataset

    from thinker4d.trainers import DIFTConfig, DIFTTrainer

    common = dict(
        output_dir=str(Path(output_dir).parent / f"{Path(output_dir).name}-run"),
        max_steps=steps,
        learning_rate=1e-3,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    if trainer == "grpo":
        import numpy as np

        from thinker4d.trainers import LatentGRPOConfig, LatentGRPOTrainer

        frames = [np.zeros((56, 56, 3), np.uint8)] * 2
        rows = [{"question": "Camera?", "options": ["Pan Left", "Pan Right"], "answer": "B", "frames": frames}] * 4
        args = LatentGRPOConfig(
            **common, per_device_train_batch_size=4, num_generations=4, max_completion_length=6, bf16=False, **kw
        )
        run = LatentGRPOTrainer(str(model), args=args, train_dataset=Dataset.from_list(rows))
    else:
        args = DIFTConfig(**common, per_device_train_batch_size=2, activation_checkpointing=False, **kw)
        run = DIFTTrainer(model=str(model), args=args, train_dataset=_cot_dataset(4, ["camera_motion"], size=56))
    run.train()
    run.save_model(str(output_dir))
    return run


@pytest.fixture
def base_folder(tmp_path):
    from thinker4d.tiny import build_tiny_model, build_tiny_processor

    processor = build_tiny_processor("qwen2_5_vl")
    folder = tmp_path / "base"
    build_tiny_model("qwen2_5_vl", processor).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def test_model_card_is_built_from_what_a_dift_run_recorded(base_folder, tmp_path, fake_api):
    folder = tmp_path / "dift"
    run = _train(base_folder, folder, steps=2)
    record = json.loads((folder / "training_stages.json").read_text())
    assert record == {
        "stages": [
            {
                "stage": "DIFT",
                "trainer": "DIFTTrainer",
                "config_class": "thinker4d.trainers.dift_config.DIFTConfig",
                "started_from": str(base_folder),
                "global_step": 2,
                "max_steps": 2,
                "epoch": run.state.epoch,
                "train_rows": 4,
            }
        ]
    }
    state = json.loads((folder / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    args = json.loads((folder / "training_args.json").read_text())
    assert args["learning_rate"] == 1e-3 and args["max_steps"] == 2 and args["mode"] == "dift"
    assert "hub_token" not in args

    preview = tmp_path / "preview"
    assert push.main([str(folder), "--repo-id", "me/tiny-dift", "--dry-run", str(preview)]) == 0
    assert not {"training_args.json", "training_stages.json", "trainer_state.json"} & set(_tree(preview))
    card = ModelCard((preview / "README.md").read_text())
    assert card.data.license == "apache-2.0"
    assert card.data.base_model is None  # it started from a local folder, not a Hub model
    text = card.text
    # the only stage the folder records, and nothing it does not
    assert "| DIFT | DIFTTrainer | 2 of 2 | 4 | a local folder |" in text
    for claim in ("4DRL", "GRPO", "reinforcement", "text-CoT SFT", "raw-QA SFT"):
        assert claim not in text, claim
    loss = [h["train_loss"] for h in state["log_history"] if "train_loss" in h][-1]
    assert f"2 optimizer steps of 2, epoch 1, last logged training loss {hub._fmt(float(loss))}." in text
    assert _section(text, "Training data").strip() == "- DIFT: 4 training rows"
    params = _section(text, "Training hyper-parameters (DIFT, the last stage)")
    for row in ("| `learning_rate` | 0.001 |", "| `max_steps` | 2 |", "| `per_device_train_batch_size` | 2 |"):
        assert row in params, row
    assert "`mode`" not in params and "`ce_weight`" not in params  # left at their defaults
    assert "`output_dir`" not in params and "`hub_token`" not in params

    # the uploader's description is shown as theirs, never as a record
    assert (
        push.main([str(folder), "--repo-id", "me/x", "--stages", "DIFT then 4DRL", "--dry-run", str(tmp_path / "s")])
        == 0
    )
    text = (tmp_path / "s" / "README.md").read_text()
    assert "The uploader describes the training as: DIFT then 4DRL (not a record; the table above is)." in text
    assert "| DIFT | DIFTTrainer | 2 of 2 | 4 | a local folder |" in text

    # a folder written before these records existed: the stage and hyper-parameters of transformers' training_args.bin
    for name in ("training_args.json", "training_stages.json", "trainer_state.json"):
        (folder / name).unlink()
    assert push.main([str(folder), "--repo-id", "me/x", "--dry-run", str(tmp_path / "old")]) == 0
    text = (tmp_path / "old" / "README.md").read_text()
    assert "| DIFT | not recorded | not recorded | not recorded | not recorded |" in text
    assert "| `learning_rate` | 0.001 |" in text and "4DRL" not in text and "trainer_state.json" not in text
    assert _section(text, "Training data").strip() == "Not recorded."
    (folder / "training_args.bin").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match=r"training_args\.bin could not be loaded .*--training-args"):
        push.main([str(folder), "--repo-id", "me/x", "--dry-run", str(tmp_path / "bad")])
    (tmp_path / "args.json").write_text(json.dumps({"learning_rate": 0.5}))  # given instead: the pickle is not needed
    assert push.main([str(folder), "--repo-id", "me/x", "--training-args", str(tmp_path / "args.json"),
                      "--dry-run", str(tmp_path / "given")]) == 0  # fmt: skip
    assert "| `learning_rate` | 0.5 |" in (tmp_path / "given" / "README.md").read_text()
    assert fake_api.calls == []


def test_stages_carry_forward_from_the_folder_a_run_started_from(base_folder, tmp_path):
    from thinker4d.trainers.records import read_stages

    _train(base_folder, tmp_path / "warmup", steps=1, mode="text_cot")
    _train(tmp_path / "warmup", tmp_path / "dift", steps=2)
    _train(tmp_path / "dift", tmp_path / "rl", trainer="grpo", steps=1)
    stages = read_stages(tmp_path / "rl")
    assert [(s["stage"], s["trainer"], s["global_step"]) for s in stages] == [
        ("text-CoT SFT", "DIFTTrainer", 1),
        ("DIFT", "DIFTTrainer", 2),
        ("4DRL", "LatentGRPOTrainer", 1),
    ]
    assert [s["started_from"] for s in stages] == [str(base_folder), str(tmp_path / "warmup"), str(tmp_path / "dift")]
    assert stages[2]["config_class"] == "thinker4d.trainers.latent_grpo_config.LatentGRPOConfig"

    out = hub.stage_model_checkpoint(tmp_path / "rl", tmp_path / "staged", "me/rl", custom_generate=False)
    text = (out / "README.md").read_text()
    rows = [line for line in _section(text, "Training").splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[1:] == [
        "| text-CoT SFT | DIFTTrainer | 1 of 1 | 4 | a local folder |",
        "| DIFT | DIFTTrainer | 2 of 2 | 4 | a local folder |",
        "| 4DRL | LatentGRPOTrainer | 1 of 1 | 4 | a local folder |",
    ]
    assert "## Training hyper-parameters (4DRL, the last stage)" in text
    assert "| `num_generations` | 4 |" in text and "| `max_completion_length` | 6 |" in text

    (tmp_path / "rl" / "training_stages.json").write_text("[1, 2]")
    with pytest.raises(
        ValueError, match=r"rl/training_stages\.json is not a thinker4d training record.*Delete the file"
    ):
        hub.stage_model_checkpoint(tmp_path / "rl", tmp_path / "staged2", "me/rl")
