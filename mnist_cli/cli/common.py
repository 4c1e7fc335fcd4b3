"""What every command shares: consoles, option types, JSON output and error handling."""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from mnist_cli.core import config, errors

# Results go to standard output; progress, logs and errors to standard error,
# so `--json` output and pipes stay clean.
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

# C0 controls (ESC starts every terminal escape sequence), DEL, and C1 controls (CSI, OSC as
# single bytes); Rich passes ESC through, which lets a file name clear the screen, set the
# window title or write the clipboard (OSC 52).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: Any) -> str:
    """`text` with every control character shown as an escape (\\x1b), as --json shows it."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", str(text))


def safe(text: Any) -> str:
    """An untrusted string ready for Rich markup: control characters escaped, then markup escaped."""
    return escape(printable(text))


def _choices(name: str, values: tuple[str, ...]) -> Any:
    # Typer shows and validates Enum values, so each config choice list becomes one.
    return enum.Enum(name, {value.replace("-", "_"): value for value in values}, type=str)


Dataset = _choices("Dataset", config.DATASET_NAMES)
Model = _choices("Model", config.MODELS)
Loss = _choices("Loss", config.LOSSES)
Optimizer = _choices("Optimizer", config.OPTIMIZERS)
Schedule = _choices("Schedule", config.SCHEDULES)
Precision = _choices("Precision", config.PRECISIONS)
Recipe = _choices("Recipe", tuple(config.RECIPES))
Strategy = _choices("Strategy", config.STRATEGIES)

DatasetOption = Annotated[
    Dataset, typer.Option("--dataset", "-d", help="Which data set.", envvar="MNIST_DATASET", show_envvar=False)
]
DataDirOption = Annotated[
    Optional[Path],
    typer.Option(
        "--data-dir",
        help="Folder holding <dataset>/ with the four IDX files \\[default: the user cache directory].",
        envvar="MNIST_DATA_DIR",
        file_okay=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on standard output, nothing else.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print no progress, only results and errors.")]

F = TypeVar("F", bound=Callable[..., Any])


def print_error(exc: errors.MnistError) -> None:
    """One line on standard error: what is wrong, and what to do."""
    # Messages carry paths, picture names, HTTP reasons and mirror text: all untrusted.
    err.print(f"[bold red]error:[/] {safe(exc.message)}", markup=True, soft_wrap=True, highlight=False)
    if exc.hint:
        err.print(f"[dim]hint:[/] {safe(exc.hint)}", soft_wrap=True, highlight=False)


def handles_errors(command: F) -> F:
    """Turn library errors and Ctrl-C into a clear line and a documented exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except errors.MnistError as exc:
            print_error(exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(errors.INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def on_command_line(ctx: typer.Context, name: str) -> bool:
    """Whether option `name` was typed on the command line (not taken from the environment or a default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"  # Typer bundles its own click: compare by name


def print_json(payload: Any) -> None:
    """Write one JSON document to standard output."""
    sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    sys.stdout.flush()


def plain_progress(console: Console) -> bool:
    """Whether to print plain lines instead of live bars (pipes, CI, dumb terminals)."""
    return not console.is_terminal or console.is_dumb_terminal


class Reporter:
    """Live Rich bars on a terminal, plain lines elsewhere: the skeleton every command's progress shares.

    A subclass gives the bar's columns (`columns`) and turns library events into bars
    and lines (`__call__`); `say` prints a line above the bars, or on its own when plain.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.plain = plain_progress(console)
        self.progress: Progress | None = None

    def columns(self) -> tuple[Any, ...]:
        """The Rich progress columns of this reporter's bars."""
        raise NotImplementedError

    @contextlib.contextmanager
    def live(self) -> Iterator[Any]:
        """Show the bars for the duration of the block (nothing to show when plain)."""
        if self.plain:
            yield self
            return
        self.progress = Progress(*self.columns(), console=self.console)
        try:
            with self.progress:
                yield self
        finally:
            self.progress = None

    def say(self, text: str) -> None:
        """A line above the bars, or on its own when plain."""
        (self.progress.console if self.progress else self.console).print(text, highlight=False, soft_wrap=True)
