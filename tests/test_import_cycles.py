"""No import cycles anywhere in the package, including the ones a
function-level import hides (they still tie two modules into one: neither can
be read, tested or moved without the other, and the import order decides
whether they work at all).

The graph is built from the source with ``ast``; nothing is imported. Every
import statement counts, wherever it stands (module level, in a function, in a
class, under ``if TYPE_CHECKING``). What an import statement makes Python run:

- ``import a.b.c`` and ``from a.b.c import name``: the module ``a.b.c``, and
  before it the packages ``a`` and ``a.b``. A package that also holds the
  importing module is left out: Python has started it before the importer
  (it is an ancestor), so reaching it again adds no work and no edge.
- ``from a.b import c`` where ``c`` is a submodule: ``a.b.c`` (and the
  packages on its path, as above); where ``c`` is a name: the package ``a.b``
  itself, whose ``__init__`` then imports whatever it imports.
- relative imports resolve against the importing module's package.

So a package ``__init__`` importing its own submodules is an edge package ->
submodule, and a submodule importing a sibling is an edge to that sibling
only; a real cycle through a package needs a submodule that asks its own
package for a *name* (``from cnnwidgets.probe import Probe`` inside
``probe/core.py``), which only works when the package's ``__init__`` happened to
bind it first.

``cnnwidgets/__init__.py`` re-exports lazily through ``importlib`` in
``__getattr__``: those are strings, not import statements, and run on first
attribute access, never while a module is being imported, so they are no edges.
"""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Iterable

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "cnnwidgets"

Edge = tuple[str, str, str]  # (importer, imported, "file:line" of the statement)


def module_names(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """{dotted module name: file} of every module of the package at ``root``
    (a package is named by its folder and stands for its ``__init__.py``)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _package_of(name: str, path: pathlib.Path) -> str:
    """The package a module's relative imports resolve against."""
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _resolve_relative(package: str, level: int, module: str | None) -> str:
    base = package.split(".")
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _ancestors_and_self(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def imported_modules(
    name: str, path: pathlib.Path, modules: Iterable[str]
) -> list[tuple[str, int]]:
    """(module of the package, line) for every module an import statement in
    ``path`` makes Python run, by the rules in this file's docstring."""
    known = set(modules)
    package = _package_of(name, path)
    importer_packages = set(_ancestors_and_self(package))
    found: list[tuple[str, int]] = []

    def reach(target: str, line: int) -> None:
        # Packages on the target's path run first, except those the importer is in.
        for mod in _ancestors_and_self(target):
            if mod in known and mod not in importer_packages and mod != name:
                found.append((mod, line))

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                reach(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve_relative(package, node.level, node.module)
            else:
                base = node.module or ""
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            names = [a.name for a in node.names if f"{base}.{a.name}" not in known]
            for sub in subs:
                reach(sub, node.lineno)
            if names or not subs:
                if base in importer_packages and base in known and base != name:
                    # A module asking its own package (or one above) for a name:
                    # that __init__ must have run and bound it first, a real edge.
                    found.append((base, node.lineno))
                else:
                    reach(base, node.lineno)
    return found


def import_graph(root: pathlib.Path) -> tuple[dict[str, set[str]], list[Edge]]:
    """The package's module graph: {module: modules it imports} and every edge
    with the statement that makes it."""
    modules = module_names(root)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    edges: list[Edge] = []
    for name, path in modules.items():
        for target, line in imported_modules(name, path, modules):
            if target != name:
                graph[name].add(target)
                edges.append((name, target, f"{path.relative_to(root.parent)}:{line}"))
    return graph, edges


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def a_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One cycle through the component's first module (shortest, by BFS)."""
    inside = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node] & inside):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start] + path[::-1][1:] + [start] if len(path) > 1 else [start, start]
                if child not in previous:
                    previous[child] = node
                    nxt.append(child)
        frontier = nxt
    raise AssertionError(f"no cycle through {start} in {component}")


def describe(graph: dict[str, set[str]], edges: list[Edge], component: list[str]) -> str:
    cycle = a_cycle(graph, component)
    where = {(a, b): w for a, b, w in edges}
    steps = [f"    {a} -> {b}  ({where[a, b]})" for a, b in zip(cycle, cycle[1:])]
    return f"  {len(component)} modules: {', '.join(component)}\n" + "\n".join(steps)


def test_the_package_has_no_import_cycles():
    graph, edges = import_graph(PACKAGE)
    assert len(graph) > 40 and edges  # it did read the package
    cycles = strongly_connected(graph)
    report = "\n".join(describe(graph, edges, c) for c in cycles)
    assert not cycles, f"import cycles (function-level imports included):\n{report}"


# ------------------------------------------------ the checker on a known package


def write_package(root: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    for rel, text in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_the_checker_finds_hidden_cycles_and_passes_normal_packages(tmp_path):
    pkg = write_package(
        tmp_path,
        {
            "__init__.py": "import importlib\n",
            # A package re-exporting its submodules, which import each other: fine.
            "low/__init__.py": "from pkg.low.core import Core\nfrom . import util\n",
            "low/core.py": "from pkg.low import util\nclass Core: ...\n",
            "low/util.py": "import numpy\n",
            # A cycle hidden behind a function-level, relative import.
            "mid/a.py": "from pkg.mid.b import g\ndef f():\n    return g()\n",
            "mid/b.py": "def g():\n    from .a import f\n    return f\n",
            # A submodule asking its own package for a name the package imports from it.
            "top/__init__.py": "from pkg.top.view import View\nNAME = 1\n",
            "top/view.py": "from pkg.top import NAME\nclass View: ...\n",
            # Importing a deep module runs its packages: c -> low (-> core, util).
            "mid/c.py": "import pkg.low.util\n",
        },
    )
    graph, edges = import_graph(pkg)
    assert graph["pkg.low"] == {"pkg.low.core", "pkg.low.util"}
    assert graph["pkg.low.core"] == {"pkg.low.util"}
    assert graph["pkg.mid.c"] == {"pkg.low", "pkg.low.util"}
    assert graph["pkg"] == set()
    cycles = strongly_connected(graph)
    assert cycles == [["pkg.mid.a", "pkg.mid.b"], ["pkg.top", "pkg.top.view"]]
    text = describe(graph, edges, cycles[0])
    assert "pkg.mid.b -> pkg.mid.a  (pkg/mid/b.py:2)" in text
    assert "pkg.mid.a -> pkg.mid.b  (pkg/mid/a.py:1)" in text
    # Three modules in a ring, one edge at a time.
    ring = {"x": {"y"}, "y": {"z"}, "z": {"x"}, "w": {"x"}}
    assert strongly_connected(ring) == [["x", "y", "z"]]
    assert a_cycle(ring, ["x", "y", "z"]) == ["x", "y", "z", "x"]
