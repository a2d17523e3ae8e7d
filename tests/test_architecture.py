"""The package keeps the layering docs/design.md#architecture states: every module imports only from its own layer or
the layers below it, the packages import each other without cycles, `models/` stands alone (it ships as remote code),
and no source file grows past the size limit unless the doc says why.

The layers are read from the doc's table, so the doc and this test cannot drift apart: a package missing from the
table, or an import the table does not allow, fails here."""

import ast
import re
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "thinker4d"
DESIGN = ROOT / "docs" / "design.md"
MAX_LINES = 450
# Files allowed past MAX_LINES, with the reason (the doc's Architecture section names each of them too).
LONG_FILES = {
    "src/thinker4d/models/generation.py": "the latent decoding loop is copied byte for byte into a Hub folder's "
    "custom_generate/, so it stays one self-contained file",
}
# What the remote-code files may import besides the standard library and their siblings: transformers and its own
# dependencies (huggingface_hub), since a folder loaded with trust_remote_code has nothing else; and deepspeed, which
# `conversion.py` imports only when a parameter is ZeRO-3 partitioned (so it is installed), as transformers does.
MODELS_MAY_IMPORT = {"torch", "transformers", "huggingface_hub", "deepspeed"}


def architecture_section() -> str:
    text = DESIGN.read_text()
    match = re.search(r"^## Architecture\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert match, f"{DESIGN.relative_to(ROOT)} has no '## Architecture' section"
    return match.group(1)


def documented_layers() -> dict[str, int]:
    """`{unit: layer}` from the doc's `| layer | package | owns |` table (`data/` -> `data`, `errors.py` -> `errors`)."""
    layers = {}
    for number, cell in re.findall(r"^\|\s*(\d+)\s*\|\s*([^|]+?)\s*\|", architecture_section(), flags=re.M):
        for name in re.findall(r"`([^`]+)`", cell):
            unit = name.removesuffix("/").removesuffix(".py")
            assert unit not in layers, f"{unit} is listed twice in the Architecture table of {DESIGN.name}"
            layers[unit] = int(number)
    return layers


def unit_of(module: str) -> str:
    """The layered unit a `thinker4d.*` module belongs to: its sub-package or top-level module (`__init__` for the
    package's own `__init__.py`)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def root_lazy_names() -> dict[str, str]:
    """The public names `thinker4d/__init__.py` loads on first use, and the module each comes from."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_LAZY" for t in node.targets):
            return ast.literal_eval(node.value)
    return {}


def imported_modules(package: str, text: str, lazy: dict[str, str]) -> list[tuple[int, str]]:
    """`(line, module)` for every thinker4d module the source `text` of a module in `package` imports, at module level
    or inside a function.

    `from thinker4d import DIFTTrainer` counts as importing the module the name is loaded from; `import thinker4d`
    counts through the attributes used on it (`thinker4d.from_base` imports `thinker4d.models`)."""
    tree = ast.parse(text)
    found, binds_root = [], False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "thinker4d" or alias.name.startswith("thinker4d."):
                    found.append((node.lineno, alias.name))
                    binds_root |= alias.asname is None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source != "thinker4d" and not source.startswith("thinker4d."):
                continue
            for alias in node.names:
                if source == "thinker4d":
                    target = lazy.get(
                        alias.name, "thinker4d" if alias.name.startswith("__") else f"thinker4d.{alias.name}"
                    )
                    found.append((node.lineno, target))
                else:
                    found.append((node.lineno, source))
    if binds_root:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "thinker4d":
                found.append((node.lineno, lazy.get(node.attr, f"thinker4d.{node.attr}")))
    return found


def source_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if (p.parent / "__init__.py").is_file())


def package_units() -> set[str]:
    units = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"} | {"__init__"}
    return units | {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}


@pytest.fixture(scope="module")
def edges() -> list[tuple[str, int, str, str]]:
    """`(file, line, from unit, to unit)` for every import between two different units."""
    lazy = root_lazy_names()
    out = set()
    for path in source_files():
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        source = unit_of(name)
        for line, target in imported_modules(package, path.read_text(), lazy):
            if unit_of(target) != source:
                out.add((path.relative_to(ROOT).as_posix(), line, source, unit_of(target)))
    return sorted(out)


