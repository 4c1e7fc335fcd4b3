"""What every router shares: the models, the batcher, the metrics, the limits, the body reader and the error type.

The factory makes one `ServingState` per app and keeps it in `app.state.serving`; a route
takes it as a FastAPI dependency (`state: State`). Request bodies are read with a size cap
(refused from Content-Length, or as soon as the stream passes it) and a deadline, so a huge
or trickling body costs the server nothing but a connection.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from mnist_cli.serving.batching import Batcher
from mnist_cli.serving.config import ServeConfig
from mnist_cli.serving.metrics import ServerMetrics
from mnist_cli.serving.models import ModelRegistry

T = TypeVar("T")


class Refused(Exception):
    """A request answered with a 4xx status and `{"error": message, "hint": hint}`."""

    def __init__(self, status: int, message: str, hint: str | None = None, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.hint, self.headers, self.extra = status, message, hint, headers, extra


def error_response(status: int, message: str, hint: str | None = None, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """The JSON error every route answers with: `{"error", "hint"?, ...}`."""
    body: dict[str, Any] = {"error": message}
    if hint:
        body["hint"] = hint
    body.update(extra)
    headers = dict(headers or {})
    # A body the server did not read (too large, too slow) leaves the connection unusable.
    if status in (408, 413):
        headers["Connection"] = "close"
    return JSONResponse(body, status_code=status, headers=headers or None)


def install_error_handlers(app: FastAPI) -> None:
    """Answer `Refused`, HTTP errors (404, 405) and validation errors with the JSON error body."""

    @app.exception_handler(Refused)
    async def _refused(_: Request, exc: Refused) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.hint, exc.headers, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=dict(exc.headers) if exc.headers else None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in exc.errors())
        return error_response(422, f"invalid request: {problems}")


@dataclass
class ServingState:
    """One server's models, batcher, metrics and limits."""

    config: ServeConfig
    models: ModelRegistry
    batcher: Batcher
    metrics: ServerMetrics
    # Preprocessing is CPU work: more threads than cores only add contention (and malloc arenas).
    cpu_limiter: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(max(2, os.cpu_count() or 2)))
    in_flight: int = 0  # requests being handled now; the batcher waits for company only if others are

    async def on_cpu(self, work: Callable[[], T]) -> T:
        """Run blocking CPU work (decoding, preprocessing, parsing) in a worker thread, as many at once as cores."""
        return await anyio.to_thread.run_sync(work, limiter=self.cpu_limiter)

    async def read_body(self, request: Request) -> bytes:
        """The request's body, refused (413) past the size cap and (408) past the body deadline."""
        cap = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise Refused(400, "Content-Length is not a number")
            if int(declared) > cap:
                raise Refused(413, f"the body is {int(declared):,} bytes, over the {cap:,}-byte cap", "send a smaller picture")
        chunks: list[bytes] = []
        size = 0

        async def collect() -> None:
            nonlocal size
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise Refused(413, f"the body is over the {cap:,}-byte cap", "send a smaller picture")
                chunks.append(chunk)

        timeout = self.config.body_timeout_s
        try:
            await asyncio.wait_for(collect(), timeout)
        except asyncio.TimeoutError:
            raise Refused(408, f"the body did not arrive within {timeout:g} s", "send it at once") from None
        except ClientDisconnect:
            raise Refused(400, "the client went away before sending the whole body") from None
        return b"".join(chunks)


def serving_state(request: Request) -> ServingState:
    """The app's shared state (a FastAPI dependency)."""
    return request.app.state.serving


State = Annotated[ServingState, Depends(serving_state)]
