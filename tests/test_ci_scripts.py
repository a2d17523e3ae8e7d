"""`.ci/clone-venv.sh`: the CI's side environments start as hard-linked copies of another one. The copy must be a
working environment of its own, and nothing done to it may change the environment it came from."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / ".ci" / "clone-venv.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or os.name != "posix", reason="needs bash and hard links")


def _clone(src: Path, dst: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), str(src), str(dst)], capture_output=True, text=True, timeout=120)


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A small virtual environment (no pip) with a package, a console script and a CI stamp."""
    venv = tmp_path_factory.mktemp("envs") / "src-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    package = _site_packages(venv) / "sharedpkg"
    package.mkdir()
    (package / "__init__.py").write_text("VALUE = 'from src'\n")
    (venv / "bin" / "tool").write_text(f"#!{venv}/bin/python\nimport sharedpkg\nprint(sharedpkg.VALUE)\n")
    (venv / "bin" / "tool").chmod(0o755)
    (venv / ".thinker4d-lowest-stamp").write_text("built from src\n")
    return venv


def test_the_copy_shares_files_and_is_an_environment_of_its_own(source, tmp_path):
    dst = tmp_path / "side" / "venv-copy"
    proc = _clone(source, dst)
    assert proc.returncode == 0, proc.stderr
    module = "sharedpkg/__init__.py"
    assert os.stat(_site_packages(dst) / module).st_ino == os.stat(_site_packages(source) / module).st_ino
    prefix = subprocess.run(
        [str(dst / "bin" / "python"), "-c", "import sys, sharedpkg; print(sys.prefix); print(sharedpkg.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert Path(prefix[0]).resolve() == dst.resolve()
    assert Path(prefix[1]).resolve().is_relative_to(dst.resolve())
    # The script names the copy's interpreter; the source's script still names the source's.
    assert (dst / "bin" / "tool").read_text().splitlines()[0] == f"#!{dst.resolve()}/bin/python"
    assert (source / "bin" / "tool").read_text().splitlines()[0] == f"#!{source}/bin/python"
    assert subprocess.run([str(dst / "bin" / "tool")], capture_output=True, text=True).stdout == "from src\n"
    # A stamp says what an environment was built from: the copy has none, and the source keeps its own.
    assert not (dst / ".thinker4d-lowest-stamp").exists()
    assert (source / ".thinker4d-lowest-stamp").read_text() == "built from src\n"


def test_installing_into_the_copy_leaves_the_source_as_it_was(source, tmp_path):
    dst = tmp_path / "venv-copy"
    assert _clone(source, dst).returncode == 0
    # What pip does when it installs over a package: remove the old file, write a new one under the same name.
    target = _site_packages(dst) / "sharedpkg" / "__init__.py"
    target.unlink()
    target.write_text("VALUE = 'from the copy'\n")
    (_site_packages(dst) / "onlyincopy.py").write_text("")
    code = "import sharedpkg; print(sharedpkg.VALUE)"
    for venv, want in ((dst, "from the copy"), (source, "from src")):
        out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == want
    assert not (_site_packages(source) / "onlyincopy.py").exists()


def test_a_source_that_is_not_an_environment_is_refused_and_leaves_no_copy(tmp_path):
    (tmp_path / "not-a-venv").mkdir()
    dst = tmp_path / "venv-copy"
    (dst / "bin").mkdir(parents=True)  # a stale copy from an earlier run is removed, not taken for an environment
    proc = _clone(tmp_path / "not-a-venv", dst)
    assert proc.returncode != 0
    assert "is not a virtual environment" in proc.stderr
    assert not dst.exists()
