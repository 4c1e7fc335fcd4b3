"""Why one mirror did not deliver one file, and the one error that sums up a file no mirror delivered.

Exit-code rule when mirrors fail in different ways: if any mirror delivered a complete
copy that failed the digest check, the error is an IntegrityError (someone serves wrong
data, which must not hide behind a dead mirror); otherwise it is a DownloadError.
"""

from __future__ import annotations

import errno
import http.client
import socket
import ssl
import urllib.error

from mnist_cli.core.errors import DownloadError, IntegrityError
from mnist_cli.data.download.mirrors import MIRROR_ENV, MIRROR_HINT, Mirror
from mnist_cli.data.registry import FileSpec

EARLIER = "unreachable earlier in this run"  # a mirror found dead on an earlier file: not tried again


class MirrorFailure(Exception):
    """Why one mirror did not deliver one file; never leaves the download package."""

    def __init__(
        self, reason: str, *, transient: bool = False, integrity: bool = False, dead: bool = False, slow: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient  # worth retrying on the same mirror (and the part file is kept)
        self.slow = slow  # kept part file, but no retry: this mirror is too slow
        self.integrity = integrity  # a complete copy arrived but is not genuine
        self.dead = dead  # the mirror cannot be reached at all: skip it for the other files


def describe(exc: BaseException) -> str:
    """A short lower-case reason for an I/O or HTTP exception."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, http.client.IncompleteRead):
        return "connection closed early"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def connect_failure(exc: urllib.error.URLError, timeout: float) -> MirrorFailure:
    """The failure for a request that got no answer; a mirror that cannot be reached at all is dead."""
    reason = exc.reason
    if isinstance(reason, socket.gaierror):
        return MirrorFailure(f"cannot resolve the host name ({reason.strerror or reason})", dead=True)
    if isinstance(reason, ConnectionRefusedError):
        return MirrorFailure("connection refused", dead=True)
    if isinstance(reason, TimeoutError):
        return MirrorFailure(f"no answer within {timeout:g} s", dead=True)
    if isinstance(reason, ssl.SSLError):
        return MirrorFailure(f"TLS error ({reason.reason or reason})")
    if isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return MirrorFailure(f"network unreachable ({reason.strerror})", dead=True)
    said = describe(reason) if isinstance(reason, BaseException) else reason
    return MirrorFailure(f"connection failed ({said})", transient=True)


def failure_error(spec: FileSpec, failures: list[tuple[Mirror, MirrorFailure]]) -> DownloadError | IntegrityError:
    """The error for a file no mirror delivered, in one short line."""
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
        return DownloadError(f"could not download {spec.name} from {mirror.label}: {failure.reason}", MIRROR_HINT)
    reasons = list(dict.fromkeys(failure.reason for _, failure in failures if failure.reason != EARLIER))
    if len(reasons) == 1:
        said = f"each: {reasons[0]}"
    else:
        last, why = next((m, f) for m, f in reversed(failures) if f.reason != EARLIER)
        said = f"the last, {last.label}: {why.reason}"
    return DownloadError(f"could not download {spec.name} from any of {count} mirrors ({said})", MIRROR_HINT)
