"""The files a download writes beside its targets: `.<name>.part` files, the data set's lock, new folders.

Bytes stream into the part file and it is renamed to its final name only once it
verifies, so a crash, Ctrl-C or full disk never leaves an unverified file under a
final name.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import filelock

from mnist_cli.core.errors import BusyError
from mnist_cli.core.fileio import io_error
from mnist_cli.data.download.events import LockWaiting, OnEvent

LOCK_NAME = ".lock"


def part_path(target: Path) -> Path:
    """The part file a target is written through."""
    return target.with_name(f".{target.name}.part")


def open_part(part: Path, *, append: bool) -> BinaryIO:
    """Open (or create) a part file for writing; a failure is a LocalIOError."""
    try:
        return open(part, "ab" if append else "wb")  # noqa: SIM115 - closed by the caller's with
    except OSError as exc:
        raise io_error(exc, f"creating {part}") from None


def write(handle: BinaryIO, chunk: bytes, part: Path) -> None:
    """Append a chunk; on a write error (a full disk) the part file is removed to free the space."""
    try:
        handle.write(chunk)
    except OSError as exc:
        handle.close()
        part.unlink(missing_ok=True)  # free the space a full disk needs back
        raise io_error(exc, f"writing {part}") from None


def finish(handle: BinaryIO, part: Path) -> None:
    """Flush a part file to disk before it is verified and renamed."""
    try:
        handle.flush()
        os.fsync(handle.fileno())
    except OSError as exc:
        handle.close()
        part.unlink(missing_ok=True)
        raise io_error(exc, f"writing {part}") from None


@contextlib.contextmanager
def locked(directory: Path, emit: OnEvent, lock_timeout: float) -> Iterator[None]:
    """Hold the data set folder's lock: one process at a time writes it; waiting is reported."""
    path = directory / LOCK_NAME
    lock = filelock.FileLock(path)
    try:
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            emit(LockWaiting(path))
            try:
                lock.acquire(timeout=lock_timeout)
            except filelock.Timeout:
                raise BusyError(
                    f"another process has held {path} for {lock_timeout:g} s",
                    "wait for the other `mnist` command to finish, then run this one again",
                ) from None
    except OSError as exc:
        raise io_error(exc, f"locking {path}") from None
    try:
        yield
    finally:
        lock.release()


def missing_folders(directory: Path) -> list[Path]:
    """The folders `mkdir -p directory` would create, deepest first."""
    missing: list[Path] = []
    for folder in (directory, *directory.parents):
        if folder.exists():
            break
        missing.append(folder)
    return missing


def remove_if_empty(directory: Path, created: list[Path]) -> None:
    """Remove the folders a failed download made, while they hold nothing but the lock."""
    # A mistyped --data-dir must not stay behind when no file landed in it (a part file
    # stays, so a later run can resume it).
    if not created:
        return
    with contextlib.suppress(OSError):
        if {child.name for child in directory.iterdir()} <= {LOCK_NAME}:
            (directory / LOCK_NAME).unlink(missing_ok=True)
            for folder in created:
                folder.rmdir()
