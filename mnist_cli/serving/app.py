"""The HTTP application: a small factory that holds the shared state and includes one router per concern.

`create_app` takes a model loaded once at start and returns an ASGI app (FastAPI); every
request is answered from memory. The routers (`serving/routers/`) are the drawing page,
`/predict`, TF Serving's REST API and the operations routes; each reads the shared state
(`serving/state.py`: the model versions, the batcher, the metrics, the limits) through a
FastAPI dependency. Another protocol is one more router module and one more line here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from mnist_cli import __version__
from mnist_cli.inference.loading import Loaded
from mnist_cli.serving import openapi
from mnist_cli.serving.batching import Batcher
from mnist_cli.serving.config import ServeConfig
from mnist_cli.serving.metrics import ServerMetrics
from mnist_cli.serving.models import FIRST_VERSION, ModelRegistry, make_servable, model_info
from mnist_cli.serving.observe import Observe, OnRequest, RequestLog
from mnist_cli.serving import follow as follow_run
from mnist_cli.serving.follow import Feed
from mnist_cli.serving.readers import PictureReaders
from mnist_cli.serving.routers import events, explain, ops, page, predict, tfserving, v2
from mnist_cli.serving.state import ServingState, install_error_handlers

__all__ = ["RequestLog", "create_app", "model_info"]


def make_state(loaded: Loaded, config: ServeConfig, version: int = FIRST_VERSION) -> ServingState:
    """The shared state of a server holding `loaded` as `version` (1 unless following a run)."""
    metrics = ServerMetrics(max_batch_size=config.max_batch_size)
    models = ModelRegistry(config.model_name, (make_servable(loaded, version, config),))
    state: ServingState
    batcher = Batcher(
        enabled=config.batching,
        max_batch_size=config.max_batch_size,
        max_wait_s=config.batch_wait_ms / 1000,
        on_batch=metrics.observe_batch,
        in_flight=lambda: state.in_flight,
    )
    readers = PictureReaders(config.preprocessing, config.preprocess_workers)
    state = ServingState(config=config, models=models, batcher=batcher, metrics=metrics, readers=readers)
    return state


def create_app(
    loaded: Loaded,
    config: ServeConfig,
    *,
    on_request: OnRequest | None = None,
    on_ready: Callable[[], None] | None = None,
    follow: Path | None = None,
) -> FastAPI:
    """An ASGI app serving `loaded` with `config`'s batching and limits; `on_request` hears of every request.

    With `follow` (a run directory), each new complete checkpoint of the run is swapped in as a version.
    """
    version = (loaded.source.step or FIRST_VERSION) if follow else FIRST_VERSION
    state = make_state(loaded, config, version)
    explain.prepare(state.models.current())
    feed = Feed()
    follower = follow_run.follower_for(state, feed, follow) if follow else None
    if follower is None:
        follow_run.show_run(feed, loaded, version)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await state.batcher.start()
        await anyio.to_thread.run_sync(state.readers.start)
        feed.attach(asyncio.get_running_loop())
        if follower is not None:
            follower.start()
        if on_ready is not None:
            on_ready()
        try:
            yield
        finally:
            if follower is not None:
                await asyncio.to_thread(follower.stop)
            await state.batcher.stop()
            state.readers.stop()  # on the loop: it removes the workers' pipe readers

    app = FastAPIOffline(
        title="mnist serve",
        version=__version__,
        description="Digits in pictures, read by a model trained with `mnist train`; TensorFlow Serving's REST predict API.",
        lifespan=lifespan,
        static_url="/docs-assets",
    )
    app.state.serving = state
    app.state.feed = feed
    install_error_handlers(app)
    app.add_middleware(Observe, state=state, on_request=on_request)
    app.include_router(page.router)
    app.include_router(ops.router)
    app.include_router(predict.router)
    app.include_router(tfserving.router)
    app.include_router(v2.router)
    app.include_router(explain.router)
    app.include_router(events.router)
    openapi.install(app, state)
    return app
