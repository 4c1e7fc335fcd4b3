"""What a download reports while it runs (events) and when it is done (results); the CLI renders them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LockWaiting:
    """Another process holds the data set's lock; this one waits for it."""

    path: Path


@dataclass(frozen=True)
class FileStarted:
    """A transfer began (again, after a retry); `offset` bytes come from a resumed part file."""

    name: str
    source: str
    total: int | None
    offset: int = 0


@dataclass(frozen=True)
class FileProgress:
    """Bytes of a file received so far."""

    name: str
    done: int
    total: int | None


@dataclass(frozen=True)
class MirrorFailed:
    """One mirror failed for one file: retried after `retry_in` seconds, else the next mirror if `more`."""

    name: str
    source: str
    reason: str
    retry_in: float | None = None
    more: bool = True


@dataclass(frozen=True)
class ExistingRejected:
    """A file already on disk failed its digest check and will be downloaded again."""

    name: str
    reason: str


@dataclass(frozen=True)
class FileDone:
    """A file is in place and genuine: downloaded, verified now, or skipped (verified before)."""

    name: str
    status: str
    source: str | None
    bytes: int
    sha256: str


Event = LockWaiting | FileStarted | FileProgress | MirrorFailed | ExistingRejected | FileDone
OnEvent = Callable[[Event], None]


@dataclass(frozen=True)
class FileResult:
    """One file of the data set after the run."""

    name: str
    status: str  # downloaded | verified | skipped | unverified
    source: str | None  # mirror it came from, when known
    bytes: int
    sha256: str  # of the file on disk (gz bytes)
    verified_by: str  # "sha256" (gz digest) or "decoded_sha256"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {
            "name": self.name,
            "status": self.status,
            "source": self.source,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "verified_by": self.verified_by,
        }


@dataclass(frozen=True)
class DownloadResult:
    """What `download` did."""

    dataset: str
    directory: Path
    files: tuple[FileResult, ...]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, as `mnist download --json` prints them."""
        return {
            "dataset": self.dataset,
            "directory": str(self.directory),
            "files": [item.to_dict() for item in self.files],
            "seconds": round(self.seconds, 3),
        }
