"""Usage errors, help text and short options, the same for every command."""

from __future__ import annotations

import functools
import re
import subprocess
import sys

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from mnist_cli.cli import app
from mnist_cli.core.errors import USAGE

runner = CliRunner()
COMMANDS = ("download", "train", "evaluate", "predict", "show", "runs", "export", "serve", "tune")


@functools.cache
def _options(command: str) -> dict[str, list[str]]:
    """Each option of a command: its long name and its other spellings."""
    group = get_command(app)
    loaded = group.get_command(group.make_context("mnist", ["--help"], resilient_parsing=True), command)  # type: ignore[attr-defined]
    found: dict[str, list[str]] = {}
    for param in loaded.params:
        names = [*param.opts, *getattr(param, "secondary_opts", [])]
        longs = [name for name in names if name.startswith("--")]
        if longs:
            found[longs[0]] = names
    return found


def option_names(command: str) -> set[str]:
    """Every spelling of every option of `command` (`--augment`, `--no-augment`, `-q`, ...)."""
    return {name for names in _options(command).values() for name in names}


def _two_lines(result) -> tuple[str, str]:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("error: ") and lines[1].startswith("hint: "), result.stderr
    return lines[0], lines[1]


@pytest.mark.parametrize(
    ("args", "error", "hint"),
    [
        (["train", "--dataset", "fasion-mnist"], "--dataset must be one of mnist, fashion-mnist", "did you mean fashion-mnist?"),
        (["show", "-d", "fashion"], "--dataset must be one of", "did you mean fashion-mnist?"),
        (["train", "--optimizer", "adamm"], "--optimizer must be one of", "did you mean adam?"),
        (["evaluate", "--split", "tset"], "--split must be one of test, train, val", "did you mean test?"),
        (["runs", "--sort", "zzz"], "--sort must be one of", "choose one of date, test, val, name"),
        (["train", "--epochs", "0"], "--epochs", "mnist train --help"),
        (["train", "--epochs", "x"], "--epochs", "mnist train --help"),
        (["train", "--quiet", "true"], "unexpected value 'true'", "take no value"),
        (["train", "--lossx", "mse"], "has no option --lossx", "did you mean --loss?"),
        (["trian"], "no such command 'trian'", "did you mean 'train'?"),
        (["predict"], "`mnist predict` needs IMAGE", "mnist predict --help"),
    ],
)
def test_usage_errors_are_one_error_line_and_one_hint(args: list[str], error: str, hint: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == USAGE, result.output
    first, second = _two_lines(result)
    assert error in first and hint in second
    assert "Value error" not in result.stderr and "╭" not in result.stderr


def test_the_real_command_line_prints_two_lines_too() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mnist_cli", "download", "--dataset", "fasion-mnist"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == USAGE
    assert done.stderr.splitlines() == [
        "error: --dataset must be one of mnist, fashion-mnist, not 'fasion-mnist'",
        "hint: did you mean fashion-mnist?",
    ]
    assert "tensorflow" not in done.stderr.lower()


def test_each_short_option_means_one_thing_across_the_tool() -> None:
    meaning: dict[str, set[str]] = {}
    for command in COMMANDS:
        for long, names in _options(command).items():
            for name in names:
                if not name.startswith("--"):
                    meaning.setdefault(name, set()).add(long)
    clashes = {short: longs for short, longs in meaning.items() if len(longs) > 1}
    assert not clashes, clashes


@pytest.mark.parametrize("width", [60, 80, 120])
@pytest.mark.parametrize("command", COMMANDS)
def test_help_reads_well_at_any_width(command: str, width: int) -> None:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": str(width), "TERMINAL_WIDTH": None})
    assert result.exit_code == 0
    text = result.stdout
    assert max(len(line) for line in text.splitlines()) <= width
    assert "<bool>" not in text  # on/off flags take no value
    assert not re.search(r"\w \.(\s|$)", text)  # markup eaten by Rich used to leave "directory ."
    assert "(runs)" not in text and "[default: None]" not in text
    if "--dataset" in text and width >= 80:
        # Choice lists wrap between words, never inside one ("fashion-mn ist").
        assert "fashion-mnist" in text


def test_flags_refuse_a_value_and_say_so() -> None:
    result = runner.invoke(app, ["download", "--force", "yes"])
    assert result.exit_code == USAGE
    _, hint = _two_lines(result)
    assert "take no value" in hint
