"""The folder tree is the architecture: layers, import circles, file and function sizes.

Imports are read with `ast`, without importing anything. Both module-level imports and
imports inside functions count as "A imports B" for the layer rules (a function-level
import of a higher layer is still a dependency on it), but only module-level ones can
make an import circle: a function-level import runs after every module has loaded, which
is how the CLI defers TensorFlow, so it cannot deadlock module loading.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mnist_cli"
# From the bottom: each layer may import only the layers before it (and itself).
LAYERS = ("core", "data", "report", "runs", "model", "training", "inference", "tuning", "serving", "cli")
SIBLINGS = {frozenset({"training", "inference"})}  # the same level: neither imports the other
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60
# Known exceptions, in one place (none today): a file, or a (file, function) pair.
# A new violation fails; an exception that is no longer needed fails too, so the list only shrinks.
KNOWN_LONG_FILES: set[str] = set()
KNOWN_LONG_FUNCTIONS: set[tuple[str, str]] = set()
HEAVY = ("numpy", "tensorflow", "fastapi", "optuna")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    is_package = MODULES[module].name == "__init__.py"
    base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports(module: str, *, top_level_only: bool) -> set[str]:
    """The mnist_cli modules `module` imports (`from a import b` counts b when b is a module)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # `if TYPE_CHECKING:` blocks never run
        nodes = [node for node in nodes if not (isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test))]
        nodes = [inner for node in nodes for inner in ([node] if not isinstance(node, (ast.If, ast.Try)) else ast.walk(node))]
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            names = [f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target for alias in node.names]
        else:
            continue
        found.update(name for name in names if name.split(".")[0] == "mnist_cli" and name in MODULES and name != module)
    return found


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """`A -> B` for every import of a layer above A's, or of a sibling layer."""
    wrong = []
    for module, targets in graph.items():
        mine = layer_of(module)
        for target in sorted(targets):
            theirs = layer_of(target)
            if mine is None or theirs is None or mine == theirs:
                continue
            if LAYERS.index(theirs) > LAYERS.index(mine) or frozenset({mine, theirs}) in SIBLINGS:
                wrong.append(f"{module} -> {target} ({mine} may not import {theirs})")
    return wrong


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, each as the list of modules around it (found by depth-first search)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                found.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def _parent_packages(module: str) -> set[str]:
    # Importing a.b.c runs a/__init__ and a/b/__init__ first; that is not a circle of ours.
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_no_import_circle_among_module_level_imports() -> None:
    graph = {module: imports(module, top_level_only=True) - _parent_packages(module) for module in MODULES}
    assert cycles(graph) == []


def test_the_circle_finder_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_each_layer_imports_only_layers_below_it() -> None:
    graph = {module: imports(module, top_level_only=False) for module in MODULES}
    assert layer_violations(graph) == []


def test_the_layer_check_catches_inference_importing_training_and_a_layer_above() -> None:
    assert layer_violations({"mnist_cli.inference.loading": {"mnist_cli.training.steps"}}) != []
    assert layer_violations({"mnist_cli.core.config": {"mnist_cli.cli.common"}}) != []
    assert layer_violations({"mnist_cli.cli.train": {"mnist_cli.training.trainer"}}) == []


def test_inference_never_imports_training() -> None:
    graph = {module: imports(module, top_level_only=False) for module in MODULES if layer_of(module) == "inference"}
    assert {target for targets in graph.values() for target in targets if layer_of(target) == "training"} == set()


def test_the_import_reader_sees_function_level_and_relative_imports() -> None:
    assert "mnist_cli.inference.loading" in imports("mnist_cli.cli.evaluate", top_level_only=False)
    assert "mnist_cli.inference.loading" not in imports("mnist_cli.cli.evaluate", top_level_only=True)
    assert "mnist_cli.cli.common" in imports("mnist_cli.cli.train", top_level_only=True)


def test_importing_the_cli_imports_no_heavy_library() -> None:
    code = f"import sys, mnist_cli.cli; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["evaluate", "no/such/run"], ["predict", "--checkpoint", "no/such/run", "x.png"], ["export", "no/such/run"]],
)
def test_help_and_a_wrong_path_import_no_heavy_library_and_no_other_command(argv: list[str]) -> None:
    code = (
        "import sys\nfrom mnist_cli.cli import main\n"
        f"sys.argv = ['mnist', *{argv!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"heavy = sorted(m for m in {HEAVY!r} + ('httpx', 'uvicorn', 'PIL') if m in sys.modules)\n"
        "commands = sorted(m for m in sys.modules if m.startswith('mnist_cli.cli.') and m.rsplit('.', 1)[1] in "
        "('download', 'train', 'evaluate', 'predict', 'show', 'runs', 'export', 'serve', 'tune'))\n"
        "print(heavy, commands, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    heavy, commands = done.stderr.strip().splitlines()[-1].split("] [")
    assert heavy == "[", done.stderr
    expected = [] if argv[0] == "--help" else [f"mnist_cli.cli.{argv[0]}"]
    assert commands.rstrip("]") == ", ".join(repr(name) for name in expected), done.stderr


def _function_lengths(path: Path) -> dict[str, int]:
    """Each function's body in lines, without its signature (Typer commands declare options there)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lengths = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0]
            # A docstring is part of the body; the signature (decorators to the colon) is not.
            lengths[node.name] = max(lengths.get(node.name, 0), (node.end_lineno or 0) - first.lineno + 1)
    return lengths


def test_no_source_file_is_longer_than_about_400_lines() -> None:
    long = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if len(path.read_text(encoding="utf-8").splitlines()) > MAX_FILE_LINES
    }
    assert long - KNOWN_LONG_FILES == set(), "new files over the limit"
    assert KNOWN_LONG_FILES - long == set(), "these are short now: take them off KNOWN_LONG_FILES"


def test_no_function_is_longer_than_about_60_lines() -> None:
    long = {
        (path.relative_to(PACKAGE).as_posix(), name)
        for path in PACKAGE.rglob("*.py")
        for name, lines in _function_lengths(path).items()
        if lines > MAX_FUNCTION_LINES
    }
    assert long - KNOWN_LONG_FUNCTIONS == set(), "new functions over the limit"
    assert KNOWN_LONG_FUNCTIONS - long == set(), "these are short now: take them off KNOWN_LONG_FUNCTIONS"
