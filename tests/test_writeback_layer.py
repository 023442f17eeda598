"""Writeback sits under the core: it reaches the core only through its host protocol.

Every import counts (at the top, inside functions, under TYPE_CHECKING): of the core,
writeback may name the Node record and the namespace, never the file system, and nothing
of the service or the command line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fusestore.writeback

WRITEBACK = Path(fusestore.writeback.__file__).parent
ALLOWED_CORE = {"fusestore.core.nodes", "fusestore.core.namespace"}


def imported(path: Path) -> set[str]:
    """The absolute names of every module `path` imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ["fusestore", "writeback"][: 2 - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_writeback_imports_no_layer_above_it() -> None:
    modules = sorted(WRITEBACK.glob("*.py"))
    assert len(modules) > 5
    for path in modules:
        for name in imported(path):
            above = name.startswith(("fusestore.service", "fusestore.cli", "fusestore.api"))
            assert not above, f"{path.name} imports {name}"
            if name.startswith("fusestore.core.") and name.count(".") == 2:
                assert name in ALLOWED_CORE, f"{path.name} imports {name}"
            assert name != "fusestore.core", f"{path.name} imports the core package (its file system)"


def test_writeback_never_names_the_file_system() -> None:
    for path in sorted(WRITEBACK.glob("*.py")):
        assert "Filesystem" not in path.read_text(), f"{path.name} names the core's Filesystem"
