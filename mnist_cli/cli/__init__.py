"""The `mnist` command line: parses options, calls the library, renders results.

TensorFlow is imported only inside the commands that need it, so `--help`,
`--version` and `download` start in a fraction of a second.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mnist_cli import __version__
from mnist_cli.cli.usage import MnistGroup

app = typer.Typer(
    name="mnist",
    cls=MnistGroup,  # usage errors as one `error:` and one `hint:` line, for every command
    help="Download MNIST, train the classic TensorFlow 2 network on it, evaluate it, and read your own digits.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mnist-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit."),
    ] = None,
) -> None:
    """Download MNIST, train the classic TensorFlow 2 network on it, evaluate it, and read your own digits."""


# Each command registers itself on `app`; importing them is cheap (no TensorFlow).
from mnist_cli.cli import download as _download  # noqa: E402,F401
from mnist_cli.cli import train as _train  # noqa: E402,F401
from mnist_cli.cli import evaluate as _evaluate  # noqa: E402,F401
from mnist_cli.cli import predict as _predict  # noqa: E402,F401
from mnist_cli.cli import show as _show  # noqa: E402,F401
from mnist_cli.cli import runs as _runs  # noqa: E402,F401
from mnist_cli.cli import export as _export  # noqa: E402,F401
from mnist_cli.cli import serve as _serve  # noqa: E402,F401
from mnist_cli.cli import tune as _tune  # noqa: E402,F401


def main() -> None:
    """Entry point of the `mnist` console script."""
    app()
