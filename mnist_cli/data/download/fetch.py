"""The download itself: each file of a data set tried on each mirror in order, verified, renamed into place.

Any failure of one mirror falls through to the next; a file no mirror delivers ends the
download with one error (failures.py). Files already on disk are checked against the
manifest first, and kept when genuine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from mnist_cli.core.errors import DownloadError, IntegrityError
from mnist_cli.core.fileio import fsync_dir, io_error
from mnist_cli.data.download import manifest as manifests
from mnist_cli.data.download import partfile
from mnist_cli.data.download import settings as policy
from mnist_cli.data.download.events import DownloadResult, FileDone, FileResult, MirrorFailed, OnEvent
from mnist_cli.data.download.failures import EARLIER, MirrorFailure, failure_error
from mnist_cli.data.download.http import fetch_http
from mnist_cli.data.download.local import copy_local
from mnist_cli.data.download.mirrors import Mirror, resolve_mirrors
from mnist_cli.data.download.settings import Settings
from mnist_cli.data.download import verify as checks
from mnist_cli.data.registry import DatasetSpec, FileSpec, dataset_dir, dataset_spec, missing_files


def download(
    dataset: str,
    data_dir: Path | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    force: bool = False,
    verify: bool = True,
    only: Iterable[str] | None = None,
    on_event: OnEvent | None = None,
    settings: Settings | None = None,
) -> DownloadResult:
    """Make `<data-dir>/<dataset>/` hold genuine copies of the data set's files (or of `only` those).

    With `verify=False` (`--no-verify`) files that differ from the published ones are taken
    when their IDX structure is sound, and the manifest records them as unverified.
    """
    started = time.monotonic()
    spec: DatasetSpec = dataset_spec(dataset)
    sources = resolve_mirrors(dataset, mirrors)
    settings = settings or policy.DEFAULT_SETTINGS
    emit: OnEvent = on_event or (lambda event: None)
    wanted = set(only) if only is not None else None
    directory = dataset_dir(data_dir, dataset)
    created = partfile.missing_folders(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise io_error(exc, f"creating {directory}") from None
    try:
        results = _download_into(spec, directory, sources, force=force, verify=verify, wanted=wanted, emit=emit, settings=settings)
    except BaseException:
        partfile.remove_if_empty(directory, created)
        raise
    return DownloadResult(spec.name, directory, tuple(results), time.monotonic() - started)


def ensure_dataset(
    dataset: str,
    data_dir: Path | None,
    *,
    mirrors: Sequence[str] | None = None,
    on_event: OnEvent | None = None,
) -> Path:
    """The data set's folder; files already there are used as they are, missing ones are downloaded."""
    directory = dataset_dir(data_dir, dataset)
    missing = missing_files(directory, dataset)
    if missing:
        download(dataset, data_dir, mirrors=mirrors, only=missing, on_event=on_event)
    return directory


def _download_into(
    spec: DatasetSpec,
    directory: Path,
    sources: Sequence[Mirror],
    *,
    force: bool,
    verify: bool,
    wanted: set[str] | None,
    emit: OnEvent,
    settings: Settings,
) -> list[FileResult]:
    results: list[FileResult] = []
    dead: set[Mirror] = set()
    with partfile.locked(directory, emit, settings.lock_timeout):
        manifests.remove_stale_temporaries(directory)
        manifest = manifests.load_manifest(directory)
        for file_spec in spec.files:
            if wanted is not None and file_spec.name not in wanted:
                continue
            target = directory / file_spec.name
            result = None if force else manifests.existing(file_spec, target, manifest, emit)
            if result is None:
                if force:
                    partfile.part_path(target).unlink(missing_ok=True)  # --force starts clean, no resume
                result = _fetch(file_spec, sources, target, emit, settings, dead, verify=verify)
            if result.status != "skipped":
                manifests.record(manifest, file_spec, target, result)
                manifests.save_manifest(directory, manifest)
            emit(FileDone(result.name, result.status, result.source, result.bytes, result.sha256))
            results.append(result)
    return results


def _fetch(
    spec: FileSpec,
    sources: Sequence[Mirror],
    target: Path,
    emit: OnEvent,
    settings: Settings,
    dead: set[Mirror],
    *,
    verify: bool = True,
) -> FileResult:
    failures: list[tuple[Mirror, MirrorFailure]] = []
    for index, mirror in enumerate(sources):
        if mirror in dead:
            failures.append((mirror, MirrorFailure(EARLIER)))
            continue
        try:
            return _fetch_from(spec, mirror, target, emit, settings, verify=verify)
        except MirrorFailure as failure:
            failures.append((mirror, failure))
            if failure.dead:
                dead.add(mirror)
            more = index + 1 < len(sources)
            if more:
                emit(MirrorFailed(spec.name, mirror.label, failure.reason, more=True))
    raise _last_failure(spec, failures, emit)


def _last_failure(spec: FileSpec, failures: list[tuple[Mirror, MirrorFailure]], emit: OnEvent) -> DownloadError | IntegrityError:
    """The error ending a file no mirror delivered; the last mirror's reason is reported only if the error leaves it out."""
    error = failure_error(spec, failures)
    mirror, failure = failures[-1]
    # Said once: a reason the error line repeats is not also printed as a progress line before it.
    if failure.reason != EARLIER and failure.reason not in error.message:
        emit(MirrorFailed(spec.name, mirror.label, failure.reason, more=False))
    return error


def _fetch_from(
    spec: FileSpec, mirror: Mirror, target: Path, emit: OnEvent, settings: Settings, *, verify: bool = True
) -> FileResult:
    """Fetch one file from one mirror into `target`, verified; raise MirrorFailure otherwise."""
    part = partfile.part_path(target)
    try:
        sha256, verified_by = _transfer_and_check(spec, mirror, part, emit, settings, verify=verify)
        size = part.stat().st_size
        os.replace(part, target)
        fsync_dir(target.parent)
    except MirrorFailure as failure:
        # A transfer that merely broke keeps its part file: the next mirror or run resumes it.
        if not failure.transient:
            part.unlink(missing_ok=True)
        raise
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise io_error(exc, f"writing {target}") from None
    return FileResult(spec.name, "downloaded", mirror.label, size, sha256, verified_by)


def _transfer_and_check(
    spec: FileSpec, mirror: Mirror, part: Path, emit: OnEvent, settings: Settings, *, verify: bool
) -> tuple[str, str]:
    """(sha256, how it verified) of the part file once it holds a genuine copy."""
    for attempt in range(2):
        if mirror.path is not None:
            sha256, resumed = copy_local(spec, mirror, part, emit), False
        else:
            sha256, resumed = fetch_http(spec, mirror, part, emit, settings)
        try:
            if not verify:
                checks.check_structure(spec, part)
                return sha256, checks.UNVERIFIED
            return sha256, checks.verify(spec, part, sha256)
        except MirrorFailure:
            part.unlink(missing_ok=True)
            # Resumed bytes may come from an older, different copy: one clean retry decides.
            if not resumed or attempt:
                raise
    raise AssertionError("unreachable")

