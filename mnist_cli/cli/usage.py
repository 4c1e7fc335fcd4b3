"""One mechanism for usage errors and help text across every command.

Click (bundled in Typer) reports a bad option value in a 4-6 line box; the tool promises
one `error:` line and one `hint:` line instead. `MnistGroup.main` runs click without its
standalone handling and renders every usage error itself, with "did you mean ...?" for a
mistyped choice, option or command. It also tidies each command's help once: on/off flags
show no `<bool>` type, and a choice list is written into the help prose (where it wraps
between words) instead of the narrow type column (where `fashion-mnist` breaks mid-word).
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer._click import exceptions as click_errors  # Typer bundles its own click
from typer.core import TyperArgument, TyperOption

from mnist_cli.cli.commands import COMMANDS
from mnist_cli.cli.lazy import LazyGroup
from mnist_cli.core import errors

_CHOICE = re.compile(r"^(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\") is not one of ")
_EXTRA = re.compile(r"^Got unexpected extra arguments?(?:\(s\))? \((?P<args>.*)\)$")
_YES_NO = frozenset({"true", "false", "yes", "no", "on", "off", "1", "0", "y", "n"})


def choices_of(param: Any) -> tuple[str, ...]:
    """The values a choice option accepts, as typed on the command line; () for other options."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None or not getattr(descriptor, "is_choice", False):
        return ()
    return tuple(str(getattr(choice, "value", choice)) for choice in descriptor.choices or ())


def long_name(param: Any) -> str:
    """The option's long spelling (`--dataset`), or an argument's metavar."""
    names = [name for name in getattr(param, "opts", ()) if name.startswith("--")]
    if names:
        return names[0]
    return getattr(param, "metavar", None) or str(getattr(param, "name", "") or "").upper()


def did_you_mean(value: str, choices: Sequence[str]) -> str | None:
    """The nearest of `choices` to a mistyped `value`, if one is close."""
    matches = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _command_path(exc: Any) -> str:
    # `python -m mnist_cli` and test runners name the program differently; hints name the tool.
    names: list[str] = []
    ctx = getattr(exc, "ctx", None)
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(["mnist", *reversed(names)])


def translate(exc: Exception) -> errors.UsageError:
    """A click usage error as the tool's own one-line error and one-line hint."""
    command = _command_path(exc)
    help_hint = f"see `{command} --help`"
    message = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, click_errors.MissingParameter):
        param = exc.param
        what = long_name(param) if param is not None else "a value"
        return errors.UsageError(f"`{command}` needs {what}", help_hint)
    if isinstance(exc, click_errors.BadParameter):
        param = exc.param
        name = long_name(param) if param is not None else (exc.param_hint or "a value")
        detail = message.removeprefix("Value error, ").rstrip(".")
        choices = choices_of(param) if param is not None else ()
        if choices:
            found = _CHOICE.match(detail)
            value = found.group("value")[1:-1] if found else ""
            nearest = did_you_mean(value, choices) if value else None
            given = f" {found.group('value')}" if found else ""
            text = f"{name} must be one of {', '.join(choices)}, not{given or ' that'}"
            hint = f"did you mean {nearest}?" if nearest else f"choose one of {', '.join(choices)}"
            return errors.UsageError(text, hint)
        detail = detail[:1].lower() + detail[1:]
        return errors.UsageError(f"{name}: {detail}", help_hint)
    if isinstance(exc, click_errors.NoSuchOption):
        nearest = sorted(exc.possibilities or ())
        hint = f"did you mean {nearest[0]}?" if nearest else help_hint
        return errors.UsageError(f"`{command}` has no option {exc.option_name}", hint)
    extra = _EXTRA.match(message)
    if extra:
        arguments = extra.group("args")
        if arguments.split(" ")[0].lower() in _YES_NO:
            return errors.UsageError(
                f"unexpected value {arguments!r}",
                "on/off options take no value: give the option alone to turn it on, or leave it out",
            )
        return errors.UsageError(f"unexpected argument(s) {arguments}", help_hint)
    head, _, suggestion = message.partition(" Did you mean ")
    if suggestion:
        return errors.UsageError(head.rstrip(".").replace("No such", "no such", 1), f"did you mean {suggestion.strip()}")
    if message.startswith("No such command"):
        return errors.UsageError(message.rstrip(".").replace("No such", "no such", 1), "see `mnist --help` for the commands")
    return errors.UsageError(message.rstrip("."), help_hint)


def tidy_help(command: Any, help_names: Sequence[str]) -> None:
    """Flags show no type, and choices go into the help prose, for every option of `command`."""
    from typer._click.core import Context

    # Click makes (and caches) the help option on first use; make it now so it is tidied too.
    help_option = command.get_help_option(Context(command, help_option_names=list(help_names)))
    for param in [*getattr(command, "params", ()), *([help_option] if help_option is not None else [])]:
        if isinstance(param, TyperArgument):
            _tidy_argument(param)
        if not isinstance(param, TyperOption):
            continue
        if param.is_flag and param.metavar is None:
            param.metavar = ""  # an on/off flag takes no value; `<bool>` suggested one
        choices = choices_of(param)
        if choices and param.metavar is None:
            param.metavar = "NAME"
            listing = ", ".join(choices)
            param.help = f"{(param.help or '').rstrip()} One of: {listing}."


def _tidy_argument(param: TyperArgument) -> None:
    # Typer writes a required list argument as `{IMAGE}...` with type `<list[str]>`; the
    # tool writes it as click does, `IMAGE...`, and its help says what each one may be.
    if param.nargs == 1:
        return
    shown = f"{param.display_name_raw}..." if param.required else f"[{param.display_name_raw}]..."
    param._usage_display_name = lambda: shown  # type: ignore[method-assign]
    param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]


class MnistGroup(LazyGroup):
    """The `mnist` group: loads commands lazily, renders usage errors as `error:` and `hint:` lines, tidies help."""

    lazy_commands = COMMANDS

    def _help_names(self) -> list[str]:
        return list((self.context_settings or {}).get("help_option_names", ["--help"]))

    def prepare(self, command: Any) -> Any:
        """Tidy a command's help once it is loaded."""
        tidy_help(command, self._help_names())
        return command

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command; usage errors become one error line and one hint line, exit 2."""
        # Typer adds the completion options after the group is made: tidy them here.
        tidy_help(self, self._help_names())
        try:
            result = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
            code = result if isinstance(result, int) and not isinstance(result, bool) else 0
        except click_errors.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help was printed: nothing else to say
                code = exc.exit_code
            else:
                from mnist_cli.cli.common import print_error

                print_error(translate(exc))
                code = errors.USAGE
        except click_errors.ClickException as exc:
            from mnist_cli.cli.common import print_error

            print_error(errors.MnistError(exc.format_message().rstrip("."), "see `mnist --help`"))
            code = exc.exit_code
        except typer.Abort:
            from mnist_cli.cli.common import print_interrupted

            print_interrupted(errors.Interrupted("interrupted"))
            code = errors.INTERRUPTED
        if not standalone_mode:
            return code
        sys.exit(code)
