"""The package's layering, read from its source: no import cycle, no module over 700
lines, nothing in `fusestore/writeback/` that names the core's `Filesystem`, and no
layer importing a layer above it.

Every import counts: at module level, inside functions (late imports) and under
`TYPE_CHECKING`. Relative imports are resolved; `from pkg import name` imports the module
`pkg.name` when there is one, else `pkg`; `import a.b.c` imports `a.b.c`. Importing a
module does not count as importing the packages above it (their `__init__` runs, but a
cycle through one shows as an import of the package itself).

The layers, lowest first (a module may import its own layer and those below):

- base: `version`, `private` (directories only their user can change) and `testing`
  (S3 servers for tests and `make run`): helpers that import nothing of fusestore;
- stores: the drivers;
- cache: the persistent cache, with its inspector (`cache.inspector`);
- writeback: uploads, deletes and markers; it may import `core.nodes` (the node
  record) and `core.namespace` (the tree whose pending deletes and moves it works
  through), and nothing else of the core (`ALLOWED`); it reaches the core's state
  otherwise only through its own `WritebackHost` protocol;
- core: the FUSE-free file system;
- front: how a mount is asked for and run: `service`, `cli`, `api`, the package itself
  (it re-exports the API), `__main__`, and the mount options (`mountoptions`, `config`:
  the CLI's, the config file's and the API's, which the daemon's launch reads).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

import fusestore

ROOT = Path(fusestore.__file__).parent
MAX_LINES = 700
#: (layer, the packages and modules in it), lowest first
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("fusestore.version", "fusestore.private", "fusestore.testing")),
    ("stores", ("fusestore.stores",)),
    ("cache", ("fusestore.cache",)),
    ("writeback", ("fusestore.writeback",)),
    ("core", ("fusestore.core",)),
    (
        "front",
        (
            "fusestore",
            "fusestore.__main__",
            "fusestore.service",
            "fusestore.cli",
            "fusestore.api",
            "fusestore.config",
            "fusestore.mountoptions",
        ),
    ),
]
#: Imports of a higher layer allowed all the same: (importer's package, imported module).
ALLOWED = {
    ("fusestore.writeback", "fusestore.core.nodes"),
    ("fusestore.writeback", "fusestore.core.namespace"),
}


# -- the checker ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int

    def __str__(self) -> str:
        return f"{self.importer} (line {self.line}) imports {self.imported}"


def modules(root: Path) -> dict[str, Path]:
    """Module name -> file, for every module of the package at `root` (a package is its
    `__init__.py`)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(known: dict[str, Path]) -> list[Import]:
    """Every import of a module of `known` by a module of `known`, wherever it stands."""
    found = []
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(package, node.module, node.level)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                    for alias in node.names
                ]
            else:
                continue
            for target in targets:
                module = _known_prefix(target, known)
                if module is not None and module != name:
                    found.append(Import(name, module, node.lineno))
    return found


def _resolve(package: str, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - (level - 1)])
    return f"{base}.{module}" if module else base


def _known_prefix(target: str, known: dict[str, Path]) -> str | None:
    """`target`, or the longest package above it that is a module of `known`."""
    parts = target.split(".")
    while parts:
        if ".".join(parts) in known:
            return ".".join(parts)
        parts.pop()
    return None


def cycles(edges: Iterable[Import]) -> list[list[str]]:
    """One cycle (its modules, the first repeated at the end) for every set of modules that
    import each other (a strongly connected component of the import graph): the shortest
    through the first of them by name (`tangles` names them all)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.importer, set()).add(edge.imported)
        graph.setdefault(edge.imported, set())
    found = []
    for component in _components(graph):
        if len(component) < 2:
            continue
        start = min(component)
        # the shortest way back to `start`, within the component
        paths = {start: [start]}
        frontier = [start]
        cycle = None
        while frontier and cycle is None:
            following = []
            for module in frontier:
                for target in sorted(graph[module] & component):
                    if target == start:
                        cycle = [*paths[module], start]
                        break
                    if target not in paths:
                        paths[target] = [*paths[module], target]
                        following.append(target)
                if cycle is not None:
                    break
            frontier = following
        assert cycle is not None
        found.append(cycle)
    return sorted(found)


def tangles(edges: Iterable[Import]) -> list[list[str]]:
    """Every set of two or more modules that import each other, each sorted."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.importer, set()).add(edge.imported)
        graph.setdefault(edge.imported, set())
    return sorted(sorted(component) for component in _components(graph) if len(component) > 1)


