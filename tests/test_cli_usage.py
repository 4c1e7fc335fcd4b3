"""Usage errors, help text and short options, the same for every command."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from helpers import COMMANDS, command_options

from mnist_cli.cli import app
from mnist_cli.core.errors import USAGE

runner = CliRunner()


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
        for long, names in command_options(command).items():
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


def test_the_command_table_is_the_commands_and_their_docstrings() -> None:
    import importlib
    import inspect

    from mnist_cli.cli.commands import COMMANDS as TABLE

    assert tuple(TABLE) == COMMANDS
    for name, entry in TABLE.items():
        module = importlib.import_module(entry.module)
        (info,) = module.app.registered_commands
        assert (info.name or info.callback.__name__.replace("_", "-")) in (name, f"{name}-command"), name
        first_line = inspect.getdoc(info.callback).splitlines()[0]
        assert entry.short_help == first_line, name


def test_the_top_help_lists_every_command_and_shows_no_bool() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "100", "TERMINAL_WIDTH": None})
    assert result.exit_code == 0
    assert "<bool>" not in result.stdout
    listed = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("│ ") and line.split()[1] in COMMANDS]
    assert listed == list(COMMANDS)


def test_arguments_read_alike_in_every_help() -> None:
    def help_of(command: str) -> str:
        return runner.invoke(app, [command, "--help"], env={"COLUMNS": "100", "TERMINAL_WIDTH": None}).stdout

    predict = help_of("predict")
    assert "IMAGE..." in predict and "{IMAGE}" not in predict and "list[str]" not in predict
    for command in ("export", "evaluate", "serve"):
        text = help_of(command)
        assert "[TARGET]" in text and "<path>" in text and "<str>" not in text.split("Options")[0], command


def test_tune_help_says_searched_unless_given_instead_of_train_defaults() -> None:
    text = " ".join(runner.invoke(app, ["tune", "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": None}).stdout.split())
    for option in ("--optimizer", "--epochs", "--lr", "--batch-size"):
        after = text.split(f" {option} ", 1)[1].split(" --", 1)[0]
        assert "[default: searched unless given]" in after, option
    assert "[default: sgd]" not in text and "[default: 10]" not in text
    assert "[default: 0.9]" in text  # --momentum is not searched: every trial uses its default


def test_a_ctrl_c_is_a_plain_notice_with_exit_130(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from mnist_cli.core import errors
    from mnist_cli.runs import listing

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(listing, "list_runs", interrupted)
    result = runner.invoke(app, ["runs", "--root", str(tmp_path)])
    assert result.exit_code == errors.INTERRUPTED and result.stderr.strip() == "interrupted"

    def saved(*_args: object, **_kwargs: object) -> None:
        raise errors.Interrupted("interrupted after epoch 1; saved runs/x/checkpoints/ckpt-18", "resume with: mnist train --run-dir runs/x --resume")

    monkeypatch.setattr(listing, "list_runs", saved)
    result = runner.invoke(app, ["runs", "--root", str(tmp_path)])
    assert result.exit_code == errors.INTERRUPTED
    assert result.stderr.splitlines() == ["interrupted after epoch 1; saved runs/x/checkpoints/ckpt-18", "resume with: mnist train --run-dir runs/x --resume"]


def test_mnist_data_dir_is_read_by_the_option_the_help_names(tiny_data_dir) -> None:
    result = runner.invoke(app, ["show", "--json", "--count", "2"], env={"MNIST_DATA_DIR": str(tiny_data_dir)})
    assert result.exit_code == 0, result.output
    assert "--data-dir" in runner.invoke(app, ["show", "--help"]).stdout and "MNIST_DATA_DIR" in runner.invoke(app, ["show", "--help"]).stdout
