"""Commands loaded on first use: click's lazy group, for a Typer app.

`mnist --help` lists every command with its one-line help from a table, and `mnist evaluate
...` imports only cli/evaluate.py: no other command module (nor what it imports) is loaded
before parsing. Each command module holds a Typer app of one command (`command_app()`);
the group turns it into a click command the first time it is asked for.
(https://click.palletsprojects.com/en/stable/complex/#defining-the-lazy-group)
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import typer
from typer import main as typer_main
from typer._click import Command, Context  # Typer bundles its own click
from typer.core import TyperCommand, TyperGroup


class LazyCommand(NamedTuple):
    """Where a command lives, and its one-line help (the first line of its docstring)."""

    module: str
    short_help: str


def command_app() -> typer.Typer:
    """A Typer app for one command module: the lazy group loads its single command."""
    return typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


class _Listed(TyperCommand):
    """A command as `mnist --help` lists it: name and one-line help, nothing imported."""

    def __init__(self, name: str, short_help: str) -> None:
        super().__init__(name, short_help=short_help, help=short_help)


class LazyGroup(TyperGroup):
    """A Typer group whose commands are imported only when one is run or its help is asked for."""

    lazy_commands: Mapping[str, LazyCommand] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: dict[str, Command] = {}
        self._listing = 0
        # Typer's "did you mean" and click's completion read the names from `commands`.
        self.commands.update({name: _Listed(name, entry.short_help) for name, entry in self.lazy_commands.items()})

    def list_commands(self, ctx: Context) -> list[str]:
        return list(self.lazy_commands) or super().list_commands(ctx)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        entry = self.lazy_commands.get(cmd_name)
        if entry is None:
            return super().get_command(ctx, cmd_name)
        if self._listing:
            return self.commands[cmd_name]
        if cmd_name not in self._loaded:
            self._loaded[cmd_name] = self.prepare(self.load(cmd_name, entry))
        return self._loaded[cmd_name]

    def load(self, cmd_name: str, entry: LazyCommand) -> Command:
        """Import the command's module and build its click command, named as the table names it."""
        module = importlib.import_module(entry.module)
        command = typer_main.get_command(module.app)
        command.name = cmd_name
        return command

    def prepare(self, command: Command) -> Command:
        """A hook for subclasses: adjust a command once it is loaded."""
        return command

    def format_help(self, ctx: Context, formatter: Any) -> None:
        # The command list comes from the table: listing must not import every command.
        with self._from_table():
            super().format_help(ctx, formatter)

    def shell_complete(self, ctx: Context, incomplete: str) -> list[Any]:
        with self._from_table():  # completing a command's name needs only the names and their help
            return super().shell_complete(ctx, incomplete)

    @contextlib.contextmanager
    def _from_table(self) -> Iterator[None]:
        self._listing += 1
        try:
            yield
        finally:
            self._listing -= 1
