"""Reading files the tool did not write itself: regular files only, bounded in size and nesting.

Run directories, config files and mirror folders can be damaged, hand-edited or hostile:
a FIFO would block a plain `open`, `/dev/zero` never ends, and a deeply nested JSON
document makes Python's parser recurse until it raises RecursionError. Everything here
checks before it reads, and fails with `UnsafeFile`, a ValueError whose message completes
the sentence "<path> ...".
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

# Run-directory JSON files are a few kilobytes; a history of thousands of epochs is well under this.
JSON_LIMIT = 4 * 1024 * 1024
# config.json nests 2 levels, history.json 2; the cap leaves room for hand-written files.
JSON_DEPTH = 32

_KINDS = (
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class UnsafeFile(ValueError):
    """A file refused before (or while) reading it; the message follows its path."""


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words ("a FIFO", "a directory", ...)."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def check_regular(path: Path | str, *, limit: int | None = None) -> os.stat_result:
    """Stat `path` (following links) and refuse anything but a regular file no larger than `limit`."""
    info = os.stat(path)
    _check_info(info, limit)
    return info


def _check_info(info: os.stat_result, limit: int | None) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeFile(f"is {kind_of(info.st_mode)}, not a regular file")
    if limit is not None and info.st_size > limit:
        raise UnsafeFile(f"is larger than {_size(limit)} ({_size(info.st_size)})")


def open_regular(path: Path | str, *, limit: int | None = None) -> Any:
    """Open a regular file for binary reading without ever blocking on a FIFO or device."""
    # O_NONBLOCK makes opening a FIFO return at once (instead of waiting for a writer);
    # the fstat on the descriptor then refuses it, with no window for a swap in between.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    try:
        _check_info(os.fstat(fd), limit)
        # Back to blocking reads for a regular file (harmless, and what Python expects).
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: Path | str, *, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (checked again while reading: files grow)."""
    with open_regular(path, limit=limit) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise UnsafeFile(f"is larger than {_size(limit)}")
    return data


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in a JSON text (strings skipped), without recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _no_constants(name: str) -> Any:
    raise UnsafeFile(f"holds {name}, which is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):  # 1e999 parses as infinity
        raise UnsafeFile(f"holds {text}, a number too large for a float")
    return value


def loads_json(text: str, *, max_depth: int = JSON_DEPTH) -> Any:
    """Parse untrusted JSON: nesting checked first, NaN and Infinity refused."""
    # The scan is linear and cheap; json.loads recurses once per level and would
    # raise RecursionError (not a ValueError) on a few thousand brackets.
    if json_depth(text) > max_depth:
        raise UnsafeFile(f"is nested deeper than {max_depth} levels")
    try:
        return json.loads(text, parse_constant=_no_constants, parse_float=_finite_float)
    except UnsafeFile:
        raise
    except (ValueError, RecursionError) as exc:  # RecursionError cannot happen after the scan; kept as a guard
        raise UnsafeFile(f"is not valid JSON: {exc}") from None


def read_json(path: Path | str, *, limit: int = JSON_LIMIT, max_depth: int = JSON_DEPTH) -> Any:
    """Read and parse a JSON file the tool did not necessarily write; raises UnsafeFile or OSError."""
    data = read_bytes(path, limit=limit)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsafeFile("is not UTF-8 text") from None
    return loads_json(text, max_depth=max_depth)


def read_text(path: Path | str, *, limit: int) -> str:
    """Read a small UTF-8 text file the tool did not necessarily write; raises UnsafeFile or OSError."""
    try:
        return read_bytes(path, limit=limit).decode("utf-8")
    except UnicodeDecodeError:
        raise UnsafeFile("is not UTF-8 text") from None


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} bytes"
