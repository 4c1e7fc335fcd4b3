"""Copying a file from a mirror that is a local folder (or a file:// URL)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mnist_cli.data.download import partfile
from mnist_cli.data.download.events import FileProgress, FileStarted, OnEvent
from mnist_cli.data.download.failures import MirrorFailure, describe
from mnist_cli.data.download.mirrors import Mirror
from mnist_cli.data.download.verify import check_head
from mnist_cli.data.registry import FileSpec


def size_limit(spec: FileSpec) -> int:
    """The most bytes a copy may have: no genuine copy is much bigger than the original."""
    return 2 * spec.size + (1 << 20)


def copy_local(spec: FileSpec, mirror: Mirror, part: Path, emit: OnEvent) -> str:
    """Copy the file from a folder mirror into `part`; return its sha256, or raise MirrorFailure."""
    assert mirror.path is not None
    from mnist_cli.core.safeio import UnsafeFile, open_regular

    source = mirror.path / spec.name
    limit = size_limit(spec)
    try:
        # A FIFO or device is refused from its type, without waiting on it.
        reader = open_regular(source, limit=limit)
        total = os.fstat(reader.fileno()).st_size
    except FileNotFoundError:
        raise MirrorFailure("no such file") from None
    except UnsafeFile as exc:
        raise MirrorFailure(f"it {exc}") from None
    except OSError as exc:
        raise MirrorFailure(f"cannot read it ({describe(exc)})") from None
    digest = hashlib.sha256()
    done = 0
    with reader, partfile.open_part(part, append=False) as handle:
        emit(FileStarted(spec.name, mirror.label, total))
        while True:
            try:
                chunk = reader.read(1 << 20)
            except OSError as exc:
                raise MirrorFailure(f"read failed after {done} bytes ({describe(exc)})") from None
            if not chunk:
                break
            if done == 0:
                check_head(chunk)
            partfile.write(handle, chunk, part)
            digest.update(chunk)
            done += len(chunk)
            if done > limit:  # the file grew while being copied
                raise MirrorFailure(f"grew past {limit} bytes while being copied, far more than the file has")
            emit(FileProgress(spec.name, done, total))
        partfile.finish(handle, part)
    if done < total:
        raise MirrorFailure(f"file shrank while being copied ({done} of {total} bytes)")
    return digest.hexdigest()
