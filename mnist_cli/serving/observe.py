"""ASGI middleware: times each request, counts it in the metrics and reports it for the log line."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mnist_cli.serving.state import ServingState

OTHER = "other"  # the metrics' endpoint label of a path no route serves
_PARAMETER = re.compile(r"/\{[^}]*\}")


@dataclass(frozen=True)
class RequestLog:
    """One answered request, for the per-request log line."""

    method: str
    path: str  # as the client sent it (not percent-decoded); untrusted, escape before printing
    status: int
    milliseconds: float


OnRequest = Callable[[RequestLog], None]


def endpoint_label(scope: dict[str, Any]) -> str:
    """The route that served `scope`, without its parameters (`/v1/models/{model_name}:predict` -> `/v1/models:predict`).

    A fixed set of labels, one per route, so that clients cannot grow the metrics with made-up
    paths; read after routing, which records the route (or the mounted app) in the scope.
    """
    route = scope.get("route")
    if route is None and "endpoint" in scope and "app" in scope:
        # The docs' own routes and mounted apps (the docs' assets) are not API routes.
        endpoint = scope["endpoint"]
        route = next((r for r in scope["app"].routes if endpoint in (getattr(r, "endpoint", None), getattr(r, "app", None))), None)
    path = getattr(route, "path", None)
    return (_PARAMETER.sub("", path) or "/") if isinstance(path, str) else OTHER


class Observe:
    """Counts, times and reports every HTTP request; keeps `state.in_flight` for the batcher."""

    def __init__(self, app: Any, *, state: ServingState, on_request: OnRequest | None) -> None:
        self.app, self.state, self.on_request = app, state, on_request

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500
        self.state.in_flight += 1

        async def observed_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            self.state.in_flight -= 1
            seconds = time.perf_counter() - began
            method = scope.get("method", "?")
            label = endpoint_label(scope)
            self.state.metrics.observe_request(method=method, endpoint=label, status=status, seconds=seconds)
            if self.on_request is not None:
                raw = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "replace")
                self.on_request(RequestLog(method, raw.decode("latin-1"), status, seconds * 1000))
