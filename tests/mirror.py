"""The loopback mirror and the tiny data set that `mnist download`'s tests fetch from it.

A tiny registry entry shaped like MNIST (random bytes, so a transfer spans many reads), and an
HTTP server on a loopback port whose answers each test chooses; nothing reaches the network.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from mnist_cli import data
from mnist_cli.data import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS, DatasetSpec, FileSpec
from mnist_cli.data import download as dl

from helpers import dead_port

NAMES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
OCTETS = "application/octet-stream"
FAST = dl.Settings(timeout=2.0, backoff=0.0, sleep=lambda seconds: None, lock_timeout=10.0)


# A tiny registry entry, shaped like MNIST -------------------------------------


@dataclass
class Tiny:
    """A registry entry and its files, gzipped and decoded."""

    spec: DatasetSpec
    gz: dict[str, bytes]
    raw: dict[str, bytes]


def gzip_bytes(raw: bytes, mtime: int = 0, level: int = 9) -> bytes:
    """`raw` gzipped with a fixed header, so the same bytes give the same digest."""
    return gzip.compress(raw, compresslevel=level, mtime=mtime)


@functools.cache
def tiny_files() -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(gz bytes, decoded bytes) of the four tiny files, by name."""
    rng = random.Random(0)
    # Random bytes do not compress, so the images file stays ~600 kB and a transfer spans many reads.
    raw = {
        TRAIN_IMAGES: rng.randbytes(600_000),
        TRAIN_LABELS: rng.randbytes(3_000),
        TEST_IMAGES: rng.randbytes(100_000),
        TEST_LABELS: rng.randbytes(1_000),
    }
    return {name: gzip_bytes(content) for name, content in raw.items()}, raw


def make_tiny(mirrors: tuple[str, ...]) -> Tiny:
    """The tiny registry entry with these built-in mirrors, and its files."""
    gz, raw = (dict(files) for files in tiny_files())
    files = tuple(
        FileSpec(
            name,
            len(gz[name]),
            hashlib.sha256(gz[name]).hexdigest(),
            # Like real MNIST train-images: no decoded digest, only the gz digest verifies it.
            None if name == TRAIN_IMAGES else hashlib.sha256(raw[name]).hexdigest(),
        )
        for name in NAMES
    )
    return Tiny(DatasetSpec("mnist", files, mirrors, tuple("0123456789")), gz, raw)


# A loopback mirror whose answers each test chooses ----------------------------


@dataclass
class Request:
    mirror: str
    name: str
    range: str | None


@dataclass
class MirrorServer:
    files: dict[str, bytes]
    port: int = 0
    # (mirror, file name) -> modes for successive requests; the last one repeats. Default "ok".
    plan: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)  # mirror -> mode for all its files
    requests: list[Request] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    sent: int = 0  # body bytes written, all requests together
    throttle: float = 0.0  # seconds to sleep after each 64 kB

    def url(self, mirror: str = "good") -> str:
        return f"http://127.0.0.1:{self.port}/{mirror}/"

    def gets(self, name: str) -> list[Request]:
        return [request for request in self.requests if request.name == name]

    def mode(self, mirror: str, name: str) -> str:
        queue = self.plan.get((mirror, name))
        if queue:
            return queue.pop(0) if len(queue) > 1 else queue[0]
        return self.modes.get(mirror, "ok")


def mirror_handler(server: MirrorServer) -> type[http.server.BaseHTTPRequestHandler]:
    """A request handler that answers each request as `server`'s plan says (default: the file, honouring Range)."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _body(self, payload: bytes, status: int = 200, kind: str = OCTETS, **extra: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", extra.pop("length", str(len(payload))))
            for key, value in extra.items():
                self.send_header(key.replace("_", "-"), value)
            self.end_headers()
            self._send(payload)

        def _send(self, payload: bytes) -> None:
            for start in range(0, len(payload), 65536):
                self.wfile.write(payload[start : start + 65536])
                self.wfile.flush()
                server.sent += len(payload[start : start + 65536])
                if server.throttle:
                    time.sleep(server.throttle)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            mirror, _, name = self.path.strip("/").partition("/")
            range_header = self.headers.get("Range")
            server.requests.append(Request(mirror, name, range_header))
            mode = server.mode(mirror, name)
            if mode == "held":  # no answer until the test lets it go
                server.release.wait(120)
                mode = "ok"
            content = server.files.get(name)
            if mode == "404" or content is None:
                self._body(b"not found", 404, "text/plain")
                return
            if mode == "503":
                self._body(b"busy", 503, "text/plain")
                return
            if mode in ("html", "html-octet"):
                page = b"<!DOCTYPE html><html><body>Sign in to the Wi-Fi</body></html>"
                self._body(page, 200, "text/html" if mode == "html" else OCTETS)
                return
            if mode == "truncated":
                self._body(content[: len(content) // 2])
                return
            if mode == "tampered":
                middle = len(content) // 2
                self._body(content[:middle] + bytes([content[middle] ^ 0xFF]) + content[middle + 1 :])
                return
            start = 0
            if range_header and mode != "ignore-range":
                start = int(range_header.removeprefix("bytes=").split("-")[0])
            rest = content[start:]
            extra = {"Content_Range": f"bytes {start}-{len(content) - 1}/{len(content)}"} if start else {}
            if mode in ("drop", "stall"):
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(rest)))
                for key, value in extra.items():
                    self.send_header(key.replace("_", "-"), value)
                self.end_headers()
                self._send(rest[: len(rest) // 2])
                if mode == "stall":
                    server.release.wait(10)
                self.close_connection = True
                return
            self._body(rest, 206 if start else 200, **extra)

    return Handler



@contextlib.contextmanager
def serve_mirror(files: dict[str, bytes], make_handler: Callable[[MirrorServer], type] | None = None) -> Iterator[MirrorServer]:
    """A loopback mirror serving `files`, stopped on leaving the block."""
    state = MirrorServer(files)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), (make_handler or mirror_handler)(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()


# Download environment variables a test must not inherit from the machine it runs on.
OUTSIDE_SETTINGS = ("MNIST_MIRROR", "MNIST_DATA_DIR", "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY")


def isolate_download(monkeypatch: pytest.MonkeyPatch, settings: dl.Settings) -> None:
    """No mirror, data or proxy settings from outside; `settings` for every download in this process."""
    for name in OUTSIDE_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    # The module that defines Settings holds the default the downloader reads.
    monkeypatch.setattr(sys.modules[dl.Settings.__module__], "DEFAULT_SETTINGS", settings)


def register_tiny(monkeypatch: pytest.MonkeyPatch) -> Tiny:
    """The tiny data set registered as `mnist` in this process, whose built-in mirror is a dead loopback port."""
    tiny = make_tiny((f"http://127.0.0.1:{dead_port()}/",))
    monkeypatch.setitem(data.DATASETS, "mnist", tiny.spec)
    return tiny
