"""TensorFlow Serving's REST API: predict, model status and metadata, for the latest or a given version."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from mnist_cli.serving import tfserving
from mnist_cli.serving.models import Servable
from mnist_cli.serving.state import Refused, ServingState, State

_INLINE_JSON = 32 * 1024  # smaller JSON bodies are parsed on the event loop; larger ones in a thread

router = APIRouter()

_REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}, "example": {"instances": [[[0] * 28] * 28]}}},
    }
}


def servable_for(state: ServingState, model_name: str, version: str | None = None) -> Servable:
    """The servable a TF Serving URL names, or 404 in TF Serving's words."""
    name = state.models.name
    spec = f"Latest({model_name})" if version is None else f"Specific({model_name}, {version})"
    if model_name != name:
        raise Refused(404, f"Servable not found for request: {spec}", f"this server's model is called {name!r}")
    servable = state.models.current() if version is None else state.models.get(int(version)) if version.isdigit() else None
    if servable is None:
        held = ", ".join(map(str, state.models.versions()))
        raise Refused(404, f"Servable not found for request: {spec}", f"this server has version(s) {held}")
    return servable


async def _predict(request: Request, state: ServingState, servable: Servable) -> dict[str, Any]:
    body = await state.read_body(request)
    parse = lambda: tfserving.parse_predict(body, max_instances=state.config.max_instances)  # noqa: E731
    try:
        parsed = parse() if len(body) <= _INLINE_JSON else await state.on_cpu(parse)
    except tfserving.BadRequest as exc:
        raise Refused(400, str(exc)) from None
    logits = await state.batcher.logits(parsed.images, servable.run_model)
    return tfserving.answer(logits, columnar=parsed.columnar)


@router.post("/v1/models/{model_name}:predict", summary="TensorFlow Serving's REST predict API", openapi_extra=_REQUEST_BODY)
async def predict_latest(request: Request, state: State, model_name: str) -> dict[str, Any]:
    """Predict with the latest version."""
    return await _predict(request, state, servable_for(state, model_name))


@router.post(
    "/v1/models/{model_name}/versions/{version}:predict", summary="TF Serving's predict, for a given version", openapi_extra=_REQUEST_BODY
)
async def predict_version(request: Request, state: State, model_name: str, version: str) -> dict[str, Any]:
    """Predict with a given version."""
    return await _predict(request, state, servable_for(state, model_name, version))


@router.get("/v1/models/{model_name}", summary="The model's status, as TF Serving reports it")
async def status(state: State, model_name: str) -> dict[str, Any]:
    """Every version held, each AVAILABLE."""
    servable_for(state, model_name)
    return tfserving.model_status(state.models.versions())


@router.get("/v1/models/{model_name}/metadata", summary="The serving signature, as TF Serving describes it")
async def metadata(state: State, model_name: str) -> dict[str, Any]:
    """The latest version's signature."""
    servable = servable_for(state, model_name)
    return tfserving.metadata(state.models.name, str(servable.version))
