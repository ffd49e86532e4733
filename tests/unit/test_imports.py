"""The package's modules import each other without loops, counting every import a module can run:
module-level ones as Python runs them (importing `a.b.c` runs `a/__init__`, `a/b/__init__` and
`a/b/c` in turn) and function-level ones too (a loop hidden in a function is still a loop between
two floors); only imports under `if TYPE_CHECKING:` are left out."""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

import stars_plugins

ROOT = Path(stars_plugins.__file__).parent


def module_names() -> dict[str, Path]:
    names = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in the module, at any depth, except those under `if TYPE_CHECKING:`."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for sub in node.body for n in ast.walk(sub))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) and id(n) not in skipped]


@functools.cache  # parses every module: once per run, not once per assertion
def _parsed_import_graph() -> dict[str, frozenset[str]]:
    modules = module_names()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        ancestors = {".".join(name.split(".")[:i]) for i in range(1, len(name.split(".")))}
        for node in _imports(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    dependency = ".".join(parts[:i])
                    if dependency in modules and dependency != name and dependency not in ancestors:
                        graph[name].add(dependency)
    return {name: frozenset(deps) for name, deps in graph.items()}


def import_graph() -> dict[str, frozenset[str]]:
    return dict(_parsed_import_graph())


def find_cycle(graph: dict[str, frozenset[str]] | dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_sees_module_level_function_level_and_package_imports():
    graph = import_graph()
    assert "stars_plugins.backends.protocol" in graph["stars_plugins.decoding.segmented"]
    assert "stars_plugins.decoding" in graph["stars_plugins.runtime"]
    assert "stars_plugins.cli.serve" in graph["stars_plugins.cli.main"]
    # function-level: the generate command imports the prompt checks inside `run`
    assert "stars_plugins.prompts" in graph["stars_plugins.cli.generate"]
    # a package a module's import runs through, other than its own ancestors
    assert "stars_plugins.backends" in graph["stars_plugins.rewards.remote"]


def test_no_import_loop_inside_stars_plugins_function_level_imports_included():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import loop: " + " -> ".join(cycle or [])


def _floor_imports(module: str, prefix: str) -> set[str]:
    return {dep for dep in import_graph()[module] if dep == prefix or dep.startswith(prefix + ".")}


def test_floors_import_downwards_only():
    graph = import_graph()
    below_decoding = [m for m in graph if m.startswith(("stars_plugins.backends", "stars_plugins.rewards"))]
    for module in below_decoding:
        for upper in (
            "stars_plugins.decoding",
            "stars_plugins.scheduler",
            "stars_plugins.runtime",
            "stars_plugins.calls",
            "stars_plugins.server",
            "stars_plugins.cli",
            "stars_plugins.benchmarks",
        ):
            assert not _floor_imports(module, upper), f"{module} imports {upper}, a floor above it"
    for module in (m for m in graph if m.startswith("stars_plugins.rewards")):
        assert not _floor_imports(module, "stars_plugins.backends.hf"), f"{module} imports the in-process policy"
    for module in graph:
        if not module.startswith(("stars_plugins.cli", "stars_plugins.benchmarks")):
            assert not _floor_imports(module, "stars_plugins.benchmarks"), f"{module} imports the benchmarks"
            assert not _floor_imports(module, "stars_plugins.cli"), f"{module} imports the command line"


def test_config_does_not_import_decoding():
    assert not any(dep.startswith("stars_plugins.decoding") for dep in import_graph()["stars_plugins.config"])


def test_importing_the_library_imports_no_web_framework_plotting_training_or_adapter_code():
    heavy = [
        "fastapi",
        "uvicorn",
        "starlette",
        "matplotlib",
        "reward_training",
        "stars_plugins.benchmarks",
        "stars_plugins.server.app",
        "stars_plugins.cli",
        "langchain_core",
        "llama_index",
    ]
    code = f"import sys, stars_plugins; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