def _components(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[module] = min(low[module], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[module])
                if low[module] == index[module]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == module:
                            break
                    found.append(component)
    return found


def too_big(known: dict[str, Path], limit: int = MAX_LINES) -> list[str]:
    found = []
    for name, path in known.items():
        lines = len(path.read_text().splitlines())
        if lines > limit:
            found.append(f"{name}: {lines} lines (at most {limit})")
    return found


def naming(known: dict[str, Path], package: str, token: str) -> list[str]:
    """Where a module of `package` names `token` (in code, a comment or a docstring)."""
    found = []
    pattern = re.compile(rf"\b{re.escape(token)}\b")
    for name, path in known.items():
        if name == package or name.startswith(package + "."):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    found.append(f"{name} line {number}: {line.strip()}")
    return found


def layer_of(module: str, layers: list[tuple[str, tuple[str, ...]]]) -> int:
    """The index in `layers` of the longest package or module `module` is in."""
    best: tuple[int, int] | None = None
    for number, (_, members) in enumerate(layers):
        for member in members:
            inside = module == member or module.startswith(member + ".")
            if inside and (best is None or len(member) > best[0]):
                best = (len(member), number)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS")
    return best[1]


def upward(
    edges: Iterable[Import],
    layers: list[tuple[str, tuple[str, ...]]],
    allowed: Collection[tuple[str, str]] = (),
) -> list[str]:
    """Every import of a higher layer, unless `allowed` (importer's package, imported)."""
    found = []
    for edge in edges:
        low, high = layer_of(edge.importer, layers), layer_of(edge.imported, layers)
        if high <= low:
            continue
        if any(
            edge.imported == imported
            and (edge.importer == package or edge.importer.startswith(package + "."))
            for package, imported in allowed
        ):
            continue
        found.append(f"{edge} ({layers[low][0]} must not import {layers[high][0]})")
    return sorted(found)


# -- the package ------------------------------------------------------------------------------

KNOWN = modules(ROOT)
EDGES = imports(KNOWN)


def report(title: str, lines: list[str]) -> str:
    return title + ":\n  " + "\n  ".join(lines)


def test_no_import_cycle() -> None:
    found = cycles(EDGES)
    lines = [
        f"{' -> '.join(cycle)}  (modules importing each other: {', '.join(tangle)})"
        for cycle, tangle in zip(found, tangles(EDGES), strict=True)
    ]
    assert not found, report("import cycles", lines)


def test_no_module_is_over_700_lines() -> None:
    found = too_big(KNOWN)
    assert not found, report("modules over 700 lines", found)


def test_writeback_never_names_the_filesystem() -> None:
    found = naming(KNOWN, "fusestore.writeback", "Filesystem")
    assert not found, report("fusestore.writeback names the core's Filesystem", found)


@pytest.mark.parametrize("layer", [name for name, _ in LAYERS[:-1]])
def test_no_layer_imports_a_higher_one(layer: str) -> None:
    found = [line for line in upward(EDGES, LAYERS, ALLOWED) if f"({layer} must not" in line]
    assert not found, report(f"{layer} imports a higher layer", found)


def test_every_module_is_in_a_layer() -> None:
    for name in KNOWN:
        layer_of(name, LAYERS)


# -- the checker can fail -------------------------------------------------------------------


def test_the_checker_finds_a_cycle_an_upward_import_a_big_module_and_a_name(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    files = {
        "__init__.py": "from .api import thing\n",
        "api.py": "thing = 1\n",
        "stores/__init__.py": "",
        "stores/low.py": "def late():\n    from ..core import high  # a late import\n",
        "core/__init__.py": "",
        "core/high.py": "import typing\nif typing.TYPE_CHECKING:\n    from pkg.stores import low\n",
        "core/nodes.py": "",
        "cache/__init__.py": "",
        "cache/big.py": "x = 1\n" * (MAX_LINES + 1),
        "cache/ok.py": "import pkg.stores.low\nfrom pkg import thing\nfrom . import big\n",
        "writeback/__init__.py": "",
        "writeback/up.py": "from ..core.nodes import Node  # allowed\n# the Filesystem is not ours\n",
    }
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    layers = [
        ("stores", ("pkg.stores",)),
        ("cache", ("pkg.cache",)),
        ("writeback", ("pkg.writeback",)),
        ("core", ("pkg.core",)),
        ("front", ("pkg", "pkg.api")),
    ]
    known = modules(package)
    edges = imports(known)
    assert {(e.importer, e.imported) for e in edges} == {
        ("pkg", "pkg.api"),
        ("pkg.stores.low", "pkg.core.high"),
        ("pkg.core.high", "pkg.stores.low"),
        ("pkg.cache.ok", "pkg.stores.low"),
        ("pkg.cache.ok", "pkg"),  # `thing` is no module: the package itself
        ("pkg.cache.ok", "pkg.cache.big"),
        ("pkg.writeback.up", "pkg.core.nodes"),
    }
    assert cycles(edges) == [["pkg.core.high", "pkg.stores.low", "pkg.core.high"]]
    assert too_big(known) == [f"pkg.cache.big: {MAX_LINES + 1} lines (at most {MAX_LINES})"]
    assert naming(known, "pkg.writeback", "Filesystem") == [
        "pkg.writeback.up line 2: # the Filesystem is not ours"
    ]
    assert upward(edges, layers, {("pkg.writeback", "pkg.core.nodes")}) == [
        "pkg.cache.ok (line 2) imports pkg (cache must not import front)",
        "pkg.stores.low (line 2) imports pkg.core.high (stores must not import core)",
    ]
    assert len(upward(edges, layers)) == 3, "without the allow-list, writeback -> core.nodes counts"


def test_every_module_is_in_the_architecture_module_map() -> None:
    """docs/architecture.md's module map (its first code block) names every module by its
    file name, under its folder's heading."""
    doc = (ROOT.parent / "docs" / "architecture.md").read_text()
    module_map = doc.split("```")[1]
    missing = sorted(
        str(path.relative_to(ROOT.parent))
        for path in ROOT.rglob("*.py")
        if "__pycache__" not in path.parts and path.name not in module_map
    )
    assert not missing, report("modules missing from docs/architecture.md's module map", missing)
