"""The HTTP application: the drawing page, `/predict`, TF Serving's REST API, health and metrics.

`create_app` takes a model loaded once at start and returns an ASGI app (FastAPI); every
request is answered from memory. The page's assets are read from the package when the app
is made, so no endpoint reads or writes a file. Request bodies are read with a size cap
(refused from Content-Length, or as soon as the stream passes it) and a deadline, so a huge
or trickling body costs the server nothing but a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartParser
from starlette.requests import ClientDisconnect

from mnist_cli import __version__
from mnist_cli.runs import listing
from mnist_cli.data.registry import dataset_spec
from mnist_cli.inference import predict
from mnist_cli.inference.loading import Loaded
from mnist_cli.serving import tfserving
from mnist_cli.serving.batching import Batcher
from mnist_cli.serving.config import ServeConfig
from mnist_cli.serving.metrics import Metrics

RAW_BODY = "request body"  # the `path` of a picture sent as the whole body
_INLINE_JSON = 32 * 1024  # smaller JSON bodies are parsed on the event loop; larger ones in a thread
_ASSETS = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}


@dataclass(frozen=True)
class RequestLog:
    """One answered request, for the per-request log line."""

    method: str
    path: str  # as the client sent it (not percent-decoded); untrusted, escape before printing
    status: int
    milliseconds: float


OnRequest = Callable[[RequestLog], None]


class Refused(Exception):
    """A request answered with a 4xx status and `{"error": message, "hint": hint}`."""

    def __init__(self, status: int, message: str, hint: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.hint, self.extra = status, message, hint, extra


def _error(status: int, message: str, hint: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if hint:
        body["hint"] = hint
    body.update(extra)
    # A body the server did not read (too large, too slow) leaves the connection unusable.
    headers = {"Connection": "close"} if status in (408, 413) else None
    return JSONResponse(body, status_code=status, headers=headers)


def model_info(loaded: Loaded, config: ServeConfig) -> dict[str, Any]:
    """What the page shows about the model: its run, data set, architecture and test accuracy."""
    run_dir = Path(loaded.source.run_dir) if loaded.source.run_dir else None
    test_accuracy = listing.summarize_run(run_dir).test_accuracy if run_dir else None
    dataset = loaded.dataset
    return {
        "run": run_dir.name if run_dir else None,
        "model": loaded.source.describe(),
        "dataset": dataset,
        "architecture": loaded.config.model if loaded.config_known else None,
        "loss": loaded.config.loss,
        "test_accuracy": test_accuracy,
        "class_names": list(dataset_spec(loaded.config.dataset).class_names),
        "tf_serving_name": config.model_name,
        "max_instances": config.max_instances,
        "max_body_bytes": config.max_body_bytes,
        "batching": {"enabled": config.batching, "max_batch_size": config.max_batch_size, "wait_ms": config.batch_wait_ms},
        "version": __version__,
    }


class _Observe:
    """ASGI middleware: times each request, counts it in the metrics and reports it for the log."""

    def __init__(self, *, metrics: Metrics, on_request: OnRequest | None) -> None:
        self.app: Any = None
        self.endpoints: Callable[[str], str] = lambda path: path
        self.metrics, self.on_request = metrics, on_request
        self.active = 0  # requests being handled now; the batcher waits for company only if others are

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500
        self.active += 1

        async def observed_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            self.active -= 1
            seconds = time.perf_counter() - began
            method = scope.get("method", "?")
            self.metrics.observe_request(method=method, endpoint=self.endpoints(scope.get("path", "")), status=status, seconds=seconds)
            if self.on_request is not None:
                raw = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "replace")
                self.on_request(RequestLog(method, raw.decode("latin-1"), status, seconds * 1000))


def create_app(
    loaded: Loaded,
    config: ServeConfig,
    *,
    on_request: OnRequest | None = None,
    on_ready: Callable[[], None] | None = None,
) -> Any:
    """An ASGI app serving `loaded` with `config`'s batching and limits; `on_request` hears of every request."""
    metrics = Metrics(max_batch_size=config.max_batch_size)
    observe = _Observe(metrics=metrics, on_request=on_request)
    predict_step = loaded.predict_step

    def run_model(images: np.ndarray) -> np.ndarray:
        return predict_step(images).numpy()

    # Traces the step, and lets TensorFlow size its buffers for the largest batch, before the
    # first request: memory then stays flat under load.
    for size in (1, config.max_batch_size if config.batching else 1):
        run_model(np.zeros((size, 28, 28), np.uint8))
    batcher = Batcher(
        run_model,
        enabled=config.batching,
        max_batch_size=config.max_batch_size,
        max_wait_s=config.batch_wait_ms / 1000,
        on_batch=metrics.observe_batch,
        in_flight=lambda: observe.active,
    )
    # Preprocessing is CPU work: more threads than cores only add contention (and malloc arenas).
    preprocessing = anyio.CapacityLimiter(max(2, os.cpu_count() or 2))
    info = model_info(loaded, config)
    static = resources.files("mnist_cli.serving") / "static"
    page = (static / "index.html").read_bytes()
    assets = {name: (static / name).read_bytes() for name in _ASSETS}
    name = config.model_name

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        if on_ready is not None:
            on_ready()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPIOffline(
        title="mnist serve",
        version=__version__,
        description="Digits in pictures, read by a model trained with `mnist train`; TensorFlow Serving's REST predict API.",
        lifespan=lifespan,
        static_url="/docs-assets",
    )

    @app.exception_handler(Refused)
    async def _refused(_: Request, exc: Refused) -> JSONResponse:
        return _error(exc.status, exc.message, exc.hint, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in exc.errors())
        return _error(422, f"invalid request: {problems}")

    async def read_body(request: Request) -> bytes:
        cap = config.max_body_bytes
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

        try:
            await asyncio.wait_for(collect(), config.body_timeout_s)
        except asyncio.TimeoutError:
            raise Refused(408, f"the body did not arrive within {config.body_timeout_s:g} s", "send it at once") from None
        except ClientDisconnect:
            raise Refused(400, "the client went away before sending the whole body") from None
        return b"".join(chunks)

    async def pictures_of(request: Request, body: bytes) -> list[predict.Picture]:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "multipart/form-data":
            return await _form_pictures(request, body, config)
        if content_type in ("application/json", "application/x-ndjson") or content_type.startswith("text/"):
            raise Refused(
                415,
                f"/predict takes pictures, not {content_type}",
                f"send a picture's bytes (Content-Type: image/png, ...) or a multipart form; JSON arrays go to /v1/models/{name}:predict",
            )
        return [predict.Picture(RAW_BODY, body)]

    @app.get("/", include_in_schema=False)
    async def page_html() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/static/{asset}", include_in_schema=False)
    async def asset(asset: str) -> Response:
        if asset not in assets:
            raise Refused(404, "no such asset")
        return Response(assets[asset], media_type=_ASSETS[asset])

    @app.get("/healthz", summary="Liveness: the model is loaded and the server answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info", summary="The model being served: run, data set, test accuracy, class names, limits")
    async def model() -> dict[str, Any]:
        return info

    @app.get("/metrics", summary="Prometheus metrics (text format)")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.post(
        "/predict",
        summary="Read the digit in one or more pictures; the same JSON as `mnist predict --json`",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "image/png": {"schema": {"type": "string", "format": "binary"}},
                    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                    "multipart/form-data": {
                        "schema": {"type": "object", "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}}}
                    },
                },
            }
        },
    )
    async def predict_route(
        request: Request,
        top_k: int = Query(3, ge=1, le=10, description="How many of the most probable classes to list."),
        image: bool = Query(False, description="Add the 28x28 digit the network saw (rows of 0-255) to each item."),
    ) -> Any:
        body = await read_body(request)
        pictures = await pictures_of(request, body)
        if len(pictures) > config.max_instances:
            raise Refused(400, f"too many pictures: {len(pictures)}, at most {config.max_instances} per request")
        read = await anyio.to_thread.run_sync(lambda: [predict.read_picture(picture) for picture in pictures], limiter=preprocessing)
        good = [index for index, result in enumerate(read) if not isinstance(result, predict.Failure)]
        items: list[dict[str, Any]] = [result.to_dict() if isinstance(result, predict.Failure) else {} for result in read]
        if good:
            images = np.stack([read[index] for index in good]).astype(np.uint8, copy=False)
            logits = await batcher.logits(images)
            for index, prediction in zip(good, predict.make_predictions(loaded, [pictures[i].path for i in good], images, logits)):
                items[index] = prediction.to_dict(top_k=top_k)
                if image:
                    items[index]["image"] = prediction.image.tolist()
        failures = [result for result in read if isinstance(result, predict.Failure)]
        if failures:
            first = failures[0]
            message = first.message if len(read) == 1 else f"{len(failures)} of {len(read)} pictures could not be read; the first: {first.message}"
            raise Refused(422, message, first.hint, results=items)
        return items

    async def tf_predict(request: Request, model_name: str) -> dict[str, Any]:
        if model_name != name:
            raise Refused(404, f"Servable not found for request: Latest({model_name})", f"this server's model is called {name!r}")
        body = await read_body(request)
        parse = lambda: tfserving.parse_predict(body, max_instances=config.max_instances)  # noqa: E731
        try:
            parsed = parse() if len(body) <= _INLINE_JSON else await anyio.to_thread.run_sync(parse, limiter=preprocessing)
        except tfserving.BadRequest as exc:
            raise Refused(400, str(exc)) from None
        logits = await batcher.logits(parsed.images)
        return tfserving.answer(logits, columnar=parsed.columnar)

    tf_body = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}, "example": {"instances": [[[0] * 28] * 28]}}},
        }
    }

    @app.post("/v1/models/{model_name}:predict", summary="TensorFlow Serving's REST predict API", openapi_extra=tf_body)
    async def tf_serving_predict(request: Request, model_name: str) -> dict[str, Any]:
        return await tf_predict(request, model_name)

    @app.post("/v1/models/{model_name}/versions/{version}:predict", summary="TF Serving's predict, for a version (there is one: 1)", openapi_extra=tf_body)
    async def tf_serving_predict_version(request: Request, model_name: str, version: str) -> dict[str, Any]:
        if version != "1":
            raise Refused(404, f"Servable not found for request: Specific({model_name}, {version})", "this server has version 1")
        return await tf_predict(request, model_name)

    @app.get("/v1/models/{model_name}", summary="The model's status, as TF Serving reports it")
    async def tf_serving_status(model_name: str) -> dict[str, Any]:
        if model_name != name:
            raise Refused(404, f"Servable not found for request: Latest({model_name})")
        return tfserving.model_status()

    @app.get("/v1/models/{model_name}/metadata", summary="The serving signature, as TF Serving describes it")
    async def tf_serving_metadata(model_name: str) -> dict[str, Any]:
        if model_name != name:
            raise Refused(404, f"Servable not found for request: Latest({model_name})")
        return tfserving.metadata(name)

    known = {"/", "/healthz", "/info", "/metrics", "/predict", "/docs", "/openapi.json", "/redoc"}

    def endpoint(path: str) -> str:
        # A fixed set of labels, so that clients cannot grow the metrics with made-up paths.
        if path in known:
            return path
        if path.startswith("/static/"):
            return "/static"
        if path.startswith("/docs-assets/"):
            return "/docs-assets"
        if path.startswith("/v1/models/"):
            return "/v1/models:predict" if path.endswith(":predict") else "/v1/models"
        return "other"

    observe.app, observe.endpoints = app, endpoint
    return observe


async def _form_pictures(request: Request, body: bytes, config: ServeConfig) -> list[predict.Picture]:
    async def stream() -> AsyncIterator[bytes]:
        yield body

    parser = MultiPartParser(
        request.headers, stream(), max_files=config.max_instances, max_fields=config.max_instances, max_part_size=config.max_body_bytes
    )
    # The whole body is in memory already (capped); its files must not be spooled to disk.
    parser.spool_max_size = config.max_body_bytes + 1
    try:
        form = await parser.parse()
    except Exception as exc:  # noqa: BLE001 - python-multipart raises several types for malformed forms
        if "too many files" in str(exc).lower():
            raise Refused(400, f"too many pictures: at most {config.max_instances} per request") from None
        raise Refused(400, f"the multipart form cannot be read: {exc}", "send each picture as a file field") from None
    pictures = []
    try:
        for field_name, value in form.multi_items():
            if isinstance(value, str):
                continue  # text fields carry no picture
            data = await value.read()
            pictures.append(predict.Picture(value.filename or field_name, data))
    finally:
        await form.close()
    if not pictures:
        raise Refused(400, "the multipart form holds no file", "send each picture as a file field, for example curl -F file=@digit.png")
    return pictures
