"""The lowest-versions job tests what pyproject.toml promises: its pins are the dependency floors, and the test files it
runs exist."""

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version


try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / ".ci" / "constraints-lowest.txt"
LOWEST_JOB = ROOT / ".ci" / "lowest.sh"


def declared_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines += [x for x in extra if not x.startswith("thinker4d[")]
    reqs = {}
    for line in lines:
        req = Requirement(line)
        reqs[re.sub(r"[-_.]+", "-", req.name).lower()] = req
    return reqs


def lowest_pins() -> dict[str, Version]:
    pins = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name.strip()).lower()] = Version(version.strip())
    return pins


def floor(req: Requirement) -> Version | None:
    lows = [Version(s.version) for s in req.specifier if s.operator == ">="]
    return max(lows) if lows else None


def test_lowest_pins_are_the_declared_floors():
    reqs, pins = declared_requirements(), lowest_pins()
    assert {"transformers", "trl"} <= set(pins), "the lowest job must pin transformers and trl"
    for name, pinned in pins.items():
        assert name in reqs, f"{CONSTRAINTS.name} pins {name}, which pyproject.toml does not depend on"
        req = reqs[name]
        assert floor(req) == pinned, (
            f"pyproject.toml allows {req}, but the lowest-versions job tests {name}=={pinned}: make the floor and the pin "
            "the same version"
        )
        assert req.specifier.contains(pinned), f"{name}=={pinned} is outside pyproject.toml's {req}"


def test_lowest_job_runs_test_files_that_exist():
    match = re.search(r"^TESTS=\(([^)]*)\)", LOWEST_JOB.read_text(encoding="utf-8"), re.M)
    assert match, f"{LOWEST_JOB.name} has no TESTS=(...) line"
    files = match.group(1).split()
    assert files and all(f.startswith("tests/test_") for f in files), files
    missing = [f for f in files if not (ROOT / f).is_file()]
    assert not missing, f"{LOWEST_JOB.name} runs test files that do not exist: {missing}"
