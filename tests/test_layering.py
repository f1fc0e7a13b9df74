"""The package's dependency rules, read from the source with ast (imports inside
functions count; so do ``if TYPE_CHECKING:`` imports, except for cycles):

* no import cycle anywhere in kdumpkit;
* the layers: dump < kernel < (capture, service, debuginfo) < analyze < server < cli --
  a module imports only from its own layer or below;
* no crash command module imports another command module, and the helper modules
  of the commands package import none;
* the triage report imports no command (commands and report both draw from
  kdumpkit.analyze.facts).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from kdumpkit.analyze.commands import HELPER_MODULES

PACKAGE = Path(__file__).resolve().parent.parent / "kdumpkit"

#: Rank of each top-level part of kdumpkit: imports go to the same rank or lower.
#: A new subpackage (kdumpkit/server, ...) must be placed here to pass.
LAYERS = {
    "errors": 0,
    "numpy_setup": 0,
    "dump": 0,
    "kernel": 1,
    "config": 1,
    "capture": 2,
    "service": 2,
    "debuginfo": 2,
    "analyze": 3,
    "server": 4,
    "cli": 5,
    # the package itself (__version__; see FACADE) and ``python -m kdumpkit``
    "__init__": 0,
    "__main__": 5,
}
#: kdumpkit.open(), the package's one-call facade, opens a dump with the analysis engine
#: (imported when called): the one import allowed to go up, and left out of the cycles.
FACADE = {("kdumpkit", "kdumpkit.analyze.program")}
COMMANDS_PACKAGE = "kdumpkit.analyze.commands"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST, typing_only: bool) -> Iterator[tuple[ast.stmt, bool]]:
    """Every import statement under ``node`` (any depth) and whether it only runs for a
    type checker."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, typing_only
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _imports(ast.Module(body=[stmt], type_ignores=[]), True)
            for stmt in child.orelse:
                yield from _imports(ast.Module(body=[stmt], type_ignores=[]), typing_only)
        else:
            yield from _imports(child, typing_only)


def _resolve(name: str) -> str | None:
    """The kdumpkit module an imported name lives in (a module, else its package)."""
    modules = all_modules()
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


@cache
def imports_of(module: str) -> tuple[tuple[str, int, bool], ...]:
    """(imported kdumpkit module, line, typing only) for every import in ``module``."""
    path = all_modules()[module]
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: list[tuple[str, int, bool]] = []
    for stmt, typing_only in _imports(tree, False):
        targets: list[str] = []
        if isinstance(stmt, ast.Import):
            targets = [alias.name for alias in stmt.names]
        else:
            assert isinstance(stmt, ast.ImportFrom)
            base = stmt.module or ""
            if stmt.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (stmt.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from package import module`` imports the module
            targets = [f"{base}.{alias.name}" for alias in stmt.names]
        for target in targets:
            if target.split(".")[0] != "kdumpkit":
                continue
            resolved = _resolve(target)
            if resolved is not None and resolved != module and (module, resolved) not in FACADE:
                found.append((resolved, stmt.lineno, typing_only))
    return tuple(found)


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def command_modules() -> set[str]:
    """The modules of the commands package that define commands."""
    return {
        name
        for name in all_modules()
        if name.startswith(COMMANDS_PACKAGE + ".")
        and name.rsplit(".", 1)[1] not in HELPER_MODULES
        and not name.rsplit(".", 1)[1].startswith("_")
    }


def test_every_part_has_a_layer() -> None:
    unplaced = {layer_of(m) for m in all_modules()} - set(LAYERS)
    assert not unplaced, f"place these in LAYERS (tests/test_layering.py): {sorted(unplaced)}"


def test_imports_flow_down_the_layers() -> None:
    upward = [
        f"{module}:{line} imports {target} ({layer_of(module)} may not use {layer_of(target)})"
        for module in all_modules()
        for target, line, _ in imports_of(module)
        if LAYERS.get(layer_of(target), 99) > LAYERS.get(layer_of(module), -1)
    ]
    assert not upward, "\n".join(upward)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph (its modules, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_no_import_cycles() -> None:
    graph = {
        module: {target for target, _, typing_only in imports_of(module) if not typing_only}
        for module in all_modules()
    }
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_find_cycle_finds_one() -> None:
    """The checker itself: a cycle hidden two levels down is found."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_commands_import_no_other_command() -> None:
    commands = command_modules()
    assert {f"{COMMANDS_PACKAGE}.{n}" for n in ("bt", "ps", "sys", "log", "mod")} <= commands
    helpers = {f"{COMMANDS_PACKAGE}.{name}" for name in HELPER_MODULES}
    crossing = [
        f"{module}:{line} imports {target}"
        for module in commands | helpers
        for target, line, _ in imports_of(module)
        if target in commands
    ]
    assert not crossing, "\n".join(crossing)


@pytest.mark.parametrize(
    "module", ["kdumpkit.analyze.report", "kdumpkit.analyze.facts", "kdumpkit.analyze.crashformat"]
)
def test_report_and_facts_import_no_command(module: str) -> None:
    checked = [m for m in all_modules() if m == module or m.startswith(module + ".")]
    assert checked
    bad = [
        f"{name}:{line} imports {target}"
        for name in checked
        for target, line, _ in imports_of(name)
        if target == COMMANDS_PACKAGE or target.startswith(COMMANDS_PACKAGE + ".")
    ]
    assert not bad, "\n".join(bad)


def test_function_level_imports_are_seen() -> None:
    """An import inside a function body counts (report.py's used to hide a cycle)."""
    found = {target for target, _, _ in imports_of("kdumpkit.cli.report")}
    assert "kdumpkit.analyze.report" in found  # imported inside run()
