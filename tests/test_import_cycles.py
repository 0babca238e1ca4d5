"""No import cycle inside lengthrl: every import (module level or inside a function) of a lengthrl module by
another forms a graph, which must be acyclic."""

import ast
from pathlib import Path

import lengthrl

ROOT = Path(lengthrl.__file__).parent


def _module_name(path: Path) -> str:
    parts = ["lengthrl", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the lengthrl modules it imports anywhere in its source (`from a import b` counts a.b when it is a
    module, else a)."""
    mods = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in mods.items():
        deps = set()
        pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith("lengthrl"):
                    deps.add(t)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_check_sees_a_function_level_cycle():
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_config_module_imports_no_registry():
    """train/config.py holds types and ranges only; names are checked against the registries by
    lengthrl.train.validate, so config.py can be imported by any module without a cycle."""
    graph = import_graph()
    assert graph["lengthrl.train.config"] <= {"lengthrl.errors", "lengthrl.parsing"}, graph["lengthrl.train.config"]
    assert {"lengthrl.objectives", "lengthrl.tasks", "lengthrl.train.policy"} <= graph["lengthrl.train.validate"]
