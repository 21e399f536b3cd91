"""The package's import graph has no circle (lazy imports inside functions included)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"taichi_syncnerf": "taichi_syncnerf", "taichi_syncnerf.kernels": "kernels", "taichi_syncnerf.cli": "cli"}


def _modules() -> dict:
    mods = {}
    for pkg, folder in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([pkg, *parts])
            deps = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("taichi_syncnerf"):
                    deps.add(node.module)
                    deps.update(f"{node.module}.{a.name}" for a in node.names)
                elif isinstance(node, ast.Import):
                    deps.update(a.name for a in node.names if a.name.startswith("taichi_syncnerf"))
            mods[name] = deps
    # a package and its own sub-modules may import each other (an __init__ re-exporting its parts)
    return {m: {d for d in deps if d in mods and d != m and not d.startswith(m + ".") and not m.startswith(d + ".")}
            for m, deps in mods.items()}


def find_cycles(graph: dict) -> list:
    state, stack, cycles = {}, [], []

    def visit(u):
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                cycles.append(stack[stack.index(v):] + [v])
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return cycles


def test_no_import_circle():
    graph = _modules()
    assert "taichi_syncnerf.run_folder" in graph and "taichi_syncnerf.kernels.timefn" in graph
    cycles = find_cycles(graph)
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_one():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
