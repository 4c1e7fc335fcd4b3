"""Timeouts and the retry policy of a download."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


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


# Read when a download starts (not bound at import), so tests can swap in zero delays.
DEFAULT_SETTINGS = Settings()
