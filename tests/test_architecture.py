"""The shape of the package: no import circles (between modules or packages), short functions,
the pipeline's ``__call__`` in numbered steps. Read from the source with ``ast``: imports inside
functions count too, so a circle cannot hide behind a lazy import."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

from xsyn.fingerprint import modules as package_modules

PACKAGE = Path(__file__).resolve().parent.parent / "xsyn"
MAX_FUNCTION_LINES = 80


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ``xsyn`` modules ``name`` imports (at any depth of its code)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `from a.b import name` → a.b
                target = target.rpartition(".")[0]
            if target and target not in (name, "xsyn"):
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = package_modules(PACKAGE)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def unit(module: str) -> str:
    """``xsyn.synthesis.run`` → ``xsyn.synthesis``; ``xsyn.config`` → itself."""
    return ".".join(module.split(".")[:2])


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_graph_sees_function_level_imports():
    graph = import_graph()
    assert "xsyn.baselines.tip" in graph["xsyn.synthesize"]  # imported inside synthesize_shard
    assert "xsyn.generator.objective" in graph["xsyn.generator.conditioning"]


def test_no_import_circle_between_modules():
    assert cycles(import_graph()) == []


def test_no_import_circle_between_packages():
    packages: dict[str, set[str]] = defaultdict(set)
    for module, targets in import_graph().items():
        packages[unit(module)].update(unit(t) for t in targets if unit(t) != unit(module))
    assert cycles(packages) == [], dict(packages)


def long_functions() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_over_80_lines():
    assert long_functions() == []


def test_pipeline_call_reads_as_numbered_steps():
    import inspect

    from xsyn.synthesis.pipeline import XsynPipeline

    source = inspect.getsource(XsynPipeline.__call__)
    steps = [int(n) for n in re.findall(r"^\s*# (\d+)\. ", source, flags=re.MULTILINE)]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 7, steps
