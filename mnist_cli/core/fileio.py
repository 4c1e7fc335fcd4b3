"""Writing files so that a crash never leaves a half-written file under its final name."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from mnist_cli.core.errors import LocalIOError


def io_error(exc: OSError, what: str) -> LocalIOError:
    """Turn an OSError into a one-line error that says what to do."""
    if exc.errno == errno.ENOSPC:
        return LocalIOError(f"no space left on the device while {what}", "free some disk space and run the command again")
    if exc.errno == errno.EISDIR:
        return LocalIOError(f"a directory is in the way while {what}: {exc.filename or ''}".rstrip(": "), "a file belongs there; move the directory away")
    if exc.errno == errno.ENOTDIR:
        return LocalIOError(f"a file is in the way while {what}: {exc.filename or ''}".rstrip(": "), "a directory belongs there; move the file away")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return LocalIOError(f"permission denied while {what}: {exc.filename or ''}".rstrip(": "), "check the directory's permissions")
    return LocalIOError(f"{exc.strerror or exc} while {what}", "check the path and the disk")


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: Path, *, what: str | None = None) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces `path` only if the block completes."""
    path = Path(path)
    what = what or f"writing {path}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as exc:
        raise io_error(exc, what) from None
    tmp = Path(tmp_name)
    try:
        # mkstemp creates 0600 files; give the final file the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise io_error(exc, what) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write bytes to `path` atomically."""
    with atomic_writer(path) as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 text to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
