"""A bare Typer app with as many commands as `mnist`: the floor that `bench_startup.py` compares against.

Each command takes one path and fails on a missing one with an error line and an exit code,
as the smallest honest command would; nothing else is imported.

    .venv/bin/python benchmarks/bare_app.py --help
    .venv/bin/python benchmarks/bare_app.py evaluate no/such/run
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

NAMES = ("download", "train", "evaluate", "predict", "show", "runs", "export", "serve", "tune")

app = typer.Typer(help="A bare Typer app of nine commands.", no_args_is_help=True)


def _command(name: str) -> None:
    def command(target: Annotated[Path, typer.Argument(help="A path.")] = Path(".")) -> None:
        if not target.exists():
            typer.echo(f"error: {target} does not exist", err=True)
            raise typer.Exit(7)

    # A one-line help as long as the mnist commands' own, so both help screens draw the same amount.
    command.__doc__ = f"The {name} command of a bare Typer app: it takes one path, and fails with an error line when it is missing."
    app.command(name)(command)


for _name in NAMES:
    _command(_name)


if __name__ == "__main__":
    app()
