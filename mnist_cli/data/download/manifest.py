"""The manifest `.verified.json`: verification results keyed by size, mtime and inode, so genuine files are not hashed again."""

from __future__ import annotations

import contextlib
import json
import stat
from pathlib import Path
from typing import Any

from mnist_cli.core.errors import LocalIOError
from mnist_cli.core.fileio import atomic_write_text, io_error
from mnist_cli.data.download.events import ExistingRejected, FileResult, OnEvent
from mnist_cli.data.download.failures import MirrorFailure
from mnist_cli.data.download.verify import UNVERIFIED, check_structure, sha256_file, verify
from mnist_cli.data.registry import FileSpec

MANIFEST_NAME = ".verified.json"
Manifest = dict[str, dict[str, Any]]


def _stamp(path: Path) -> dict[str, int]:
    info = path.stat()
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "inode": info.st_ino}


def load_manifest(directory: Path) -> Manifest:
    """The recorded verifications ({} when the manifest is missing or damaged: that only costs a re-hash)."""
    from mnist_cli.core.safeio import read_json

    try:
        # Regular file, size and nesting capped: a hostile manifest must not hang or crash us.
        data = read_json(directory / MANIFEST_NAME)
    except (OSError, ValueError):  # UnsafeFile is a ValueError
        return {}
    if not isinstance(data, dict):
        return {}
    return {name: entry for name, entry in data.items() if isinstance(entry, dict)}


def remove_stale_temporaries(directory: Path) -> None:
    """Remove the manifest's temporary files a killed process left (call under the lock)."""
    # Only the lock holder writes the manifest, so under the lock every such file is stale.
    for stale in directory.glob(f".{MANIFEST_NAME}.*.part"):
        with contextlib.suppress(OSError):
            stale.unlink()


def save_manifest(directory: Path, manifest: Manifest) -> None:
    """Write the manifest atomically."""
    atomic_write_text(directory / MANIFEST_NAME, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def record(manifest: Manifest, spec: FileSpec, target: Path, result: FileResult) -> None:
    """Note a file's verification in the manifest (save it with save_manifest)."""
    manifest[spec.name] = {
        **_stamp(target),
        "expected": spec.sha256,
        "sha256": result.sha256,
        "verified_by": result.verified_by,
        "source": result.source,
    }


def existing(spec: FileSpec, target: Path, manifest: Manifest, emit: OnEvent) -> FileResult | None:
    """The result for a file already on disk if it is genuine, else None (after saying why)."""
    from mnist_cli.core.safeio import kind_of

    try:
        mode = target.stat().st_mode
        stamp = _stamp(target)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise io_error(exc, f"reading {target}") from None
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):  # a directory gets io_error's "in the way" below
        # Hashing a FIFO would wait for a writer forever; a device would never end.
        raise LocalIOError(f"{target} is {kind_of(mode)}, not a regular file; refusing to read it", "move it away, then run the command again")
    entry = manifest.get(spec.name)
    if entry and entry.get("verified_by") == UNVERIFIED:
        return _existing_unverified(spec, target, entry, stamp, emit)
    if entry and {key: entry.get(key) for key in stamp} == stamp and entry.get("expected") == spec.sha256:
        source = entry.get("source")
        return FileResult(spec.name, "skipped", source, stamp["size"], entry["sha256"], entry["verified_by"])
    try:
        sha256 = sha256_file(target)
        verified_by = verify(spec, target, sha256)
    except MirrorFailure as failure:
        emit(ExistingRejected(spec.name, failure.reason))
        return None
    except OSError as exc:
        raise io_error(exc, f"reading {target}") from None
    source = entry.get("source") if entry and entry.get("sha256") == sha256 else None
    return FileResult(spec.name, "verified", source, stamp["size"], sha256, verified_by)


def _existing_unverified(spec: FileSpec, target: Path, entry: dict[str, Any], stamp: dict[str, int], emit: OnEvent) -> FileResult | None:
    # Files the user brought with --no-verify stay: only --force replaces them.
    if {key: entry.get(key) for key in stamp} == stamp:
        return FileResult(spec.name, "skipped", entry.get("source"), stamp["size"], entry["sha256"], UNVERIFIED)
    try:
        check_structure(spec, target)
    except MirrorFailure as failure:
        emit(ExistingRejected(spec.name, failure.reason))
        return None
    return FileResult(spec.name, UNVERIFIED, entry.get("source"), stamp["size"], sha256_file(target), UNVERIFIED)
