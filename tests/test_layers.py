"""The layering of README "Architecture", read from the source with `ast`.

Every import counts: at module level, inside functions, under `if TYPE_CHECKING:`. An import
hidden in a function still couples two modules; the only thing it hides is a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "gateway": ROOT,
    "router": ROOT,
    "adapters": ROOT,
    "gateway_demo": ROOT,
    # The backends' client, a distribution of its own (client/pyproject.toml).
    "gateway_client": ROOT / "client",
}
SERVER = ("gateway", "router", "adapters", "gateway_demo")
FORBIDDEN = {
    "adapters": ("router", "gateway", "gateway_demo"),
    "router": ("gateway", "gateway_demo"),
    # Backends install the client alone: it may import nothing of the gateway's.
    "gateway_client": SERVER,
}
"""What each package must never import (gateway may import router and adapters, and
gateway_demo everything)."""


def _module_name(path: Path, base: Path) -> str:
    parts = path.relative_to(base).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_files() -> dict[str, Path]:
    return {
        _module_name(path, base): path
        for package, base in PACKAGES.items()
        for path in sorted((base / package).rglob("*.py"))
    }


MODULES = _project_files()


def _own(name: str) -> str | None:
    """`name` or its nearest enclosing project module; None when it is not ours."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _absolute(node: ast.ImportFrom, module: str) -> str:
    if node.level == 0:
        return node.module or ""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def _imported(node: ast.AST, module: str) -> Iterator[str]:
    """Names of the modules one import statement loads (`from p import m` loads p.m)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        source = _absolute(node, module)
        for alias in node.names:
            yield f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source


def imports_of(module: str) -> set[str]:
    """The project modules `module` imports, wherever in the file the import is."""
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    found = {_own(name) for node in ast.walk(tree) for name in _imported(node, module)}
    return {name for name in found if name is not None and name != module}


GRAPH = {module: imports_of(module) for module in MODULES}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles as [a, b, ..., a], one per edge that leads back to a module still on
    the depth-first search's path; empty when there is none."""
    done: set[str] = set()
    path: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        if module in path:
            cycles.append([*path[path.index(module) :], module])
            return
        if module in done:
            return
        path.append(module)
        for target in sorted(graph.get(module, ())):
            visit(target)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
    return cycles


def test_the_project_modules_are_found() -> None:
    assert {
        "gateway.app",
        "router.inbound",
        "adapters.schema",
        "gateway_client.client",
        "gateway_demo.standins.graph_api",
    } <= set(MODULES)


def test_no_import_cycle() -> None:
    cycles = [" -> ".join(cycle) for cycle in find_cycles(GRAPH)]
    assert not cycles, cycles


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_upper_ones(package: str) -> None:
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if module.split(".")[0] == package
        for target in targets
        if target.split(".")[0] in FORBIDDEN[package]
    )
    assert not wrong, wrong


def test_config_is_the_bottom_layer() -> None:
    # Every layer reads the settings: config composes the router's sections (router.settings)
    # and the channels' (each channel package defines its own section, and config finds the
    # registered channels through `adapters`), and imports nothing else of ours; the router's
    # sections import nothing of ours at all, and adapters never import gateway (above).
    # gateway.sealed (the decryption of `enc:v1:` values) is below config, and imports
    # nothing of ours.
    assert "router.settings" in GRAPH["gateway.config"]
    others = GRAPH["gateway.config"] - {"router.settings", "gateway.sealed"}
    assert all(module.split(".")[0] == "adapters" for module in others), others
    assert GRAPH["router.settings"] == set()
    assert GRAPH["gateway.sealed"] == set()


def test_the_cycle_search_and_function_level_imports() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []
    source = "def f() -> None:\n    from gateway import handlers\n"
    tree = ast.parse(source)
    assert [name for node in ast.walk(tree) for name in _imported(node, "gateway.app")] == [
        "gateway.handlers"
    ]


def test_only_the_cli_reaches_the_demo() -> None:
    """The demo and its stand-ins ride in the distribution; nothing that serves loads them."""
    importers = sorted(
        module
        for module, targets in GRAPH.items()
        if not module.startswith("gateway_demo")
        and any(t.split(".")[0] == "gateway_demo" for t in targets)
    )
    assert importers == ["gateway.cli"]