def test_the_import_parser_resolves_what_the_rule_depends_on():
    # A guard against a parser that silently finds nothing: relative, function-level and lazy-name imports.
    lazy = root_lazy_names()
    assert lazy["DIFTTrainer"] == "thinker4d.trainers" and lazy["from_base"] == "thinker4d.models"
    assert sorted(m for _, m in imported_modules("thinker4d.data", SAMPLE, lazy)) == [
        "thinker4d",
        "thinker4d",
        "thinker4d.data.card",
        "thinker4d.errors",
        "thinker4d.eval",
        "thinker4d.hub.cards",
        "thinker4d.models",
        "thinker4d.trainers",
    ]
    assert unit_of("thinker4d") == "__init__" and unit_of("thinker4d.hub.cards") == "hub"


SAMPLE = """
from .card import render_dataset_card
from ..errors import UserError


def f():
    from thinker4d.hub.cards import render_model_card
    from thinker4d import DIFTTrainer, __version__
    from .. import eval
    import thinker4d

    return thinker4d.from_base
"""


def test_every_package_has_a_layer_in_the_doc():
    layers = documented_layers()
    missing = sorted(package_units() - set(layers))
    assert not missing, (
        f"{', '.join(missing)} under src/thinker4d/ have no row in the Architecture table of docs/design.md; "
        "add each with its layer and what it owns."
    )
    gone = sorted(set(layers) - package_units())
    assert not gone, f"The Architecture table of docs/design.md lists {', '.join(gone)}, which src/thinker4d/ lacks."


def test_no_module_imports_from_a_layer_above_its_own(edges):
    layers = documented_layers()
    upward = [
        f"{file}:{line}: {src} (layer {layers[src]}) imports {dst} (layer {layers[dst]})"
        for file, line, src, dst in edges
        if src in layers and dst in layers and layers[dst] > layers[src]
    ]
    assert not upward, "Imports against the layer order of docs/design.md#architecture:\n" + "\n".join(upward)


def test_packages_import_each_other_without_cycles(edges):
    graph: dict[str, set[str]] = {}
    for _, _, src, dst in edges:
        graph.setdefault(src, set()).add(dst)

    def cycle_from(node, path):
        if node in path:
            return path[path.index(node) :] + [node]
        for nxt in sorted(graph.get(node, ())):
            found = cycle_from(nxt, path + [node])
            if found:
                return found
        return None

    for start in sorted(graph):
        cycle = cycle_from(start, [])
        if cycle:
            where = [f"{f}:{n}" for f, n, s, d in edges if (s, d) in zip(cycle, cycle[1:])]
            pytest.fail(f"Import cycle {' -> '.join(cycle)} ({', '.join(where[:6])})")


def test_models_import_only_models_torch_and_transformers():
    # save_pretrained copies models/ flat next to config.json as remote code: a thinker4d import there breaks the
    # folder for anyone without thinker4d installed.
    problems = []
    for path in sorted((PACKAGE / "models").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                if node.level > 1 or node.module is None:
                    problems.append(f"{path.name}:{node.lineno}: import from outside models/")
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in MODELS_MAY_IMPORT:
                    problems.append(f"{path.name}:{node.lineno}: imports {name}")
    assert not problems, "models/ must import only torch, transformers and sibling files:\n" + "\n".join(problems)


def test_no_source_file_is_longer_than_the_limit_without_a_reason():
    section = architecture_section()
    for path, reason in LONG_FILES.items():
        assert (ROOT / path).is_file(), f"LONG_FILES names {path}, which does not exist; remove it."
        assert Path(path).name in section, f"docs/design.md#architecture does not say why {path} is long ({reason})."
    too_long = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        n = len(path.read_text().splitlines())
        if n > MAX_LINES and rel not in LONG_FILES:
            too_long.append(f"{rel}: {n} lines")
    assert not too_long, (
        f"Source files over {MAX_LINES} lines (split them by what they own, or add them to LONG_FILES with the "
        "reason and say why in docs/design.md#architecture):\n" + "\n".join(too_long)
    )
