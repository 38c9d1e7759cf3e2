"""loopgrid's own import graph has no cycle, not even one dodged by a late import.

Why (issue 21): ``handle.py`` once imported ``deadlock.py`` at its end, with a
``noqa``, because ``deadlock.py`` imported ``handle.py``; importing
``deadlock``, ``driver``, ``worker``, ``monitor`` or ``introspect`` before
``handle`` raised ImportError, and a function-level import in ``affinity.py``
hid another such loop. Imports inside functions remain where they defer an
optional or costly module (``import loopgrid`` imports nothing optional:
``test_import_cost.py``), so this test reads every module's imports (module
level, at any line, and inside functions; not those under ``TYPE_CHECKING``)
and checks that the graph they make has no cycle: each late import could be
moved to the top without creating one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import loopgrid

PACKAGE = Path(loopgrid.__file__).parent


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def _targets(mods: dict[str, Path], module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The loopgrid modules an import statement of ``module`` imports."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in mods]
    if node.level:
        package = module if mods[module].name == "__init__.py" else module.rpartition(".")[0]
        base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    out = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        name = sub if sub in mods else target
        if name in mods:
            out.append(name)
    return out


def _edges(mods: dict[str, Path]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in mods}

    def visit(module: str, node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(module, other)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                edges[module].update(t for t in _targets(mods, module, child) if t != module)
            visit(module, child)

    for module, path in mods.items():
        visit(module, ast.parse(path.read_text(encoding="utf-8")))
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return found


def test_the_import_graph_has_no_cycle() -> None:
    mods = _modules()
    edges = _edges(mods)
    assert "loopgrid.handle" in edges and "loopgrid.waitgraph" in edges["loopgrid.handle"]
    assert _cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check above could fail: a late import that dodges a cycle is found."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(edges) == [["a", "b", "c"]]


def test_the_wait_for_graph_is_a_leaf() -> None:
    """Everything awaits through waitgraph.py; it imports only loopgrid's errors."""
    edges = _edges(_modules())
    assert edges["loopgrid.waitgraph"] == {"loopgrid.errors"}
