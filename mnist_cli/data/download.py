"""Fetch a data set's four files from mirrors: verified, resumable, atomic, one process at a time.

Each file is tried on each mirror in order; any failure of one mirror falls
through to the next. Bytes stream into `.<name>.part` beside the target and are
hashed on the way; the part file is renamed to its final name only once it
verifies, so a crash, Ctrl-C or full disk never leaves an unverified file under
a final name. An interrupted HTTP transfer keeps its part file and resumes with
a Range request, on a retry or on the next run.

A file is genuine when its gz sha256 matches, or when its decoded (gunzipped)
sha256 matches; the second lets re-compressed copies such as Debian's verify.

Exit-code rule when mirrors fail in different ways: if any mirror delivered a
complete copy that failed the digest check, the error is an IntegrityError
(someone serves wrong data, which must not hide behind a dead mirror);
otherwise it is a DownloadError.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import gzip
import hashlib
import http.client
import json
import os
import re
import socket
import ssl
import stat
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import filelock

from mnist_cli import __version__
from mnist_cli.data.registry import DatasetSpec, FileSpec, dataset_dir, dataset_spec, missing_files
from mnist_cli.core.errors import BusyError, DownloadError, IntegrityError, LocalIOError, UsageError
from mnist_cli.core.fileio import atomic_write_text, fsync_dir, io_error

MIRROR_ENV = "MNIST_MIRROR"
LOCK_NAME = ".lock"
MANIFEST_NAME = ".verified.json"
CHUNK = 256 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
# HTTP statuses worth retrying on the same mirror; every other error moves on.
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# Named so that it works after any command: train, evaluate and show have no --mirror of their own.
_MIRROR_HINT = (
    f"check the network, or set {MIRROR_ENV} (or run `mnist download --mirror ...`) "
    "with another URL or a folder that holds the .gz files"
)
UNVERIFIED = "unverified"  # verified_by for files taken with --no-verify: IDX structure checked, digest not


@dataclass(frozen=True)
class Settings:
    """Timeouts and retry policy; tests pass zero delays."""

    timeout: float = 30.0  # seconds a socket may stay silent before the transfer counts as stalled
    # A mirror that trickles bytes never trips the socket timeout; slower than this over
    # `timeout` seconds counts as stalled too, and the next mirror resumes the part file.
    min_speed: float = 1024.0  # bytes per second
    retries: int = 3  # retries per mirror after a transient failure that made no progress
    backoff: float = 1.0  # first retry delay; doubles each time
    max_backoff: float = 8.0
    lock_timeout: float = 600.0  # how long to wait for another process on the same data set
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)


DEFAULT_SETTINGS = Settings()


@dataclass(frozen=True)
class Mirror:
    """A place that serves the files: an http(s) base URL or a local folder."""

    label: str  # what is printed and recorded: credentials are never part of it
    url: str | None = None  # without credentials
    path: Path | None = None
    # "Basic ..." from a URL's user:password@, sent as HTTP basic auth and never printed.
    authorization: str | None = field(default=None, repr=False)


# Events -----------------------------------------------------------------------


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


# Results ----------------------------------------------------------------------


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


# Mirrors ----------------------------------------------------------------------


def parse_mirror(value: str, *, origin: str = "--mirror") -> Mirror:
    """Turn an http(s):// URL, file:// URL or folder path into a Mirror, or raise UsageError."""
    raw = value.strip()
    hint = "give an http(s):// URL, a file:// URL or an existing folder that holds the .gz files"
    if not raw:
        raise UsageError(f"{origin} is empty", hint)
    try:
        parsed = urllib.parse.urlsplit(raw)
        hostname = parsed.hostname
    except ValueError as exc:  # a bad port or IPv6 literal
        raise UsageError(f"{origin} {redact_url(raw)!r} is not a valid URL ({exc})", hint) from None
    text = redact_url(raw)  # only the redacted form is ever printed
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        if not hostname:
            raise UsageError(f"{origin} {text!r} has no host name", hint)
        authorization = None
        if parsed.username is not None or parsed.password is not None:
            user = urllib.parse.unquote(parsed.username or "")
            password = urllib.parse.unquote(parsed.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            authorization = f"Basic {token}"
            raw = urllib.parse.urlunsplit(parsed._replace(netloc=parsed.netloc.rpartition("@")[2]))
        base = raw if raw.endswith("/") else raw + "/"
        label = text if text.endswith("/") else text + "/"
        return Mirror(label=label, url=base, authorization=authorization)
    if parsed.username is not None or parsed.password is not None:
        raise UsageError(f"{origin} {text!r} carries credentials, which only http(s):// mirrors can use", hint)
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise UsageError(f"{origin} {text!r} names a remote host; file:// URLs must be local", hint)
        path = Path(urllib.request.url2pathname(parsed.path))
    elif len(scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise UsageError(f"{origin} {text!r} uses unsupported scheme {scheme!r}", hint)
    else:
        path = Path(text).expanduser()
    if not path.is_dir():
        raise UsageError(f"{origin} {text!r} is not an existing folder", hint)
    path = path.resolve()
    return Mirror(label=str(path), path=path)


def redact_url(text: str) -> str:
    """`text` with any user:password@ in a URL replaced by ***@, for printing and logs."""
    return _CREDENTIALS.sub(r"\1***@", text)


def resolve_mirrors(dataset: str, values: Sequence[str] | None = None) -> tuple[Mirror, ...]:
    """Mirrors to use: `values`, else MNIST_MIRROR (split on commas/whitespace), else the built-in list."""
    if values:
        mirrors = [parse_mirror(value) for value in values]
    elif os.environ.get(MIRROR_ENV, "").strip():
        parts = [part for part in re.split(r"[\s,]+", os.environ[MIRROR_ENV]) if part]
        mirrors = [parse_mirror(part, origin=MIRROR_ENV) for part in parts]
    else:
        mirrors = [parse_mirror(url, origin="built-in mirror") for url in dataset_spec(dataset).mirrors]
    return tuple(dict.fromkeys(mirrors))  # drop repeats, keep order


# Failures of one mirror --------------------------------------------------------


class _MirrorFailure(Exception):
    """Why one mirror did not deliver one file; never leaves this module."""

    def __init__(
        self, reason: str, *, transient: bool = False, integrity: bool = False, dead: bool = False, slow: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient  # worth retrying on the same mirror (and the part file is kept)
        self.slow = slow  # kept part file, but no retry: this mirror is too slow
        self.integrity = integrity  # a complete copy arrived but is not genuine
        self.dead = dead  # the mirror cannot be reached at all: skip it for the other files


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, http.client.IncompleteRead):
        return "connection closed early"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def _connect_failure(exc: urllib.error.URLError, settings: Settings) -> _MirrorFailure:
    reason = exc.reason
    if isinstance(reason, socket.gaierror):
        return _MirrorFailure(f"cannot resolve the host name ({reason.strerror or reason})", dead=True)
    if isinstance(reason, ConnectionRefusedError):
        return _MirrorFailure("connection refused", dead=True)
    if isinstance(reason, TimeoutError):
        return _MirrorFailure(f"no answer within {settings.timeout:g} s", dead=True)
    if isinstance(reason, ssl.SSLError):
        return _MirrorFailure(f"TLS error ({reason.reason or reason})")
    if isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return _MirrorFailure(f"network unreachable ({reason.strerror})", dead=True)
    said = _describe(reason) if isinstance(reason, BaseException) else reason
    return _MirrorFailure(f"connection failed ({said})", transient=True)


# Verification -----------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _decoded_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with gzip.open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(spec: FileSpec, path: Path, gz_sha256: str) -> str:
    """How the file verified ("sha256" or "decoded_sha256"); raise _MirrorFailure when it does not."""
    if gz_sha256 == spec.sha256:
        return "sha256"
    # Decoding also tells a truncated or corrupt gzip apart from a different file.
    try:
        decoded = _decoded_sha256(path)
    except EOFError:
        size = path.stat().st_size
        raise _MirrorFailure(f"truncated: the gzip data ends early ({size} bytes)", integrity=True) from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise _MirrorFailure(f"sha256 mismatch, and the gzip data is corrupt ({exc})", integrity=True) from None
    if spec.decoded_sha256 and decoded == spec.decoded_sha256:
        return "decoded_sha256"
    if spec.decoded_sha256:
        raise _MirrorFailure(
            f"sha256 mismatch (got {gz_sha256[:12]}..., decoded {decoded[:12]}...; "
            f"expected {spec.sha256[:12]}... or decoded {spec.decoded_sha256[:12]}...)",
            integrity=True,
        )
    raise _MirrorFailure(
        f"sha256 mismatch (got {gz_sha256[:12]}..., expected {spec.sha256[:12]}...; "
        "only the original .gz verifies this file)",
        integrity=True,
    )


# The manifest: verification results keyed by size, mtime and inode ------------


def _stamp(path: Path) -> dict[str, int]:
    info = path.stat()
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "inode": info.st_ino}


def _load_manifest(directory: Path) -> dict[str, dict[str, Any]]:
    from mnist_cli.core.safeio import read_json

    try:
        # Regular file, size and nesting capped: a hostile manifest must not hang or crash us.
        data = read_json(directory / MANIFEST_NAME)
    except (OSError, ValueError):  # UnsafeFile is a ValueError
        return {}  # a missing or damaged cache only costs a re-hash
    if not isinstance(data, dict):
        return {}
    return {name: entry for name, entry in data.items() if isinstance(entry, dict)}


def _remove_stale_temporaries(directory: Path) -> None:
    # A process killed while writing the manifest leaves its temporary file; only the
    # lock holder writes the manifest, so under the lock every such file is stale.
    for stale in directory.glob(f".{MANIFEST_NAME}.*.part"):
        with contextlib.suppress(OSError):
            stale.unlink()


def _save_manifest(directory: Path, manifest: dict[str, dict[str, Any]]) -> None:
    atomic_write_text(directory / MANIFEST_NAME, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


# Writing the part file -------------------------------------------------------


def _part_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.part")


def _write(handle: BinaryIO, chunk: bytes, part: Path) -> None:
    try:
        handle.write(chunk)
    except OSError as exc:
        handle.close()
        part.unlink(missing_ok=True)  # free the space a full disk needs back
        raise io_error(exc, f"writing {part}") from None


def _finish(handle: BinaryIO, part: Path) -> None:
    try:
        handle.flush()
        os.fsync(handle.fileno())
    except OSError as exc:
        handle.close()
        part.unlink(missing_ok=True)
        raise io_error(exc, f"writing {part}") from None


def _open_part(part: Path, *, append: bool) -> BinaryIO:
    try:
        return open(part, "ab" if append else "wb")  # noqa: SIM115 - closed by the caller's with
    except OSError as exc:
        raise io_error(exc, f"creating {part}") from None


def _check_head(head: bytes) -> None:
    if head.startswith(_GZIP_MAGIC):
        return
    if head.lstrip()[:1] == b"<":
        raise _MirrorFailure("served an HTML page, not the gzip file")
    raise _MirrorFailure(f"served data that is not gzip (starts with {head[:8]!r})")


def _copy_local(spec: FileSpec, mirror: Mirror, part: Path, emit: OnEvent) -> str:
    assert mirror.path is not None
    from mnist_cli.core.safeio import UnsafeFile, open_regular

    source = mirror.path / spec.name
    # As over HTTP, no genuine copy is much bigger than the original.
    limit = 2 * spec.size + (1 << 20)
    try:
        # A FIFO or device is refused from its type, without waiting on it.
        reader = open_regular(source, limit=limit)
        total = os.fstat(reader.fileno()).st_size
    except FileNotFoundError:
        raise _MirrorFailure("no such file") from None
    except UnsafeFile as exc:
        raise _MirrorFailure(f"it {exc}") from None
    except OSError as exc:
        raise _MirrorFailure(f"cannot read it ({_describe(exc)})") from None
    digest = hashlib.sha256()
    done = 0
    with reader, _open_part(part, append=False) as handle:
        emit(FileStarted(spec.name, mirror.label, total))
        while True:
            try:
                chunk = reader.read(1 << 20)
            except OSError as exc:
                raise _MirrorFailure(f"read failed after {done} bytes ({_describe(exc)})") from None
            if not chunk:
                break
            if done == 0:
                _check_head(chunk)
            _write(handle, chunk, part)
            digest.update(chunk)
            done += len(chunk)
            if done > limit:  # the file grew while being copied
                raise _MirrorFailure(f"grew past {limit} bytes while being copied, far more than the file has")
            emit(FileProgress(spec.name, done, total))
        _finish(handle, part)
    if done < total:
        raise _MirrorFailure(f"file shrank while being copied ({done} of {total} bytes)")
    return digest.hexdigest()


_opener = urllib.request.build_opener()
# scheme://user:password@ anywhere in a string (also inside an error message).
_CREDENTIALS = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")


def _http_once(spec: FileSpec, mirror: Mirror, part: Path, emit: OnEvent, settings: Settings) -> tuple[str, int]:
    """One HTTP request, resuming `part` if it holds a gzip start; return (sha256, bytes resumed)."""
    assert mirror.url is not None
    offset = 0
    digest = hashlib.sha256()
    if part.is_file():
        with open(part, "rb") as handle:
            if handle.read(2) == _GZIP_MAGIC:
                handle.seek(0)
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
                    offset += len(chunk)
        if offset == 0:
            digest = hashlib.sha256()
    headers = {"User-Agent": f"mnist-cli/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(mirror.url + urllib.parse.quote(spec.name), headers=headers)
    if mirror.authorization:
        # Unredirected: a redirect to another host must not carry the credentials along.
        request.add_unredirected_header("Authorization", mirror.authorization)
    try:
        response = _opener.open(request, timeout=settings.timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            part.unlink(missing_ok=True)  # the part file is no prefix of this file: start over
            raise _MirrorFailure("refused to resume (HTTP 416)", transient=True) from None
        raise _MirrorFailure(f"HTTP {exc.code} {exc.reason}", transient=exc.code in _TRANSIENT_STATUS) from None
    except urllib.error.URLError as exc:
        raise _connect_failure(exc, settings) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _MirrorFailure(f"no valid answer ({_describe(exc)})", transient=True) from None
    with response:
        if offset and response.status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                part.unlink(missing_ok=True)
                raise _MirrorFailure(f"answered a resume with the wrong range ({content_range!r})", transient=True)
        elif response.status != 200:
            raise _MirrorFailure(f"unexpected HTTP {response.status} {response.reason}")
        else:
            offset = 0  # the server ignored Range: start over
            digest = hashlib.sha256()
        if response.headers.get_content_type() == "text/html":
            raise _MirrorFailure("served an HTML page (Content-Type text/html), not the gzip file")
        length_header = response.headers.get("Content-Length")
        total = offset + int(length_header) if length_header and length_header.isdigit() else None
        # A runaway stream must not fill the disk: no genuine copy is much bigger than the original.
        limit = 2 * spec.size + (1 << 20)
        done = offset
        emit(FileStarted(spec.name, mirror.label, total, offset))
        window_start, window_bytes = time.monotonic(), 0
        with _open_part(part, append=offset > 0) as handle:
            head = b""
            while True:
                try:
                    chunk = response.read1(CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    said = f"transfer broke after {done} bytes ({_describe(exc)})"
                    raise _MirrorFailure(said, transient=True) from None
                if not chunk:
                    break
                if done == 0 and len(head) < 2:
                    head += chunk
                    if len(head) >= 2:
                        _check_head(head)
                _write(handle, chunk, part)
                digest.update(chunk)
                done += len(chunk)
                if done > limit:
                    raise _MirrorFailure(f"sent more than {limit} bytes, far more than the file has")
                emit(FileProgress(spec.name, done, total))
                window_bytes += len(chunk)
                elapsed = time.monotonic() - window_start
                if elapsed >= settings.timeout:
                    if window_bytes < settings.min_speed * elapsed:
                        said = f"too slow ({window_bytes / elapsed:,.0f} bytes/s over {elapsed:.1f} s)"
                        raise _MirrorFailure(said, transient=True, slow=True)
                    window_start, window_bytes = time.monotonic(), 0
            _finish(handle, part)
        if total is not None and done < total:
            raise _MirrorFailure(f"connection closed after {done} of {total} bytes", transient=True)
        if done < 2:
            raise _MirrorFailure(f"sent only {done} bytes")
    return digest.hexdigest(), offset


def _fetch_http(spec: FileSpec, mirror: Mirror, part: Path, emit: OnEvent, settings: Settings) -> tuple[str, bool]:
    """Download with retries and Range resume; return (sha256, whether a part file was resumed)."""
    stalled = 0  # failures that made no progress; these alone spend the retries
    failures = 0
    resumed = False
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            sha256, offset = _http_once(spec, mirror, part, emit, settings)
            return sha256, resumed or offset > 0
        except _MirrorFailure as failure:
            progressed = (part.stat().st_size if part.exists() else 0) > before
            stalled = 0 if progressed else stalled + 1
            failures += 1
            resumed = resumed or before > 0
            if not failure.transient or failure.slow or stalled > settings.retries or failures > 10 * (settings.retries + 1):
                raise
            delay = min(settings.max_backoff, settings.backoff * 2 ** max(stalled - 1, 0))
            emit(MirrorFailed(spec.name, mirror.label, failure.reason, retry_in=delay))
            settings.sleep(delay)


def _check_structure(spec: FileSpec, path: Path) -> None:
    """Raise _MirrorFailure unless `path` is a well-formed IDX file of the kind `spec` names."""
    from mnist_cli.core.errors import DataError, LocalIOError
    from mnist_cli.data import idx

    reader = idx.read_idx_images if "idx3" in spec.name else idx.read_idx_labels
    try:
        reader(path)
    except (DataError, LocalIOError) as exc:
        said = exc.message.replace(str(path), "the file")
        raise _MirrorFailure(f"not a usable IDX file: {said}", integrity=True) from None


def _fetch_from(
    spec: FileSpec, mirror: Mirror, target: Path, emit: OnEvent, settings: Settings, *, verify: bool = True
) -> FileResult:
    """Fetch one file from one mirror into `target`, verified; raise _MirrorFailure otherwise."""
    part = _part_path(target)
    try:
        for attempt in range(2):
            if mirror.path is not None:
                sha256, resumed = _copy_local(spec, mirror, part, emit), False
            else:
                sha256, resumed = _fetch_http(spec, mirror, part, emit, settings)
            try:
                if verify:
                    verified_by = _verify(spec, part, sha256)
                else:
                    _check_structure(spec, part)
                    verified_by = UNVERIFIED
                break
            except _MirrorFailure:
                part.unlink(missing_ok=True)
                # Resumed bytes may come from an older, different copy: one clean retry decides.
                if not resumed or attempt:
                    raise
        size = part.stat().st_size
        os.replace(part, target)
        fsync_dir(target.parent)
    except _MirrorFailure as failure:
        # A transfer that merely broke keeps its part file: the next mirror or run resumes it.
        if not failure.transient:
            part.unlink(missing_ok=True)
        raise
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise io_error(exc, f"writing {target}") from None
    return FileResult(spec.name, "downloaded", mirror.label, size, sha256, verified_by)


def _failure_error(spec: FileSpec, failures: list[tuple[Mirror, _MirrorFailure]]) -> DownloadError | IntegrityError:
    # Each mirror's reason was already reported as it failed; the error sums them up in one short line.
    integrity = [(mirror, failure) for mirror, failure in failures if failure.integrity]
    local = [mirror for mirror, _ in integrity if mirror.path is not None]
    if local:
        folder = local[0].label
        return IntegrityError(
            f"{spec.name} in {folder} differs from the published file ({integrity[0][1].reason})",
            f"to use your own files anyway: mnist download --mirror {folder} --no-verify "
            "(their IDX structure is still checked)",
        )
    if integrity:
        mirror, failure = integrity[0]
        return IntegrityError(
            f"{spec.name} from {mirror.label} failed verification: {failure.reason}",
            f"a mirror serves a damaged or altered copy; set {MIRROR_ENV} (or `mnist download --mirror`) to another, or run again later",
        )
    count = len(failures)
    if count == 1:
        mirror, failure = failures[0]
        return DownloadError(f"could not download {spec.name} from {mirror.label}: {failure.reason}", _MIRROR_HINT)
    reasons = list(dict.fromkeys(failure.reason for _, failure in failures if failure.reason != _EARLIER))
    if len(reasons) == 1:
        said = f"each: {reasons[0]}"
    else:
        last, why = next((m, f) for m, f in reversed(failures) if f.reason != _EARLIER)
        said = f"the last, {last.label}: {why.reason}"
    return DownloadError(f"could not download {spec.name} from any of {count} mirrors ({said})", _MIRROR_HINT)


# Files already on disk --------------------------------------------------------


def _existing(spec: FileSpec, target: Path, manifest: dict[str, dict[str, Any]], emit: OnEvent) -> FileResult | None:
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
        # Files the user brought with --no-verify stay: only --force replaces them.
        if {key: entry.get(key) for key in stamp} == stamp:
            return FileResult(spec.name, "skipped", entry.get("source"), stamp["size"], entry["sha256"], UNVERIFIED)
        try:
            _check_structure(spec, target)
        except _MirrorFailure as failure:
            emit(ExistingRejected(spec.name, failure.reason))
            return None
        return FileResult(spec.name, UNVERIFIED, entry.get("source"), stamp["size"], _sha256_file(target), UNVERIFIED)
    if entry and {key: entry.get(key) for key in stamp} == stamp and entry.get("expected") == spec.sha256:
        source = entry.get("source")
        return FileResult(spec.name, "skipped", source, stamp["size"], entry["sha256"], entry["verified_by"])
    try:
        sha256 = _sha256_file(target)
        verified_by = _verify(spec, target, sha256)
    except _MirrorFailure as failure:
        emit(ExistingRejected(spec.name, failure.reason))
        return None
    except OSError as exc:
        raise io_error(exc, f"reading {target}") from None
    source = entry.get("source") if entry and entry.get("sha256") == sha256 else None
    return FileResult(spec.name, "verified", source, stamp["size"], sha256, verified_by)


def _record(manifest: dict[str, dict[str, Any]], spec: FileSpec, target: Path, result: FileResult) -> None:
    manifest[spec.name] = {
        **_stamp(target),
        "expected": spec.sha256,
        "sha256": result.sha256,
        "verified_by": result.verified_by,
        "source": result.source,
    }


# The public API ---------------------------------------------------------------


@contextlib.contextmanager
def _locked(directory: Path, emit: OnEvent, settings: Settings) -> Iterator[None]:
    path = directory / LOCK_NAME
    lock = filelock.FileLock(path)
    try:
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            emit(LockWaiting(path))
            try:
                lock.acquire(timeout=settings.lock_timeout)
            except filelock.Timeout:
                raise BusyError(
                    f"another process has held {path} for {settings.lock_timeout:g} s",
                    "wait for the other `mnist` command to finish, then run this one again",
                ) from None
    except OSError as exc:
        raise io_error(exc, f"locking {path}") from None
    try:
        yield
    finally:
        lock.release()


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
    settings = settings or DEFAULT_SETTINGS
    emit: OnEvent = on_event or (lambda event: None)
    wanted = set(only) if only is not None else None
    directory = dataset_dir(data_dir, dataset)
    created = _missing_folders(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise io_error(exc, f"creating {directory}") from None
    try:
        return _download_into(
            spec, directory, sources, force=force, verify=verify, wanted=wanted, emit=emit, settings=settings, started=started
        )
    except BaseException:
        _remove_if_empty(directory, created)
        raise


def _missing_folders(directory: Path) -> list[Path]:
    """The folders `mkdir -p directory` would create, deepest first."""
    missing: list[Path] = []
    for folder in (directory, *directory.parents):
        if folder.exists():
            break
        missing.append(folder)
    return missing


def _remove_if_empty(directory: Path, created: list[Path]) -> None:
    # A mistyped --data-dir must not stay behind when no file landed in it: folders this
    # call made are removed again while they hold nothing but the lock (a part file stays,
    # so a later run can resume it).
    if not created:
        return
    with contextlib.suppress(OSError):
        if {child.name for child in directory.iterdir()} <= {LOCK_NAME}:
            (directory / LOCK_NAME).unlink(missing_ok=True)
            for folder in created:
                folder.rmdir()


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
    started: float,
) -> DownloadResult:
    results: list[FileResult] = []
    dead: set[Mirror] = set()
    with _locked(directory, emit, settings):
        _remove_stale_temporaries(directory)
        manifest = _load_manifest(directory)
        for file_spec in spec.files:
            if wanted is not None and file_spec.name not in wanted:
                continue
            target = directory / file_spec.name
            result = None if force else _existing(file_spec, target, manifest, emit)
            if result is None:
                if force:
                    _part_path(target).unlink(missing_ok=True)  # --force starts clean, no resume
                result = _fetch(file_spec, sources, target, emit, settings, dead, verify=verify)
            if result.status != "skipped":
                _record(manifest, file_spec, target, result)
                _save_manifest(directory, manifest)
            emit(FileDone(result.name, result.status, result.source, result.bytes, result.sha256))
            results.append(result)
    return DownloadResult(spec.name, directory, tuple(results), time.monotonic() - started)


_EARLIER = "unreachable earlier in this run"


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
    failures: list[tuple[Mirror, _MirrorFailure]] = []
    for index, mirror in enumerate(sources):
        if mirror in dead:
            failures.append((mirror, _MirrorFailure(_EARLIER)))
            continue
        try:
            return _fetch_from(spec, mirror, target, emit, settings, verify=verify)
        except _MirrorFailure as failure:
            failures.append((mirror, failure))
            if failure.dead:
                dead.add(mirror)
            emit(MirrorFailed(spec.name, mirror.label, failure.reason, more=index + 1 < len(sources)))
    raise _failure_error(spec, failures)


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
