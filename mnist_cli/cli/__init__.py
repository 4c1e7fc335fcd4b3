"""The `mnist` command line: parses options, calls the library, renders results.

Commands are loaded lazily (cli/lazy.py, listed in cli/commands.py): `mnist --help` imports
no command module, and `mnist evaluate no/such/run` imports only cli/evaluate.py, which
fails on the path before numpy or TensorFlow is imported.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mnist_cli import __version__
from mnist_cli.cli.usage import MnistGroup

HELP = "Download MNIST, train the classic TensorFlow 2 network on it, evaluate it, and read your own digits."

app = typer.Typer(
    name="mnist",
    cls=MnistGroup,  # lazy commands; usage errors as one `error:` and one `hint:` line, for every command
    help=HELP,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mnist-cli {__version__}")
        raise typer.Exit()


@app.callback(help=HELP)
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit."),
    ] = None,
) -> None:
    pass


def main() -> None:
    """Entry point of the `mnist` console script."""
    app()
