"""The package's import graph: no cycle between files or rooms, imports flow downward.

The graph is read from the source with `ast` (every ``import`` and ``from ...
import``, inside functions and under ``TYPE_CHECKING`` too, since a reader has
to follow those as well), so a newcomer can read the rooms bottom-up.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pbx_tracker"

# The composition: it wires the rooms together and may import any of them.
COMPOSITION = frozenset(
    {
        "__main__",
        "cli",
        "config",
        "daemon",
        "demo",
        "pipeline",
        "replay",
        "selfcheck",
    }
)
# Modules every room may use; they import no room.
LEAVES = frozenset(
    {
        "pbx_tracker",
        "calls",
        "command_error",
        "config_fields",
        "hours",
        "logging",
        "phones",
        "spreadsheet",
        "staff",
        "systemd",
        "terminal",
        "waking",
    }
)
Graph = Mapping[str, frozenset[str]]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """Full names the statement imports (``from a import b`` gives ``a.b`` and ``a``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = module if is_package else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    prefix = node.module or "" if node.level == 0 else ".".join(filter(None, [base, node.module]))
    return [f"{prefix}.{alias.name}" for alias in node.names] + [prefix]


def _owner(name: str, modules: Iterable[str]) -> str | None:
    """The module of ours that ``name`` is, or lives in; None for other packages."""
    known = set(modules)
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


@cache
def module_graph() -> Graph:
    """Each module of the package -> the modules of the package it imports."""
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for module, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for name in _imported(node, module, path.name == "__init__.py"):
                    owner = _owner(name, paths)
                    if owner is not None and owner != module:
                        found.add(owner)
        graph[module] = frozenset(found)
    return graph


def room(module: str) -> str:
    """``pbx_tracker.routing.plan`` -> ``routing``; ``pbx_tracker.daemon`` -> ``daemon``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def room_graph() -> Graph:
    rooms: dict[str, set[str]] = {}
    for module, imported in module_graph().items():
        rooms.setdefault(room(module), set()).update(
            room(other) for other in imported if room(other) != room(module)
        )
    return {name: frozenset(others) for name, others in rooms.items()}


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected parts of more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            part = []
            while not part or part[-1] != node:
                part.append(stack.pop())
            if len(part) > 1:
                found.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_another_that_imports_it_back() -> None:
    """A newcomer can read the package file by file without going round in circles."""
    assert cycles(module_graph()) == []


def test_no_room_imports_another_that_imports_it_back() -> None:
    """The rooms (sub-packages and top-level modules) stack up with no loop between them."""
    assert cycles(room_graph()) == []


def test_the_pure_core_imports_nothing_outside_itself() -> None:
    """The correlator in calls/ replays captured traffic without a database, network or config."""
    outside = {
        (module, other)
        for module, imported in module_graph().items()
        if room(module) == "calls"
        for other in imported
        if room(other) != "calls"
    }
    assert outside == set()


@pytest.mark.parametrize("leaf", sorted(LEAVES - {"pbx_tracker"}))
def test_shared_modules_import_no_room(leaf: str) -> None:
    """The modules every room uses (phones, staff, hours, ...) depend on no room."""
    rooms = room_graph().get(leaf, frozenset())
    assert rooms <= LEAVES


def test_rooms_never_import_the_composition() -> None:
    """A room is handed its settings section; it never reaches up into config, daemon or cli."""
    upward = {
        (name, other)
        for name, others in room_graph().items()
        if name not in COMPOSITION
        for other in others
        if other in COMPOSITION
    }
    assert upward == set()


def test_the_store_knows_no_room() -> None:
    """Storing a call does not depend on attribution, spam or the CRM: they are listeners."""
    assert room_graph()["store"] <= LEAVES


def test_the_walk_sees_the_imports_it_guards() -> None:
    """The checks above look at real edges: the daemon is seen to import the store and routing."""
    assert {"store", "routing", "config"} <= room_graph()["daemon"]
    assert "pbx_tracker.calls.records" in module_graph()["pbx_tracker.store.calls"]
