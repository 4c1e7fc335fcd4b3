"""Operations: liveness, what is being served, and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from mnist_cli.serving.schemas import Health, Info
from mnist_cli.serving.state import State

router = APIRouter()

_METRICS = {200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus' text exposition format"}}


@router.get("/healthz", summary="Liveness: the model is loaded and the server answers", response_model=Health)
async def healthz() -> dict[str, str]:
    """Liveness."""
    return {"status": "ok"}


@router.get("/info", summary="The model being served: run, data set, test accuracy, class names, limits", response_model=None, responses={200: {"model": Info}})
async def info(state: State) -> Any:
    """The current model version's description."""
    return JSONResponse(dict(state.models.current().info))


@router.get("/metrics", summary="Prometheus metrics (text format)", response_class=PlainTextResponse, responses=_METRICS)
async def metrics(state: State) -> Response:
    """The metrics in Prometheus' text format."""
    return Response(state.metrics.render(), media_type=state.metrics.content_type)
