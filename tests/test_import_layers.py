"""Imports run one way (docs/services.md, "Layers"): no module of ``marketplace/`` or
``runtime/`` imports another that imports it back, counting imports inside functions too,
and ``marketplace`` never imports ``runtime`` (the runtime builds on the domain, not the
other way round). Read from the source with ``ast``, so an import hidden in a function
counts as much as one at the top of a module."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("marketplace", "runtime")
# Modules that are wiring, not layers: settings names dotted paths, Celery finds the tasks.
# (They import nothing of runtime today; listed so that stays a decision, not an accident.)
WIRING: frozenset[str] = frozenset()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            modules[module_name(path)] = path
    return modules


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module of ours that ``name`` (a module or a name inside one) refers to."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def walk_run_code(tree: ast.AST):
    """``ast.walk`` leaving out ``if TYPE_CHECKING:`` blocks: only the type checker reads
    them, they never run."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module of ours that ``module`` imports, anywhere in its source. ``from . import
    x`` imports the package and, if ``x`` is a module, that module. (Importing a submodule
    also runs its packages' ``__init__``; those edges are left out, or every package that
    gathers its submodules would count as a cycle with each of them.)"""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def add(name: str) -> None:
        target = resolve(name, modules)
        if target and target != module:
            found.add(target)

    for node in walk_run_code(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            add(origin)
            for alias in node.names:
                if f"{origin}.{alias.name}" in modules:
                    add(f"{origin}.{alias.name}")
    return found


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    # runtime.tasks imports services inside its housekeeping task: the parser must see it.
    assert "marketplace.services.installs" in graph["runtime.tasks"]
    assert "marketplace.models" in graph["runtime.runs"]


def test_no_module_imports_one_that_imports_it_back():
    found = cycles(import_graph())
    assert not found, "modules that import each other (directly or round a loop):\n" + "\n".join(
        " ↔ ".join(component) for component in found
    )


def test_marketplace_never_imports_runtime():
    graph = import_graph()
    upward = sorted(
        f"{module} → {other}"
        for module, targets in graph.items()
        if module.startswith("marketplace") and module not in WIRING
        for other in targets
        if other.startswith("runtime")
    )
    assert not upward, "marketplace imports runtime (runtime builds on marketplace):\n" + "\n".join(upward)
