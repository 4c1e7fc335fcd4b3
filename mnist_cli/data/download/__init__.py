"""Fetch a data set's four files from mirrors: verified, resumable, atomic, one process at a time.

The package's parts, from the bottom: settings (timeouts, retries), events (what a
download reports), mirrors (URLs, folders, credentials), failures (why a mirror failed,
the one error when all did), verify (digests, IDX structure), partfile (part files, the
lock), manifest (what was verified before), local and http (the transfers), fetch (the
download itself). What the commands use is re-exported here.
"""

from __future__ import annotations

from mnist_cli.data.download.events import (
    DownloadResult,
    Event,
    ExistingRejected,
    FileDone,
    FileProgress,
    FileResult,
    FileStarted,
    LockWaiting,
    MirrorFailed,
    OnEvent,
)
from mnist_cli.data.download.fetch import download, ensure_dataset
from mnist_cli.data.download.manifest import MANIFEST_NAME
from mnist_cli.data.download.mirrors import MIRROR_ENV, Mirror, parse_mirror, redact_url, resolve_mirrors
from mnist_cli.data.download.partfile import LOCK_NAME
from mnist_cli.data.download.settings import Settings
from mnist_cli.data.download.verify import UNVERIFIED

__all__ = [
    "LOCK_NAME",
    "MANIFEST_NAME",
    "MIRROR_ENV",
    "UNVERIFIED",
    "DownloadResult",
    "Event",
    "ExistingRejected",
    "FileDone",
    "FileProgress",
    "FileResult",
    "FileStarted",
    "LockWaiting",
    "Mirror",
    "MirrorFailed",
    "OnEvent",
    "Settings",
    "download",
    "ensure_dataset",
    "parse_mirror",
    "redact_url",
    "resolve_mirrors",
]
