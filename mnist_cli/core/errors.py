"""Errors a user can act on, each with its documented exit code.

The library raises these; the CLI turns them into one line on standard error
and the exit code below, never a traceback.
"""

from __future__ import annotations

# Exit codes, documented in the README. 2 is click's own code for bad options.
OK = 0
USAGE = 2
DATA = 3  # a data file is corrupt, truncated or not IDX
DOWNLOAD = 4  # every mirror failed
INTEGRITY = 5  # a downloaded file does not match its published digest
LOCAL_IO = 6  # local trouble: no space, no permission, something in the way, out of memory
MODEL = 7  # a checkpoint, model file or run directory is missing or corrupt
DIVERGED = 8  # training produced a NaN or infinite loss
BUSY = 9  # another process holds the run directory
INPUT = 10  # some of the inputs to `predict` could not be read
ADDRESS = 11  # `serve` cannot listen on the host and port (in use, not local, not allowed)
STORAGE = 12  # `mnist tune`: the study's database cannot be reached or opened
STUDY = 13  # `mnist tune`: the study exists with another search space or data set
INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class MnistError(Exception):
    """A failure with a message for the user, a hint on what to do, and an exit code."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(MnistError):
    """An option value that cannot work (for example `--epochs 0`)."""

    exit_code = USAGE


class DataError(MnistError):
    """A data file that is missing, truncated or not the expected IDX layout."""

    exit_code = DATA


class DownloadError(MnistError):
    """Every mirror failed for a file."""

    exit_code = DOWNLOAD


class IntegrityError(MnistError):
    """Downloaded bytes that do not match the published digest."""

    exit_code = INTEGRITY


class LocalIOError(MnistError):
    """The local filesystem refused: no space, no permission, wrong kind of path."""

    exit_code = LOCAL_IO


class ModelError(MnistError):
    """A run, checkpoint or model file that is missing, partial or corrupt."""

    exit_code = MODEL


class DivergedError(MnistError):
    """Training produced a NaN or infinite loss."""

    exit_code = DIVERGED


class BusyError(MnistError):
    """Another process is using the same run or data directory."""

    exit_code = BUSY


class InputError(MnistError):
    """One or more inputs to a command could not be used."""

    exit_code = INPUT


class AddressError(MnistError):
    """`mnist serve` cannot listen where it was asked to: the port is in use, or the address is not this machine's."""

    exit_code = ADDRESS


class Interrupted(MnistError):
    """The user pressed Ctrl-C (or the process got SIGTERM); state was saved first."""

    exit_code = INTERRUPTED


class StorageError(MnistError):
    """A study database that cannot be reached, opened or written."""

    exit_code = STORAGE


class StudyMismatchError(MnistError):
    """An existing study was created with another search space, model or data set."""

    exit_code = STUDY


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), for an `error:` line."""
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."
