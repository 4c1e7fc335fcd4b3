"""Checking a `.keras` file before Keras opens it: a regular zip file of sane, bounded members.

Read from the archive's directory alone, without TensorFlow, so a bad file fails in a blink.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from mnist_cli.core.errors import ModelError
from mnist_cli.core.safeio import UnsafeFile, check_regular

# Bounds on a .keras archive, checked from its directory before Keras reads a member: the
# JSON members of a model.keras are a few kilobytes, the weights of the largest allowed
# network well under the total cap. zipfile stops reading a member at its declared size,
# so a member cannot expand past what the directory says.
KERAS_JSON_LIMIT = 4 * 1024 * 1024
KERAS_TOTAL_LIMIT = 2 * 1024 * 1024 * 1024
KERAS_MAX_MEMBERS = 256


def check_archive(path: Path) -> None:
    """Refuse a .keras file that is not a regular zip file of sane, bounded, relative members."""
    fix = "export it again with `mnist export`, or use the run's checkpoints"
    try:
        check_regular(path)
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except UnsafeFile as exc:
        raise ModelError(f"{path} {exc}", fix) from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise ModelError(f"{path} is not a Keras model file (a .keras file is a zip archive)", f"it may be truncated or corrupt; {fix}") from None
    if len(members) > KERAS_MAX_MEMBERS:
        raise ModelError(f"{path} holds {len(members)} files, more than a Keras model has", fix)
    total = 0
    for member in members:
        name = member.filename
        if name.startswith(("/", "\\")) or "\\" in name or ".." in name.split("/") or any(ord(c) < 32 for c in name):
            raise ModelError(f"{path} holds a file with an unsafe name ({_quoted(name)}); refusing it", fix)
        limit = KERAS_JSON_LIMIT if name.endswith(".json") else KERAS_TOTAL_LIMIT
        total += member.file_size
        if member.file_size > limit or total > KERAS_TOTAL_LIMIT:
            raise ModelError(
                f"{path}: {_quoted(name)} expands to {member.file_size:,} bytes, over the {limit:,}-byte cap; refusing it",
                fix,
            )


def _quoted(text: str) -> str:
    """A file name from an archive, quoted with its control characters escaped."""
    return repr(text[:200])
