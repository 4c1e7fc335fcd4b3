"""The Open Inference Protocol v2 over REST (Triton's and KServe's), and KServe v1's health and model list.

Health, server and model metadata, model readiness and inference, for the latest version
or a given one, through the same batcher as every other route. Errors are the protocol's
`{"error": "..."}` (with our `hint` beside it where one helps), 400 for a bad request and 404
for an unknown model or version.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mnist_cli.serving import v2, v2_schemas
from mnist_cli.serving.models import Servable
from mnist_cli.serving.outputs import signature_outputs
from mnist_cli.serving.state import Refused, ServingState, State

_INLINE_BODY = 32 * 1024  # smaller bodies are parsed on the event loop; larger ones in a thread

router = APIRouter(tags=["Open Inference Protocol v2"])

_INFER = {"openapi_extra": v2_schemas.infer_request_body(), "response_model": None, "responses": v2_schemas.infer_responses()}


def servable_for(state: ServingState, model_name: str, version: str = "") -> Servable:
    """The servable a v2 URL names, or 404 in Triton's words."""
    try:
        return v2.find_servable(state.models, model_name, version)
    except v2.NotFound as exc:
        models = state.models
        hint = f"this server's model is called {models.name!r}" if model_name != models.name else f"this server has version(s) {', '.join(map(str, models.versions()))}"
        raise Refused(404, str(exc), hint) from None


@router.get("/v2/health/live", summary="Open Inference Protocol: the server is live", response_model=v2_schemas.Live)
async def live() -> dict[str, bool]:
    """Answers as long as the server runs."""
    return {"live": True}


@router.get("/v2/health/ready", summary="Open Inference Protocol: the server is ready for inference", response_model=v2_schemas.Ready)
async def ready() -> dict[str, bool]:
    """The model is loaded before the server listens, so a server that answers is ready."""
    return {"ready": True}


@router.get("/v2", summary="Open Inference Protocol: the server's name, version and extensions", response_model=v2_schemas.ServerMetadata)
async def server_metadata() -> dict[str, Any]:
    """Server metadata."""
    return v2.server_metadata()


@router.get(
    "/v2/models/{model_name}", summary="Open Inference Protocol: the model's versions, input and outputs",
    response_model=v2_schemas.ModelMetadata, responses=v2_schemas.NOT_FOUND,
)  # fmt: skip
async def model_metadata(state: State, model_name: str) -> dict[str, Any]:
    """Model metadata."""
    servable_for(state, model_name)
    return v2.model_metadata(state.models.name, state.models.versions())


@router.get(
    "/v2/models/{model_name}/versions/{version}", summary="Open Inference Protocol: a version's metadata",
    response_model=v2_schemas.ModelMetadata, responses=v2_schemas.NOT_FOUND,
)  # fmt: skip
async def version_metadata(state: State, model_name: str, version: str) -> dict[str, Any]:
    """Model metadata of one version."""
    servable = servable_for(state, model_name, version)
    return v2.model_metadata(state.models.name, (servable.version,))


@router.get(
    "/v2/models/{model_name}/ready", summary="Open Inference Protocol: the model is ready (200) or unknown (404)",
    response_model=v2_schemas.ModelReady, responses=v2_schemas.NOT_FOUND,
)  # fmt: skip
async def model_ready(state: State, model_name: str) -> dict[str, Any]:
    """Model readiness."""
    servable_for(state, model_name)
    return {"name": state.models.name, "ready": True}


@router.get(
    "/v2/models/{model_name}/versions/{version}/ready", summary="Open Inference Protocol: a version is ready (200) or unknown (404)",
    response_model=v2_schemas.ModelReady, responses=v2_schemas.NOT_FOUND,
)  # fmt: skip
async def version_ready(state: State, model_name: str, version: str) -> dict[str, Any]:
    """Model readiness of one version."""
    servable_for(state, model_name, version)
    return {"name": state.models.name, "ready": True}


async def _infer(request: Request, state: ServingState, servable: Servable) -> Response:
    body = await state.read_body(request)  # inflated, if gzip
    header_length = request.headers.get(v2.HEADER_LENGTH)
    config = state.config

    def parse() -> v2.InferRequest:
        return v2.parse_infer(body, header_length=header_length, model=state.models.name, max_instances=config.max_instances)

    try:
        parsed = parse() if len(body) <= _INLINE_BODY else await state.on_cpu(parse)
    except v2.BadRequest as exc:
        raise Refused(400, str(exc)) from None
    logits = await state.batcher.logits(parsed.images, servable.run_model)
    content, json_length = v2.answer(signature_outputs(logits), parsed, model=state.models.name, version=servable.version)
    if json_length is None:
        return Response(content, media_type="application/json")
    return Response(content, media_type=v2.BINARY_CONTENT_TYPE, headers={v2.HEADER_LENGTH: str(json_length)})


@router.post("/v2/models/{model_name}/infer", summary="Open Inference Protocol: inference, JSON or binary tensors", **_INFER)
async def infer(request: Request, state: State, model_name: str) -> Response:
    """Inference with the latest version."""
    return await _infer(request, state, servable_for(state, model_name))


@router.post("/v2/models/{model_name}/versions/{version}/infer", summary="Open Inference Protocol: inference with a given version", **_INFER)
async def infer_version(request: Request, state: State, model_name: str, version: str) -> Response:
    """Inference with a given version."""
    return await _infer(request, state, servable_for(state, model_name, version))


@router.get("/v1/models", summary="KServe v1: the models this server serves", response_model=v2_schemas.KServeModels, tags=["KServe v1"])
async def kserve_models(state: State) -> dict[str, list[str]]:
    """KServe v1's model list."""
    return {"models": [state.models.name]}
