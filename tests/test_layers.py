"""The house rules, checked on the source: one import direction between layers, no circles, imports at the top.

The layers, bottom to top (ARCHITECTURE.md says what each owns). A module may import from its own layer or a
layer below; an import inside a function is allowed only with a `# lazy: <reason>` comment on its line (an
optional dependency, or keeping `qwen3-scope --help` free of torch).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import qwen3_scope

PACKAGE = Path(qwen3_scope.__file__).parent
LAYERS = [
    "core",
    "model",
    "organism",
    "naming",
    "saes",
    "releases",
    "data",
    "training",
    "evaluation",
    "steering",
    "apps",
    "export",
    "top",  # cli.py, train.py, bundle.py, registration.py, __init__.py, demo/
]
MAX_LAZY_IMPORTS = 46  # imports inside functions, each with its reason (44 when this was written)


def layer_of(module: str) -> str:
    """`qwen3_scope.training.suite` -> 'training'; modules of the top floor -> 'top'."""
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else "__init__"
    return head if head in LAYERS else "top"


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported qwen3_scope module, line, inside a function) for every import of the package in `path`."""
    tree = ast.parse(path.read_text())
    inner = {
        id(node)
        for fn in ast.walk(tree)
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(fn)
        if isinstance(node, (ast.Import, ast.ImportFrom))
    }
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]  # a submodule, or a name of node.module
        else:
            continue
        for name in names:
            if name.startswith("qwen3_scope"):
                out.append((name, node.lineno, id(node) in inner))
    return out


def test_no_module_imports_from_a_layer_above_it() -> None:
    known = modules()
    upward = []
    for module, path in known.items():
        mine = LAYERS.index(layer_of(module))
        for name, line, _ in imports(path):
            while name not in known and "." in name:  # `from pkg import name`: the module part
                name = name.rsplit(".", 1)[0]
            if name in known and LAYERS.index(layer_of(name)) > mine:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({layer_of(module)}) -> {name}")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_import_circles() -> None:
    known = modules()
    graph: dict[str, set[str]] = {m: set() for m in known}
    for module, path in known.items():
        for name, _, _ in imports(path):
            while name not in known and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in known and name != module and not module.startswith(name + "."):
                graph[module].add(name)
    graph = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}  # a package's own parts
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                circles.append(stack[stack.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


@pytest.mark.parametrize("layer", LAYERS)
def test_every_import_inside_a_function_says_why(layer: str) -> None:
    unexplained = []
    for module, path in modules().items():
        if layer_of(module) != layer:
            continue
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    text = " ".join(lines[node.lineno - 1 : node.end_lineno])
                    if "# lazy:" not in text:
                        unexplained.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {text.strip()}")
    assert not unexplained, "imports inside functions without a `# lazy: <reason>`:\n" + "\n".join(unexplained)


def test_few_imports_inside_functions() -> None:
    count = 0
    for path in modules().values():
        tree = ast.parse(path.read_text())
        count += sum(
            isinstance(node, (ast.Import, ast.ImportFrom))
            for fn in ast.walk(tree)
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(fn)
        )
    assert count <= MAX_LAZY_IMPORTS, f"{count} imports inside functions (at most {MAX_LAZY_IMPORTS}): move them up"
