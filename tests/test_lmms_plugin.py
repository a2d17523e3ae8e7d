"""The lmms-eval integration (`thinker4d.lmms`) as seen from the main environment, which has no lmms-eval: it is
declared (extra, entry point, task YAMLs shipped), its YAMLs ask with `thinker4d eval`'s settings, and nothing imports
lmms-eval until lmms-eval loads the plugin. The end-to-end comparison with `thinker4d eval` runs in the lmms-eval
environment (`tests_lmms/`, `.ci/lmms.sh`)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from thinker4d.eval.config import EvalConfig
from thinker4d.eval.tasks import TASKS
from thinker4d.lmms import TASKS_DIR


ROOT = Path(__file__).resolve().parents[1]


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!function", lambda loader, node: f"!function {loader.construct_scalar(node)}")


def task_config(path: Path) -> dict:
    """A task YAML with its `include` merged, `!function` targets kept as strings."""
    config = yaml.load(path.read_text(), Loader=_Loader)
    if "include" in config:
        base = task_config(path.parent / config.pop("include"))
        config = {**base, **config}
    return config


def test_every_thinker4d_eval_benchmark_has_a_task_with_its_settings():
    configs = {p.stem: task_config(p) for p in TASKS_DIR.glob("*.yaml")}
    assert sorted(c["dataset_kwargs"]["benchmark"] for c in configs.values()) == sorted(TASKS)
    defaults = EvalConfig()
    for name, config in configs.items():
        assert config["task"] == name and config["class"] == "!function thinker4d.lmms.task.Thinker4DTask"
        kwargs = config["dataset_kwargs"]
        frames = (kwargs["fps"], kwargs["max_frames"], kwargs["max_pixels"])
        assert frames == (defaults.fps, defaults.max_frames, defaults.max_pixels), name
        gen = config["generation_kwargs"]
        assert gen == {"max_new_tokens": defaults.max_new_tokens, "do_sample": False, "until": []}, name
        assert [m["metric"] for m in config["metric_list"]] == ["accuracy", "macro_accuracy", "accuracy_lenient"]


def test_extra_entry_point_and_package_data_are_declared():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["lmms_eval.models"] == {"thinker4d": "thinker4d.lmms:manifests"}
    extra = project["project"]["optional-dependencies"]["lmms-eval"]
    assert any(r.startswith("lmms-eval") for r in extra) and "av>=12,<16" in extra
    assert "lmms/tasks/*" in project["tool"]["setuptools"]["package-data"]["thinker4d"]
    assert (TASKS_DIR / "_default_template_yaml").is_file()


def test_thinker4d_imports_lmms_eval_only_when_lmms_eval_loads_the_plugin(tmp_path):
    # A stand-in lmms_eval that fails on import: importing thinker4d and thinker4d.lmms must not touch it, and
    # resolving the entry point (what lmms-eval does) must.
    (tmp_path / "lmms_eval").mkdir()
    (tmp_path / "lmms_eval" / "__init__.py").write_text("raise ImportError('lmms_eval was imported')\n")
    code = (
        "import sys, thinker4d, thinker4d.lmms\n"
        "from thinker4d import eval as _e\n"
        "print(thinker4d.lmms.TASKS_DIR)\n"
        "assert not [m for m in sys.modules if m.startswith('lmms_eval')]\n"
        "try:\n"
        "    thinker4d.lmms.manifests()\n"
        "except ImportError as e:\n"
        "    print('manifests:', e)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "src")])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(TASKS_DIR), "manifests: lmms_eval was imported"]
