"""The package's layers import one way, top to bottom (docs/architecture.md):

    cli  ->  colorize_cli (the public API)  ->  app  ->  engine  ->  models  ->  io, color, preprocess, errors, _version

A module may import its own layer and those below it, never one above; no modules import each other
in a circle; and no module imports one of ours inside a function except the command line and the
public API's lazy names, for start-up speed (`colorize --version` and `--help` answer at once), and
the imports of the engine's torch side (TORCH_SIDE), which colorizing with ONNX Runtime never loads
(tests/test_without_torch.py runs it with torch unimportable). The imports are read from the source with ``ast``, every one, at module level or inside a
function, so an import hidden in a function cannot run back up unseen.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "src" / "colorize_cli"
LAYERS = ["cli", "api", "app", "engine", "models", "io"]  # top to bottom
BOTTOM = {"color", "preprocess", "resample", "hints", "errors", "_version", "io"}
# the modules that import torch which the torch-free colorize path may import only when asked to
TORCH_SIDE = {"colorize_cli.engine.networks", "colorize_cli.engine.export"}  # colour and files: import nothing of ours above them


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "api"
    if parts[1] == "__main__":
        return "cli"
    return "io" if parts[1] in BOTTOM else parts[1]


def imports_of(path: Path, package: Path) -> list[tuple[str, bool, int]]:
    """(module imported, whether inside a function, line) for every import of ours in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[str, bool, int]] = []

    def is_module(dotted: str) -> bool:
        where = package.parent / dotted.replace(".", "/")
        return where.with_suffix(".py").exists() or (where / "__init__.py").exists()

    def visit(node: ast.AST, inside: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((a.name, inside, child.lineno) for a in child.names if a.name.startswith("colorize_cli"))
            elif isinstance(child, ast.ImportFrom) and (child.module or "").startswith("colorize_cli"):
                assert not child.level, f"{path}:{child.lineno}: relative import"
                for alias in child.names:  # `from colorize_cli.engine import metrics` imports a module
                    sub = f"{child.module}.{alias.name}"
                    found.append((sub if is_module(sub) else child.module, inside, child.lineno))
            visit(child, inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


def upward_imports(path: Path, package: Path = PACKAGE) -> list[str]:
    here = module_name(path, package)
    rank = LAYERS.index(layer_of(here))
    return [f"line {line}: {here} ({layer_of(here)}) imports {target} ({layer_of(target)})"
            for target, _, line in imports_of(path, package) if LAYERS.index(layer_of(target)) < rank]


def hidden_imports(path: Path, package: Path = PACKAGE) -> list[str]:
    here = module_name(path, package)
    if layer_of(here) in ("cli", "api"):
        return []
    return [f"line {line}: {here} imports {target} inside a function"
            for target, inside, line in imports_of(path, package) if inside and target not in TORCH_SIDE]


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_module_imports_only_its_own_layer_and_those_below(path):
    wrong = upward_imports(path) + hidden_imports(path)
    assert not wrong, "\n".join(wrong)


def test_no_modules_import_each_other_in_a_circle():
    graph = {module_name(p, PACKAGE): {t for t, _, _ in imports_of(p, PACKAGE)} for p in MODULES}
    for name in graph:  # importing a module runs its packages' __init__ first: not a circle of ours
        graph[name] -= {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt in graph and not state.get(nxt):
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if not state.get(node):
            visit(node)
    assert not circles, "\n".join(circles)


def test_the_check_catches_an_import_that_runs_back_up_from_inside_a_function(tmp_path):
    package = tmp_path / "colorize_cli"
    for name in ("engine/weights.py", "models/unet.py"):
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text("")
    probe = package / "models" / "unet.py"
    probe.write_text("import torch\n\n\ndef load():\n    from colorize_cli.engine import weights\n    return weights\n")
    assert upward_imports(probe, package) == [
        "line 5: colorize_cli.models.unet (models) imports colorize_cli.engine.weights (engine)"]
    assert hidden_imports(probe, package) == [
        "line 5: colorize_cli.models.unet imports colorize_cli.engine.weights inside a function"]
