"""Where the files come from: mirrors given as URLs or folders, their credentials kept out of every printed text."""

from __future__ import annotations

import base64
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mnist_cli.core.errors import UsageError
from mnist_cli.data.registry import dataset_spec

MIRROR_ENV = "MNIST_MIRROR"
# Named so that it works after any command: train, evaluate and show have no --mirror of their own.
MIRROR_HINT = (
    f"check the network, or set {MIRROR_ENV} (or run `mnist download --mirror ...`) "
    "with another URL or a folder that holds the .gz files"
)
# scheme://user:password@ anywhere in a string (also inside an error message).
_CREDENTIALS = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
_HINT = "give an http(s):// URL, a file:// URL or an existing folder that holds the .gz files"


@dataclass(frozen=True)
class Mirror:
    """A place that serves the files: an http(s) base URL or a local folder."""

    label: str  # what is printed and recorded: credentials are never part of it
    url: str | None = None  # without credentials
    path: Path | None = None
    # "Basic ..." from a URL's user:password@, sent as HTTP basic auth and never printed.
    authorization: str | None = field(default=None, repr=False)


def redact_url(text: str) -> str:
    """`text` with any user:password@ in a URL replaced by ***@, for printing and logs."""
    return _CREDENTIALS.sub(r"\1***@", text)


def parse_mirror(value: str, *, origin: str = "--mirror") -> Mirror:
    """Turn an http(s):// URL, file:// URL or folder path into a Mirror, or raise UsageError."""
    raw = value.strip()
    if not raw:
        raise UsageError(f"{origin} is empty", _HINT)
    try:
        parsed = urllib.parse.urlsplit(raw)
        hostname = parsed.hostname
    except ValueError as exc:  # a bad port or IPv6 literal
        raise UsageError(f"{origin} {redact_url(raw)!r} is not a valid URL ({exc})", _HINT) from None
    text = redact_url(raw)  # only the redacted form is ever printed
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        if not hostname:
            raise UsageError(f"{origin} {text!r} has no host name", _HINT)
        return _http_mirror(raw, text, parsed)
    if parsed.username is not None or parsed.password is not None:
        raise UsageError(f"{origin} {text!r} carries credentials, which only http(s):// mirrors can use", _HINT)
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise UsageError(f"{origin} {text!r} names a remote host; file:// URLs must be local", _HINT)
        path = Path(urllib.request.url2pathname(parsed.path))
    elif len(scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise UsageError(f"{origin} {text!r} uses unsupported scheme {scheme!r}", _HINT)
    else:
        path = Path(text).expanduser()
    if not path.is_dir():
        raise UsageError(f"{origin} {text!r} is not an existing folder", _HINT)
    path = path.resolve()
    return Mirror(label=str(path), path=path)


def _http_mirror(raw: str, text: str, parsed: urllib.parse.SplitResult) -> Mirror:
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
