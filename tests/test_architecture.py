"""The layout's own rules (docs/index.md, "Layout of the code"), checked on the source.

A module of ``gridworld_env`` or ``distill_agents`` stays under 800 lines and a function (kernels
included) under 120; no module imports another module's private name (a shared name is made
public where it is defined); the package's own code imports names from where they are defined,
not through the old paths kept for users; compiled kernels take their tables and settings as
records, so none takes more than ``MAX_KERNEL_PARAMETERS`` arguments (but the one listed in
``WIDE_KERNELS``, with the reason).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import ROOT

MAX_MODULE_LINES = 800
MAX_FUNCTION_LINES = 120
MAX_KERNEL_PARAMETERS = 14
KERNEL_DECORATORS = {"njit", "jit", "loop_kernel"}  # loop_kernel: runner/loop_kernels.py
#: Kernels allowed more parameters, and why.
WIDE_KERNELS = {
    "distill_agents/runner/loop_kernels.py::advance": "called once per vector-env step; "
    "record arguments nested in records cost about 10% per env-step there, so it takes flat "
    "arrays and builds its records inside",
}
#: Old import paths, kept as thin re-exports for users: the package itself does not use them.
REEXPORTS = {
    "distill_agents.ablate",
    "distill_agents.distill_command",
    "distill_agents.ray_backend",
    "distill_agents.readings",
    "distill_agents.reproduce",
    "distill_agents.row_kernels",
    "distill_agents.teacher_training",
    "distill_agents.yardsticks",
}

SOURCES = sorted(
    path
    for package in ("gridworld_env", "distill_agents")
    for path in (ROOT / package).rglob("*.py")
)


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _functions(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _is_kernel(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Name) and target.id in KERNEL_DECORATORS:
            return True
        if isinstance(target, ast.Attribute) and target.attr in KERNEL_DECORATORS:
            return True
    return False


def test_the_sources_are_found():
    names = {_name(path) for path in SOURCES}
    assert "gridworld_env/outcomes.py" in names
    assert "distill_agents/runner/loop_kernels.py" in names
    assert len(names) > 50


@pytest.mark.parametrize("path", SOURCES, ids=_name)
def test_module_is_short(path):
    lines = path.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_MODULE_LINES, f"{_name(path)} has {lines} lines"


@pytest.mark.parametrize("path", SOURCES, ids=_name)
def test_functions_are_short(path):
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in _functions(_tree(path))
        if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{_name(path)}: {', '.join(long)}"


@pytest.mark.parametrize("path", SOURCES, ids=_name)
def test_kernels_take_records(path):
    wide = []
    for node in _functions(_tree(path)):
        args = node.args
        count = len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs)
        exempt = f"{_name(path)}::{node.name}" in WIDE_KERNELS
        if _is_kernel(node) and count > MAX_KERNEL_PARAMETERS and not exempt:
            wide.append(f"{node.name} ({count} parameters)")
    assert not wide, f"{_name(path)}: {', '.join(wide)}"


@pytest.mark.parametrize("path", SOURCES, ids=_name)
def test_no_private_name_is_imported(path):
    private = [
        f"{node.module}.{alias.name}"
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]
    assert not private, f"{_name(path)} imports {', '.join(private)}"


@pytest.mark.parametrize("path", SOURCES, ids=_name)
def test_the_package_imports_from_where_names_live(path):
    if _module(path) in REEXPORTS:
        return
    old = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        old += [name for name in names if name in REEXPORTS]
    assert not old, f"{_name(path)} imports {', '.join(old)}"


def test_the_reexports_exist():
    modules = {_module(path) for path in SOURCES}
    assert modules >= REEXPORTS
    assert all(name.split("::")[0] in {_name(p) for p in SOURCES} for name in WIDE_KERNELS)


def test_the_checks_can_fail(tmp_path):
    source = tmp_path / "wide.py"
    params = ", ".join(f"a{i}" for i in range(MAX_KERNEL_PARAMETERS + 1))
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    source.write_text(
        f"from numba import njit\nfrom x import _hidden\n\n@njit\ndef k({params}):\n{body}\n"
    )
    tree = _tree(source)
    (kernel,) = _functions(tree)
    assert _is_kernel(kernel)
    assert kernel.end_lineno - kernel.lineno + 1 > MAX_FUNCTION_LINES
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names]
    assert "_hidden" in imported
