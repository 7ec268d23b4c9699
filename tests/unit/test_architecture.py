"""The layout's rules, checked on the source (docs/architecture.md): an import graph with no cycles, lazy
imports included; serving code that never reaches training or the harnesses; no folder importing the
CLI; modules and functions small enough to read."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("server", "pipeline", "feedback", "retrieval", "engines", "catalog", "training", "protos",
            "benchmarks",
            "cli")
SERVING = ("server.app", "server.service", "server.wiring")
# The `bench` and `dev` extras: a serving install (and `make run`'s build) must work without them. (The
# `pretrained` extra, the checkpoint a default build fine-tunes, is installed by `make run`.)
EXTRAS_ONLY = ("ranx", "matplotlib", "hdrh", "hnswlib", "sentence_transformers", "sklearn", "pytest")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


@cache
def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "_pb2" in path.name:  # generated stubs
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            out[name] = path
    return out


def _resolve(name: str) -> str | None:
    """The project module an import names (a name inside a module resolves to that module)."""
    while name:
        if name in modules():
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, tree: ast.AST) -> set[str]:
    """Every project module `module` imports, at any depth of its code (function-level imports too).

    Importing ``a.b.c`` first runs the ``a`` and ``a.b`` package inits, so a package's init counts as
    imported too, except from inside that package (its init is already running or done by then).
    """
    out = set()
    is_package = modules()[module].name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in filter(None, map(_resolve, names)):
            parts = target.split(".")
            parents = {".".join(parts[:i]) for i in range(1, len(parts))}
            out |= {target} | {p for p in parents if p in modules() and not module.startswith(p + ".")}
    out.discard(module)
    return out


@cache
def graph() -> dict[str, frozenset[str]]:
    return {m: frozenset(imports_of(m, ast.parse(p.read_text()))) for m, p in modules().items()}


def cycles(edges: dict[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
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

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in graph()[todo.pop()] - seen:
            seen.add(w)
            todo.append(w)
    return seen


def test_the_checks_can_fail() -> None:
    assert cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    tree = ast.parse("def f():\n    from training.train import fit\nimport server.config\n")
    assert imports_of("server.app", tree) == {"training", "training.train", "server.config"}


def test_no_import_cycles_between_modules() -> None:
    assert cycles(graph()) == []


def test_no_cycles_between_folders() -> None:
    folders: dict[str, set[str]] = {}
    for module, targets in graph().items():
        folders.setdefault(module.split(".")[0], set()).update(t.split(".")[0] for t in targets)
    for folder, targets in folders.items():
        targets.discard(folder)
    assert cycles(folders) == []


def test_no_folder_imports_the_cli() -> None:
    assert [m for m, targets in graph().items() if not m.startswith("cli") and any(
        t.startswith("cli") for t in targets)] == []


@pytest.mark.parametrize("entry", SERVING)
def test_serving_never_reaches_training_or_the_harnesses(entry: str) -> None:
    reached = reachable(entry)
    assert not {m for m in reached if m.split(".")[0] in ("training", "benchmarks", "cli")}
    assert "catalog.builder" not in reached  # the generator is a build step too


def third_party_roots(module: str) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(modules()[module].read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            roots.add(node.module.split(".")[0])
    return roots - set(PACKAGES)


@pytest.mark.parametrize("entry", (*SERVING, "training.build", "cli.main"))
def test_serving_and_building_need_no_extra(entry: str) -> None:
    used = {root: m for m in {entry} | reachable(entry) if not m.startswith(("benchmarks", "cli"))
            for root in third_party_roots(m) if root in EXTRAS_ONLY}
    assert used == {}


def test_modules_and_functions_are_small() -> None:
    long_modules, long_functions = [], []
    for name, path in modules().items():
        source = path.read_text()
        if len(source.splitlines()) > MAX_MODULE_LINES:
            long_modules.append(name)
        for node in ast.walk(ast.parse(source)):
            function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            if function and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:  # type: ignore[union-attr]
                long_functions.append(f"{name}.{node.name}")  # type: ignore[union-attr]
    assert long_modules == [] and long_functions == []
