"""The package's layers, checked on its import graph (absolute, relative and function-level
imports alike): no cycle, and every import points down the data's path (data -> audio ->
models -> train -> {sweep, evaluate}) or to a shared top-level module."""

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
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(name, path, node.module, node.level)
                # `from pkg import mod` imports the sub-module when there is one (the package
                # itself is already being imported when a module inside it says `from . import`).
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                    for a in node.names
                ]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def _absolute(importer: str, path: Path, module: str | None, level: int) -> str:
    """The absolute name of `from <level dots><module> import ...` written in `importer`."""
    if level == 0:
        return module or ""
    package = importer.split(".") if path.name == "__init__.py" else importer.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, module] if module else base)


# The stages of the data's path, in order; a module may import its own stage and earlier ones.
# sweep and evaluate both build on train, and neither on the other.
STAGES = {"data": 0, "audio": 1, "models": 2, "train": 3, "sweep": 4, "evaluate": 4}
# Top-level modules every stage may use; they import no stage.
SHARED = {
    "config",
    "errors",
    "layout",
    "storage",
    "ray_cluster",
    "ray_compat",
    "capacity",
    "tracking",
}
# The command line and the benchmarks sit above everything; nothing in the library imports them.
TOP = {"cli", "jobs", "bench"}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for importer, targets in sorted(graph.items()):
        src = _part(importer)
        for target in sorted(targets):
            dst = _part(target)
            if src in TOP or dst in SHARED or src == dst:
                continue
            if src in SHARED:
                bad.append(f"{importer} -> {target}: a shared module imports a stage")
            elif dst in TOP:
                bad.append(f"{importer} -> {target}: a library module imports a tool")
            elif src in STAGES and dst in STAGES and STAGES[dst] >= STAGES[src]:
                bad.append(f"{importer} -> {target}: {src} may not import {dst}")
    return bad


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


def test_relative_and_deferred_imports_are_followed() -> None:
    graph = import_graph()
    # `from .rows import ...` at the top of data/ingest.py; a deferred import in a function of
    # train/trainer.py.
    assert "audiosweep.data.rows" in graph["audiosweep.data.ingest"]
    assert "audiosweep.capacity" in graph["audiosweep.train.trainer"]


def test_every_module_is_in_a_known_layer() -> None:
    known = set(STAGES) | SHARED | TOP | {""}
    assert {_part(m) for m in import_graph()} <= known


def test_the_layer_checker_sees_an_import_against_the_stage_order() -> None:
    graph = {
        "audiosweep.train.loop": {"audiosweep.sweep.tuner", "audiosweep.models.registry"},
        "audiosweep.evaluate.run": {"audiosweep.sweep.report"},
        "audiosweep.tracking": {"audiosweep.train.loop"},
        "audiosweep.sweep.tuner": {"audiosweep.train.loop", "audiosweep.config"},
        "audiosweep.data.reader": {"audiosweep.bench.shuffle"},
        "audiosweep.bench.shuffle": {"audiosweep.data.reader"},
    }
    assert layer_violations(graph) == [
        "audiosweep.data.reader -> audiosweep.bench.shuffle: a library module imports a tool",
        "audiosweep.evaluate.run -> audiosweep.sweep.report: evaluate may not import sweep",
        "audiosweep.tracking -> audiosweep.train.loop: a shared module imports a stage",
        "audiosweep.train.loop -> audiosweep.sweep.tuner: train may not import sweep",
    ]


def test_every_import_follows_the_stage_order() -> None:
    assert layer_violations(import_graph()) == []
