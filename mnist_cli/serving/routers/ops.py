"""Operations: liveness, what is being served, and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from mnist_cli.serving.state import State

router = APIRouter()


@router.get("/healthz", summary="Liveness: the model is loaded and the server answers")
async def healthz() -> dict[str, str]:
    """Liveness."""
    return {"status": "ok"}


@router.get("/info", summary="The model being served: run, data set, test accuracy, class names, limits")
async def info(state: State) -> dict[str, Any]:
    """The current model version's description."""
    return dict(state.models.current().info)


@router.get("/metrics", summary="Prometheus metrics (text format)")
async def metrics(state: State) -> Response:
    """The metrics in Prometheus' text format."""
    return Response(state.metrics.render(), media_type=state.metrics.content_type)
