"""What every command shares: consoles, escaping, JSON output and error handling."""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from mnist_cli.core import errors

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


F = TypeVar("F", bound=Callable[..., Any])


def print_error(exc: errors.MnistError) -> None:
    """One line on standard error: what is wrong, and what to do."""
    # Messages carry paths, picture names, HTTP reasons and mirror text: all untrusted.
    err.print(f"[bold red]error:[/] {safe(exc.message)}", markup=True, soft_wrap=True, highlight=False)
    if exc.hint:
        err.print(f"[dim]hint:[/] {safe(exc.hint)}", soft_wrap=True, highlight=False)


def print_interrupted(exc: errors.Interrupted) -> None:
    """Ctrl-C is the user's choice, not an error: a plain notice of what was saved, and how to go on."""
    err.print(safe(exc.message), highlight=False, soft_wrap=True)
    if exc.hint:
        err.print(safe(exc.hint), highlight=False, soft_wrap=True)


def handles_errors(command: F) -> F:
    """Turn library errors and Ctrl-C into a clear line and a documented exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except errors.Interrupted as exc:
            print_interrupted(exc)
            raise typer.Exit(exc.exit_code) from None
        except errors.MnistError as exc:
            print_error(exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            print_interrupted(errors.Interrupted("interrupted"))
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
