"""Helpers for the `mnist serve` tests: a real server process on a free loopback port, raw HTTP, and the tiny data set's digits."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
from PIL import Image

import pictures
from helpers import REPO, bar_digit
from mnist_cli.serving.launch import SERVING_AT

START_DEADLINE = 180.0  # TensorFlow's import and the model's load on a busy 2-core CI box


class ServerProcess:
    """`mnist serve ... --port 0` in a process; its output lines are collected as they come."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environment.get("PYTHONPATH", "")]))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mnist_cli", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=environment,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lines: queue.Queue[tuple[str, str]] = queue.Queue()
        for name, stream, sink in (("stdout", self.process.stdout, self.stdout), ("stderr", self.process.stderr, self.stderr)):
            threading.Thread(target=self._pump, args=(name, stream, sink), daemon=True).start()
        self.url = ""

    def _pump(self, name: str, stream: object, sink: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            sink.append(line.rstrip("\n"))
            self._lines.put((name, line.rstrip("\n")))
        self._lines.put((name, ""))

    def wait_for_line(self, pattern: str, *, deadline: float = START_DEADLINE) -> str:
        """The first new output line matching `pattern` (a regex), waiting at most `deadline` seconds."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            try:
                _, line = self._lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None and self._lines.empty():
                    break
                continue
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r}; stdout {self.stdout}, stderr {self.stderr[-20:]}")

    def start(self) -> "ServerProcess":
        """Wait for the URL line (never a fixed sleep)."""
        line = self.wait_for_line(SERVING_AT.pattern)
        self.url = SERVING_AT.search(line).group(1)  # type: ignore[union-attr]
        return self

    @property
    def port(self) -> int:
        return int(self.url.rstrip("/").rsplit(":", 1)[1])

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60.0, **kwargs)  # type: ignore[arg-type]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raw_request(port: int, head: str, body: bytes = b"", *, timeout: float = 60.0) -> tuple[int, bytes]:
    """Send `head` (request line and headers, without the blank line) and `body`; return the status and the raw answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n\r\n" + body)
        answer = read_answer(sock)
    return int(answer.split(b" ", 2)[1]), answer


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection or has sent a whole response."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        match = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
        if match and len(rest) >= int(match.group(1)):
            break
    return data


def png(image: np.ndarray) -> bytes:
    """The PNG file of a uint8 picture."""
    return pictures.encode(Image.fromarray(image), "PNG")


def good_request_works(server: ServerProcess) -> None:
    """The server still answers a good /predict and a good TF Serving request (after a bad one)."""
    with server.client() as client:
        answer = client.post("/predict", content=png(bar_digit(3)), headers={"Content-Type": "image/png"})
        assert answer.status_code == 200, answer.text
        assert answer.json()[0]["prediction"] == 3
        rows = client.post("/v1/models/mnist:predict", json={"instances": [bar_digit(5).tolist()]})
        assert rows.status_code == 200 and rows.json()["predictions"][0]["classes"] == 5
