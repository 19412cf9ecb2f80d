"""The package's import graph has no cycle: every import inside `audiosweep` (including the
ones deferred into functions) points down the data's path or to a leaf module."""

from __future__ import annotations

import ast
from pathlib import Path

import audiosweep

PACKAGE = Path(audiosweep.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import mod` imports the sub-module when there is one.
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_sees_a_deferred_import_cycle() -> None:
    graph = {"a.registry": {"a.backbones"}, "a.backbones": {"a.registry"}, "a.leaf": set()}
    assert cycles(graph) == [["a.backbones", "a.registry"]]


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "audiosweep.models.registry" in graph and len(graph) > 50
    assert cycles(graph) == []


def test_the_model_registry_is_a_leaf() -> None:
    assert import_graph()["audiosweep.models.registry"] == set()
