"""The repository documents itself: every file its docs and docstrings point at is in the repository, and no tracked
file carries a path of the machine it was written on."""

import re
import subprocess
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".jinja", ".txt", ".cfg", ".json", ".sh", ""}
# Where a user reads about the package: prose there may only point at files they have.
DOC_SCOPE = ("src/", "docs/", "examples/", "benchmarks/", "README.md", "CHANGELOG.md", "Makefile")

# [text](target) in markdown; targets with a scheme (https:, mailto:) or only an anchor are not files.
MD_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
# A path inside this repository written out in prose: docs/models.md, examples/recipes/.../config_paper.yaml.
REPO_PATH = re.compile(
    r"(?<![\w./-])((?:docs|examples|benchmarks|tests|model_cards|src)/[\w./-]*\w\.(?:md|py|ya?ml|jinja|json|toml))\b"
)
# Notes that lived next to the repository while it was written, not in it.
OUTSIDE_NOTES = re.compile(r"reference\s+notes|\.\./shared/|\bDESIGN\.md\b|\bdefects?\s+\d+|learnability\.md")
# Absolute paths of a developer machine: /work/..., /home/<user>/..., /Users/<user>/..., /tmp/... (a URL's path such as
# https://host/work/... is preceded by a host character and does not match).
MACHINE_PATH = re.compile(r"(?<![\w.~/:%-])/(?:work|tmp|home/[\w.-]+|Users/[\w.-]+)/")


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        files = out.splitlines()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file outside hidden/build folders
        skip = {".git", ".venv", "build", "dist", "__pycache__", ".pytest_cache", ".ruff_cache"}
        files = [
            p.relative_to(ROOT).as_posix()
            for p in ROOT.rglob("*")
            if p.is_file() and not skip.intersection(p.relative_to(ROOT).parts) and ".egg-info" not in str(p)
        ]
    return sorted(f for f in files if Path(f).suffix in TEXT_SUFFIXES and f != THIS and (ROOT / f).is_file())


def read(path: str) -> str:
    return (ROOT / path).read_text(encoding="utf-8", errors="replace")


def line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def test_regexes_find_what_they_are_for():
    # A guard against a pattern that silently matches nothing.
    assert MD_LINK.findall("see [models](models.md#x) and [hub](https://hf.co)") == ["models.md#x", "https://hf.co"]
    assert REPO_PATH.findall("(docs/quickstart.md), `src/thinker4d/cli.py`, docs/<area>.md") == [
        "docs/quickstart.md",
        "src/thinker4d/cli.py",
    ]
    assert OUTSIDE_NOTES.search("(reference\nnotes §3)") and OUTSIDE_NOTES.search("see defects 9 and 22")
    assert OUTSIDE_NOTES.search("../shared/benchmark-formats.md") and OUTSIDE_NOTES.search("the DESIGN.md schema")
    assert not OUTSIDE_NOTES.search("docs/design.md")
    for bad in ("/work/main/.venv", "--dry-run /tmp/preview", "'/home/alice/x'", "/Users/bob/data"):
        assert MACHINE_PATH.search(bad), bad
    for fine in ("tmp_path / 'x'", "https://example.com/work/a", "out/tmp/x", "~/tmp/x", "/usr/bin/env"):
        assert not MACHINE_PATH.search(fine), fine


def test_docs_link_only_to_files_in_the_repository():
    files = tracked_files()
    problems = []
    for path in files:
        if not path.startswith(DOC_SCOPE):
            continue
        text = read(path)
        if path.endswith(".md"):
            for m in MD_LINK.finditer(text):
                target = m.group(1).split("#", 1)[0]
                if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target):
                    continue
                if not (ROOT / path).parent.joinpath(target).exists():
                    problems.append(f"{path}:{line_of(text, m.start())}: link to missing {m.group(1)}")
        for m in REPO_PATH.finditer(text):
            if not (ROOT / m.group(1)).exists():
                problems.append(f"{path}:{line_of(text, m.start())}: {m.group(1)} is not in the repository")
        for m in OUTSIDE_NOTES.finditer(text):
            problems.append(
                f"{path}:{line_of(text, m.start())}: {m.group(0)!r} refers to notes outside the repository "
                "(point at docs/paper_differences.md or docs/design.md instead)"
            )
    assert not problems, "\n".join(problems)


def test_no_developer_machine_paths_in_tracked_files():
    problems = []
    for path in tracked_files():
        text = read(path)
        for m in MACHINE_PATH.finditer(text):
            end = text.find("\n", m.start())
            snippet = text[m.start() : end if end >= 0 else None][:60]
            problems.append(f"{path}:{line_of(text, m.start())}: machine path {snippet!r}")
    assert not problems, "\n".join(problems)
