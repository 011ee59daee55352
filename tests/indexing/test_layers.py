"""indexing/ is layered, and a build goes down through the layers, never back up.

store/ (the versions on disk and in object storage: layout, files, integrity, remote copies,
backups) is the bottom; relations/ (duplicate relations: fingerprints, the file format, the
computation, what a merge reuses) and search/ (a version opened and searched) stand on it;
build/ (the ledger and Parquet parts, the index choice, the merge plan, the version builder)
stands on those; pipeline.py, verify.py and cli.py are the top. Every import counts: module level,
inside functions and under TYPE_CHECKING. And no module imports another's private (`_x`) name:
what is shared is public where it is defined.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "indexing"

# A module of this layer (a package, or a top-level module) ... may not import these layers.
FORBIDDEN = {
    "indexing.parts": {"indexing.store", "indexing.relations", "indexing.search", "indexing.build",
                       "indexing.pipeline", "indexing.verify", "indexing.cli"},
    "indexing.store": {"indexing.build", "indexing.relations", "indexing.search", "indexing.pipeline",
                       "indexing.verify", "indexing.cli"},
    "indexing.relations": {"indexing.build", "indexing.search", "indexing.pipeline", "indexing.verify",
                           "indexing.cli"},
    "indexing.search": {"indexing.build", "indexing.relations", "indexing.pipeline", "indexing.verify",
                        "indexing.cli"},
    "indexing.build": {"indexing.pipeline", "indexing.verify", "indexing.cli"},
}


def _modules() -> dict[str, Path]:
    """Every module of indexing/ by dotted name (a package by its __init__)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _layer(name: str) -> str | None:
    """The FORBIDDEN key a module belongs to (the layer itself or a module inside it)."""
    for layer in FORBIDDEN:
        if name == layer or name.startswith(layer + "."):
            return layer
    return None


def _imports(name: str, path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module imported, name imported from it or None) for every import of the file, wherever it is."""
    package = name if _is_package(name) else name.rpartition(".")[0]
    out: list[tuple[int, str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in MODULES:  # `from indexing import relations`: the module itself
                    out.append((node.lineno, submodule, None))
                else:
                    out.append((node.lineno, base, alias.name))
    return out


def _within(target: str, layer: str) -> bool:
    return target == layer or target.startswith(layer + ".")


def test_every_module_is_parsed() -> None:
    assert "indexing.pipeline" in MODULES and len(MODULES) > 10


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_the_layers(name: str) -> None:
    layer = _layer(name)
    wrong = []
    for line, target, _ in _imports(name, MODULES[name]):
        if layer is not None and not _within(target, layer):
            for banned in FORBIDDEN[layer]:
                if _within(target, banned):
                    wrong.append(f"{MODULES[name].relative_to(REPO)}:{line}: imports {target} ({layer} may not "
                                 f"import {banned})")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_name_is_imported_from_another_module(name: str) -> None:
    wrong = [f"{MODULES[name].relative_to(REPO)}:{line}: imports {what} from {target}"
             for line, target, what in _imports(name, MODULES[name])
             if what is not None and what.startswith("_") and not what.startswith("__") and target != name]
    wrong += [f"{MODULES[name].relative_to(REPO)}:{line}: imports the private module {target}"
              for line, target, _ in _imports(name, MODULES[name])
              if any(part.startswith("_") and not part.startswith("__") for part in target.split("."))]
    assert not wrong, "\n".join(wrong)
