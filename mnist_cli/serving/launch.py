"""`mnist serve RUN --follow` started beside a training (`mnist train --serve`), in a process of its own."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SERVING_AT = re.compile(r"serving at (http://\S+/)")  # the start of the line `serving_line` makes


def serving_line(url: str) -> str:
    """The line `mnist serve` prints on standard output once it listens (scripts and `FollowServer` read it)."""
    return f"serving at {url} (API docs at {url}docs; Ctrl-C stops)"


@dataclass
class FollowServer:
    """`mnist serve RUN --follow` in its own process, so that the trainer keeps its speed."""

    run_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    on_address: Callable[[str], None] | None = None
    on_exit: Callable[[int, list[str]], None] | None = None  # the server stopped by itself (a port in use, say)
    stopping: bool = False
    process: subprocess.Popen[str] | None = None
    url: str | None = None
    last_lines: list[str] = field(default_factory=list)

    def start(self) -> None:
        """Start the server; `on_address` hears its address once it listens with a model loaded."""
        command = [sys.executable, "-m", "mnist_cli", "serve", str(self.run_dir), "--follow", "--quiet", "--host", self.host, "--port", str(self.port)]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # Ctrl-C reaches the trainer only; the trainer stops the server
        )
        threading.Thread(target=self._read, name="follow-server-output", daemon=True).start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.last_lines = (self.last_lines + [line])[-5:]  # for the warning if it stops by itself
            match = SERVING_AT.search(line)
            if match and self.url is None:
                self.url = match.group(1)
                if self.on_address is not None:
                    self.on_address(self.url)
        code = self.process.wait()
        if not self.stopping and self.on_exit is not None:
            self.on_exit(code, self.last_lines)

    def stop(self, *, timeout: float = 15.0) -> int | None:
        """Stop the server (SIGTERM, then SIGKILL after `timeout`); its exit status."""
        process = self.process
        if process is None:
            return None
        self.stopping = True
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
        return process.wait()
