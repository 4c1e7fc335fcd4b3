"""Every `hint:` the tool can print names only options that exist on the command it suggests."""

from __future__ import annotations

import ast
import re
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mnist_cli.cli import app
from test_cli_usage import COMMANDS, option_names

PACKAGE = Path(__file__).resolve().parent.parent / "mnist_cli"
_OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
_COMMAND = re.compile(r"\bmnist ([a-z]+)\b")

# Which commands can print a hint raised in a module (the library is shared between commands).
# An option named without `mnist X` must be an option of each of them, except in modules
# listed in _ANY, whose errors each come from one of the commands (checked: some of them).
_ALL = set(COMMANDS)
_ANY = ("core/runs.py", "inference/evaluation.py", "inference/loading.py")
_REACH = {
    "data/download.py": {"download", "train", "evaluate", "show"},
    "data/registry.py": {"download", "train", "evaluate", "show"},
    "data/idx.py": {"train", "evaluate", "show"},
    "data/explore.py": {"show"},
    "training/": {"train", "tune"},
    "serving/": {"serve"},
    "tuning/": {"tune"},
    "core/config.py": {"train"},
    "core/runs.py": {"runs", "train", "evaluate", "predict", "export"},
    "core/listing.py": {"runs"},
    "core/checkpoint_state.py": {"train", "evaluate", "predict", "export", "serve"},
    "core/fileio.py": _ALL,
    "inference/loading.py": {"evaluate", "predict", "export", "serve"},
    "inference/evaluation.py": {"evaluate", "predict"},
    "inference/preprocessing/": {"predict"},
    "inference/export.py": {"export"},
    "cli/common.py": _ALL,
}


def _reach(relative: str) -> set[str]:
    if relative.startswith("cli/"):
        name = Path(relative).stem
        if name in COMMANDS:
            return {name}
    for prefix, commands in _REACH.items():
        if relative.startswith(prefix):
            return set(commands)
    return set()


def _text(node: ast.AST, constants: dict[str, str]) -> str | None:
    """The literal text of a string expression; formatted values become `{}`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(part.value if isinstance(part, ast.Constant) else "{}" for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left, constants), _text(node.right, constants)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


def _branches(node: ast.AST, constants: dict[str, str]) -> list[str]:
    """The texts an expression can take: both sides of `a if c else b` and of `a or b`."""
    if isinstance(node, ast.IfExp):
        return _branches(node.body, constants) + _branches(node.orelse, constants)
    if isinstance(node, ast.BoolOp):
        return [text for value in node.values for text in _branches(value, constants)]
    text = _text(node, constants)
    return [text] if text is not None else []


def collect_hints() -> list[tuple[str, str]]:
    """(module, hint text) for every hint given to an error in the package's source."""
    hints: list[tuple[str, str]] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants: dict[str, str] = {}
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                text = _text(node.value, constants)
                if text is not None:
                    constants[node.targets[0].id] = text
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if not name.endswith("Error") and name not in ("Interrupted", "Failure"):
                continue
            candidates = [node.args[1]] if len(node.args) > 1 else []
            candidates += [keyword.value for keyword in node.keywords if keyword.arg == "hint"]
            for candidate in candidates:
                for text in _branches(candidate, constants):
                    if "--" in text:
                        hints.append((relative, text))
    return hints


def wrong_options(hint: str, default_commands: set[str]) -> list[str]:
    """Options a hint names that the command it suggests does not have."""
    wrong = []
    segments = _COMMAND.split(hint)
    # segments: text before any `mnist X`, then pairs (command, text after it).
    pieces = [(default_commands, segments[0])] + [
        ({segments[i]}, segments[i + 1]) for i in range(1, len(segments) - 1, 2)
    ]
    for commands, text in pieces:
        for option in _OPTION.findall(text):
            missing = sorted(command for command in commands if command not in COMMANDS or option not in option_names(command))
            if missing:
                wrong.append(f"{option} (not an option of {', '.join(missing)})")
    return wrong


def test_the_source_holds_hints_to_check() -> None:
    hints = collect_hints()
    assert len(hints) >= 10
    assert any("mnist download" in text for _, text in hints)


def test_every_hint_in_the_source_names_options_that_exist() -> None:
    problems = []
    for module, hint in collect_hints():
        commands = _reach(module)
        if module.startswith(_ANY):
            # Reachable from several commands, but each error from a known one: one of them must fit.
            fits = [command for command in commands if not wrong_options(hint, {command})]
            wrong = [] if fits else wrong_options(hint, commands)
        else:
            wrong = wrong_options(hint, commands)
        if wrong:
            problems.append(f"{module}: {hint!r}: {', '.join(wrong)}")
    assert not problems, "\n".join(problems)


def test_the_checker_catches_an_option_of_another_command() -> None:
    assert wrong_options("check the network, or pass --mirror with another URL", {"train"}) == [
        "--mirror (not an option of train)"
    ]
    assert wrong_options("run `mnist download --mirror DIR`", {"train"}) == []


def _dead_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.mark.parametrize("command", ["train", "show", "download"])
def test_offline_hints_name_what_works_for_each_command(tmp_path: Path, command: str) -> None:
    data_dir = tmp_path / "no-data"
    args = [command, "--data-dir", str(data_dir)]
    if command == "train":
        args += ["--runs-root", str(tmp_path / "runs")]
    result = CliRunner().invoke(app, args, env={"MNIST_MIRROR": _dead_url()})
    assert result.exit_code == 4, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) <= 3 and lines[-2].startswith("error: ") and lines[-1].startswith("hint: "), result.stderr
    assert wrong_options(lines[-1], {command}) == []
    assert "MNIST_MIRROR" in lines[-1]
    assert not data_dir.exists()
