"""The import graph of the project's packages: one way only, and never across the training/serving line.

Every `import` and `from ... import` in seqserve/, serving/ and training/ counts, wherever it stands:
at the top, inside a function, or under `if TYPE_CHECKING:` (a typing-only import is still a
dependency a reader has to follow). The test fails on a cycle between modules, and on a forbidden
edge: serving <-> training (their only contract is the model repository), serving -> the load
tester, and the load tester -> serving or training (it is a pure client).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("seqserve", "serving", "training")
# (importer prefix, imported prefix) pairs that must never occur.
FORBIDDEN = (
    ("serving", "training"),
    ("training", "serving"),
    ("serving", "seqserve.loadtest"),
    ("seqserve.loadtest", "serving"),
    ("seqserve.loadtest", "training"),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "_pb2" not in path.name
    }


def imported_names(path: Path, module: str) -> set[str]:
    """Every module name `path` imports, absolute, including `from pkg import submodule`."""
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {
        module: {name for name in imported_names(path, module) if name in modules and name != module}
        for module, path in modules.items()
    }


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_back() -> None:
    assert cycles(import_graph()) == []


def test_no_import_crosses_a_forbidden_line() -> None:
    crossings = [
        f"{source} -> {target}"
        for source, targets in import_graph().items()
        for target in sorted(targets)
        for importer, imported in FORBIDDEN
        if within(source, importer) and within(target, imported)
    ]
    assert crossings == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import serving.registry\n", {"serving.registry"}),
        ("from serving import registry\n", {"serving", "serving.registry"}),
        ("if TYPE_CHECKING:\n    from serving.model import X\n", {"serving.model", "serving.model.X"}),
        ("def f():\n    from . import batcher\n", {"serving", "serving.batcher"}),
    ],
)
def test_every_kind_of_import_is_seen(tmp_path: Path, source: str, expected: set[str]) -> None:
    path = tmp_path / "module.py"
    path.write_text(source)
    assert imported_names(path, "serving.inference") == expected


def test_a_cycle_is_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_the_graph_holds_the_real_edges() -> None:
    """Guards the tests above against passing on an empty graph."""
    graph = import_graph()
    assert {"serving.registry", "serving.protocol.v2_dataplane"} <= graph["serving.server"]
    assert "serving.server" in graph["serving.worker"]
    assert "seqserve.metric_names" in graph["seqserve.loadtest.promstats"]
