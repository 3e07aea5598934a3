"""House rules of the library, checked statically (no imports, well under a second): no import circles among
voxflow modules (function-level imports included), no module over MAX_LINES lines, and the library never
imports the workflow, the scripts, the benchmarks or the tests."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "voxflow"
MAX_LINES = 450  # the house aim is ~400; this bound leaves room for a docstring or two
OUTSIDE_LIBRARY = {"scripts", "workflow", "benchmarks", "tests", "conftest"}


def module_files(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under ``package`` (packages by their __init__)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported_names(name: str, path: Path) -> list[tuple[str, int]]:
    """(dotted name, line) of everything ``path`` imports, anywhere in the file; relative imports resolved."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]  # a submodule, or a name of base
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {imported voxflow module: line}. ``from pkg import x`` counts as importing the submodule
    pkg.x when there is one, else pkg itself; a package's __init__ run implicitly by importing one of its
    submodules is not an edge (it is not a dependency one module chose)."""
    graph: dict[str, dict[str, int]] = {m: {} for m in modules}
    for name, path in modules.items():
        for target, line in imported_names(name, path):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                graph[name].setdefault(target, line)
    return graph


def import_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (as a closed path of module names) per strongly connected component with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan; the graph is small, recursion depth stays far below the limit
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_closed_path(graph, set(c)) for c in components]


def _closed_path(graph: dict[str, dict[str, int]], component: set[str]) -> list[str]:
    """A shortest cycle through the first module of ``component`` (breadth-first inside the component)."""
    start = min(component)
    parent = {start: None}
    queue = [start]
    for v in queue:
        for w in sorted(graph[v]):
            if w == start:
                path = [v]
                while parent[path[-1]] is not None:
                    path.append(parent[path[-1]])
                return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, v, start]
            if w in component and w not in parent:
                parent[w] = v
                queue.append(w)
    raise AssertionError(f"no cycle found in strongly connected component {sorted(component)}")


def describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


def test_no_import_cycles_among_voxflow_modules():
    modules = module_files(PACKAGE)
    assert len(modules) > 80  # the whole library is seen, not an empty glob
    graph = import_graph(modules)
    assert "voxflow.corpora.kaldi" in graph["voxflow.corpora.importers"]  # edges are found
    cycles = import_cycles(graph)
    assert not cycles, "import circles (break them by moving the shared piece):\n" + "\n".join(
        describe(c, graph) for c in cycles)


def test_no_module_over_the_size_limit():
    sizes = {name: len(path.read_text().splitlines()) for name, path in module_files(PACKAGE).items()}
    too_long = {name: n for name, n in sorted(sizes.items()) if n > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines (split them along their responsibilities): {too_long}"


def test_library_never_imports_workflow_scripts_benchmarks_or_tests():
    bad = []
    for name, path in module_files(PACKAGE).items():
        for target, line in imported_names(name, path):
            if target.split(".")[0] in OUTSIDE_LIBRARY:
                bad.append(f"{path}:{line} imports {target}")
        for node in ast.walk(ast.parse(path.read_text())):  # importlib.import_module("scripts.x"), runpy, ...
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                arg = node.args[0].value
                if func in {"import_module", "run_module", "run_path", "__import__"} and isinstance(arg, str) \
                        and arg.replace("/", ".").split(".")[0] in OUTSIDE_LIBRARY:
                    bad.append(f"{path}:{node.lineno} {func}({arg!r})")
    assert not bad, "the library must not import the workflow, scripts, benchmarks or tests:\n" + "\n".join(bad)


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root / "voxflow"


@pytest.mark.parametrize("a_text, b_text", [
    ("from voxflow.pkg.b import f\n", "def g():\n    from voxflow.pkg import a\n"),  # function-level import
    ("from . import b\n", "from .a import x\n"),  # relative imports
    ("import voxflow.pkg.b\n", "from voxflow.pkg.c import y\n"),  # through a third module
])
def test_cycle_checker_finds_circles(tmp_path, a_text, b_text):
    package = _write(tmp_path, {"voxflow/__init__.py": "", "voxflow/pkg/__init__.py": "",
                                "voxflow/pkg/a.py": a_text, "voxflow/pkg/b.py": b_text,
                                "voxflow/pkg/c.py": "from voxflow.pkg import a\n"})
    graph = import_graph(module_files(package))
    cycles = import_cycles(graph)
    assert len(cycles) == 1 and cycles[0][0] == cycles[0][-1] and "voxflow.pkg.a" in cycles[0]
    assert "voxflow.pkg.b" in cycles[0]


def test_cycle_checker_accepts_a_package_importing_its_submodules(tmp_path):
    package = _write(tmp_path, {"voxflow/__init__.py": "", "voxflow/pkg/__init__.py": "from voxflow.pkg.a import f\n",
                                "voxflow/pkg/a.py": "from voxflow.pkg.b import g\n", "voxflow/pkg/b.py": "import os\n"})
    graph = import_graph(module_files(package))
    assert graph["voxflow.pkg"] == {"voxflow.pkg.a": 1} and graph["voxflow.pkg.a"] == {"voxflow.pkg.b": 1}
    assert import_cycles(graph) == []
