"""Fetching a file over HTTP(S): Range resume of a part file, stall and trickle detection, retries with backoff.

An interrupted transfer keeps its part file and resumes with a Range request, on a
retry or on the next run. Credentials go in an Authorization header that a redirect
to another host does not carry along.
"""

from __future__ import annotations

import hashlib
import http.client
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from mnist_cli import __version__
from mnist_cli.data.download import partfile
from mnist_cli.data.download.events import FileProgress, FileStarted, MirrorFailed, OnEvent
from mnist_cli.data.download.failures import MirrorFailure, connect_failure, describe
from mnist_cli.data.download.local import size_limit
from mnist_cli.data.download.mirrors import Mirror
from mnist_cli.data.download.settings import Settings
from mnist_cli.data.download.verify import GZIP_MAGIC, check_head
from mnist_cli.data.registry import FileSpec

CHUNK = 256 * 1024
# HTTP statuses worth retrying on the same mirror; every other error moves on.
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_opener = urllib.request.build_opener()


def fetch_http(spec: FileSpec, mirror: Mirror, part: Path, emit: OnEvent, settings: Settings) -> tuple[str, bool]:
    """Download with retries and Range resume; return (sha256, whether a part file was resumed)."""
    stalled = 0  # failures that made no progress; these alone spend the retries
    failures = 0
    resumed = False
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            sha256, offset = _http_once(spec, mirror, part, emit, settings)
            return sha256, resumed or offset > 0
        except MirrorFailure as failure:
            progressed = (part.stat().st_size if part.exists() else 0) > before
            stalled = 0 if progressed else stalled + 1
            failures += 1
            resumed = resumed or before > 0
            if not failure.transient or failure.slow or stalled > settings.retries or failures > 10 * (settings.retries + 1):
                raise
            delay = min(settings.max_backoff, settings.backoff * 2 ** max(stalled - 1, 0))
            emit(MirrorFailed(spec.name, mirror.label, failure.reason, retry_in=delay))
            settings.sleep(delay)


def _http_once(spec: FileSpec, mirror: Mirror, part: Path, emit: OnEvent, settings: Settings) -> tuple[str, int]:
    """One HTTP request, resuming `part` if it holds a gzip start; return (sha256, bytes resumed)."""
    offset, digest = _resume_point(part)
    response = _open(_request(spec, mirror, offset), part, offset, settings)
    with response:
        if not _resumes(response, part, offset):
            offset, digest = 0, hashlib.sha256()  # the server ignored Range: start over
        if response.headers.get_content_type() == "text/html":
            raise MirrorFailure("served an HTML page (Content-Type text/html), not the gzip file")
        length_header = response.headers.get("Content-Length")
        total = offset + int(length_header) if length_header and length_header.isdigit() else None
        emit(FileStarted(spec.name, mirror.label, total, offset))
        with partfile.open_part(part, append=offset > 0) as handle:
            done = _stream(spec, response, handle, part, digest, offset=offset, total=total, emit=emit, settings=settings)
            partfile.finish(handle, part)
    if total is not None and done < total:
        raise MirrorFailure(f"connection closed after {done} of {total} bytes", transient=True)
    if done < 2:
        raise MirrorFailure(f"sent only {done} bytes")
    return digest.hexdigest(), offset


def _resume_point(part: Path) -> tuple[int, Any]:
    """(bytes already in the part file, their running sha256); (0, empty) when it holds no gzip start."""
    offset = 0
    digest = hashlib.sha256()
    if part.is_file():
        with open(part, "rb") as handle:
            if handle.read(2) == GZIP_MAGIC:
                handle.seek(0)
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
                    offset += len(chunk)
    return (offset, digest) if offset else (0, hashlib.sha256())


def _request(spec: FileSpec, mirror: Mirror, offset: int) -> urllib.request.Request:
    assert mirror.url is not None
    headers = {"User-Agent": f"mnist-cli/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(mirror.url + urllib.parse.quote(spec.name), headers=headers)
    if mirror.authorization:
        # Unredirected: a redirect to another host must not carry the credentials along.
        request.add_unredirected_header("Authorization", mirror.authorization)
    return request


def _open(request: urllib.request.Request, part: Path, offset: int, settings: Settings) -> Any:
    """The response to `request`; every way of getting none is a MirrorFailure."""
    try:
        return _opener.open(request, timeout=settings.timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            part.unlink(missing_ok=True)  # the part file is no prefix of this file: start over
            raise MirrorFailure("refused to resume (HTTP 416)", transient=True) from None
        raise MirrorFailure(f"HTTP {exc.code} {exc.reason}", transient=exc.code in _TRANSIENT_STATUS) from None
    except urllib.error.URLError as exc:
        raise connect_failure(exc, settings.timeout) from None
    except (OSError, http.client.HTTPException) as exc:
        raise MirrorFailure(f"no valid answer ({describe(exc)})", transient=True) from None


def _resumes(response: Any, part: Path, offset: int) -> bool:
    """Whether the answer continues the part file at `offset` (206 with the right range) or starts over (200)."""
    if offset and response.status == 206:
        content_range = response.headers.get("Content-Range", "")
        if not content_range.startswith(f"bytes {offset}-"):
            part.unlink(missing_ok=True)
            raise MirrorFailure(f"answered a resume with the wrong range ({content_range!r})", transient=True)
        return True
    if response.status != 200:
        raise MirrorFailure(f"unexpected HTTP {response.status} {response.reason}")
    return False


def _stream(
    spec: FileSpec, response: Any, handle: Any, part: Path, digest: Any, *, offset: int, total: int | None, emit: OnEvent, settings: Settings
) -> int:
    """Copy the response body into the part file; return the bytes it then holds. A stall or a trickle raises."""
    # A runaway stream must not fill the disk.
    limit = size_limit(spec)
    done = offset
    window_start, window_bytes = time.monotonic(), 0
    head = b""
    while True:
        try:
            chunk = response.read1(CHUNK)
        except (OSError, http.client.HTTPException) as exc:
            raise MirrorFailure(f"transfer broke after {done} bytes ({describe(exc)})", transient=True) from None
        if not chunk:
            return done
        if done == 0 and len(head) < 2:
            head += chunk
            if len(head) >= 2:
                check_head(head)
        partfile.write(handle, chunk, part)
        digest.update(chunk)
        done += len(chunk)
        if done > limit:
            raise MirrorFailure(f"sent more than {limit} bytes, far more than the file has")
        emit(FileProgress(spec.name, done, total))
        window_bytes += len(chunk)
        elapsed = time.monotonic() - window_start
        if elapsed >= settings.timeout:
            if window_bytes < settings.min_speed * elapsed:
                said = f"too slow ({window_bytes / elapsed:,.0f} bytes/s over {elapsed:.1f} s)"
                raise MirrorFailure(said, transient=True, slow=True)
            window_start, window_bytes = time.monotonic(), 0
