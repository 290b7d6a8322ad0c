"""The import rules of the README's code map as code: ranks of the package's parts, and a checker over source files."""

from __future__ import annotations

import ast
from pathlib import Path

# lower floors first; a module may import its own floor or lower ones, never a higher one
RANKS = {
    "ensemble": 0, "ensemble.errors": 0, "ensemble.io": 0, "ensemble.lazy": 0, "ensemble.console": 0,
    "ensemble.data": 1,
    "ensemble.metrics": 2,
    "ensemble.models": 3,
    "ensemble.training": 4,
    "ensemble.tuning": 5, "ensemble.experiments": 5, "ensemble.launchers": 5, "ensemble.ensembling": 5,
    "ensemble.export": 5, "ensemble.export_blend": 5, "ensemble.walkforward": 5,
    "ensemble.commands": 6, "ensemble.cli": 6, "ensemble.cli_errors": 6,
}  # fmt: skip


def rank(module: str) -> int:
    """The floor of ``module``: its longest prefix in ``RANKS``."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in RANKS:
            return RANKS[".".join(parts[:n])]
    raise KeyError(f"{module} has no floor in RANKS; add its package")


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path) -> list[tuple[str, int]]:
    """(module of ours, line) for every import in ``path``, top-level or inside a function."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {id(n) for block in ast.walk(tree) if _is_type_checking(block) for b in block.body
                   for n in ast.walk(b)}  # fmt: skip  (``if TYPE_CHECKING:`` imports never run)
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from pkg import mod`` imports the module ``pkg.mod``; ``from mod import name`` the module ``mod``
            found += [(f"{target}.{a.name}" if target else a.name, node.lineno) for a in node.names]
    return [(m, line) for m, line in found if m == "ensemble" or m.startswith("ensemble.")]


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"


def violations(root: Path) -> list[str]:
    """Upward imports and import cycles among the modules under ``root`` (the ``ensemble`` folder),
    each as ``file:line: message``."""
    problems, graph, where = [], {}, {}
    files = sorted(root.rglob("*.py"))
    known = {module_name(f, root) for f in files}
    for path in files:
        src = module_name(path, root)
        graph[src] = set()
        for dst, line in imports(path, root):
            target = dst if dst in known else dst.rpartition(".")[0]  # ``from pkg import name``
            if rank(target) > rank(src):
                problems.append(f"{path}:{line}: {src} (floor {rank(src)}) imports {dst} (floor {rank(target)})")
            if target in known and target != src:
                graph[src].add(target)
                where[(src, target)] = f"{path}:{line}"
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt):], nxt] if nxt in stack else [node, nxt]
                problems.append(f"{where[(node, nxt)]}: import cycle {' -> '.join(cycle)}")
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return problems
