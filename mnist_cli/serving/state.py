"""What every router shares: the models, the batcher, the metrics, the limits, the body reader and the error type.

The factory makes one `ServingState` per app and keeps it in `app.state.serving`; a route
takes it as a FastAPI dependency (`state: State`). Request bodies are read with a size cap
(refused from Content-Length, or as soon as the stream passes it) and a deadline, so a huge
or trickling body costs the server nothing but a connection. A `Content-Encoding: gzip` body
is inflated, as TF Serving does, under the same cap: a gzip bomb stops at the cap.
"""

from __future__ import annotations

import asyncio
import os
import zlib
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
from mnist_cli.serving.readers import PictureReaders

T = TypeVar("T")
GZIP = ("gzip", "x-gzip")  # the Content-Encodings the server inflates
IDENTITY = ("", "identity")


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
    readers: PictureReaders = field(default_factory=lambda: PictureReaders("threads"))
    # Parsing large bodies is CPU work: more threads than cores only add contention (and malloc arenas).
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

        encoding = request.headers.get("content-encoding", "").strip().lower()
        if encoding not in GZIP + IDENTITY:
            raise Refused(415, f"Content-Encoding {encoding!r} is not supported", "send the body as it is, or gzip-compressed")
        timeout = self.config.body_timeout_s
        try:
            await asyncio.wait_for(collect(), timeout)
        except asyncio.TimeoutError:
            raise Refused(408, f"the body did not arrive within {timeout:g} s", "send it at once") from None
        except ClientDisconnect:
            raise Refused(400, "the client went away before sending the whole body") from None
        body = b"".join(chunks)
        return await self.on_cpu(lambda: inflate(body, cap)) if encoding in GZIP else body


def inflate(body: bytes, cap: int) -> bytes:
    """A gzip body's inflated bytes, refused (413) once they pass `cap` and (400) when the stream is damaged."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        inflated = inflater.decompress(body, cap + 1)
    except zlib.error as exc:
        raise Refused(400, f"the gzip body cannot be inflated: {exc}", "send the body as it is, or gzip-compressed") from None
    if len(inflated) > cap:
        raise Refused(413, f"the inflated body is over the {cap:,}-byte cap", "send a smaller body")
    if not inflater.eof:
        raise Refused(400, "the gzip body is truncated", "send the whole gzip stream")
    return inflated


async def serving_state(request: Request) -> ServingState:
    """The app's shared state (a FastAPI dependency; async, as FastAPI runs a plain function in a worker thread)."""
    return request.app.state.serving


State = Annotated[ServingState, Depends(serving_state)]
