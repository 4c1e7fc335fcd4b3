"""TensorFlow Serving's REST API: predict, model status and metadata, for the latest or a given version.

`:classify` and `:regress` are answered as TF Serving answers them for a predict signature: 400.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from starlette.convertors import Convertor, register_url_convertor

from mnist_cli.data.registry import COLS, ROWS
from mnist_cli.serving import schemas, tfserving
from mnist_cli.serving.models import Servable
from mnist_cli.serving.outputs import signature_outputs
from mnist_cli.serving.state import Refused, ServingState, State

_INLINE_JSON = 32 * 1024  # smaller JSON bodies are parsed on the event loop; larger ones in a thread



class _ModelNameConvertor(Convertor[str]):
    # A model name holds no ':' (ServeConfig refuses one), so that `/v1/models/mnist:predict`
    # never reads as the model "mnist:predict": a wrong method on it is a 405, not a 404.
    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("model_name", _ModelNameConvertor())
# TF Serving's URLs: /v1/models/NAME[/versions/N][:verb]; a version is digits (`{version:int}`).
MODEL = "/v1/models/{model_name:model_name}"
VERSION = MODEL + "/versions/{version:int}"

ModelName = Annotated[str, Path(description="The model's name (`mnist serve --model-name`).")]
Version = Annotated[int, Path(description="A model version the server holds.")]

router = APIRouter(tags=["TensorFlow Serving REST API"])

_PREDICT = {
    "openapi_extra": schemas.tf_predict_request_body(),
    "response_model": None,
    "responses": {200: {"model": schemas.RowsAnswer | schemas.ColumnsAnswer}, 404: {"model": schemas.ErrorBody, "description": schemas.ERRORS[404]}}
    | schemas.errors(*schemas.BODY_ERRORS),
}
_REFUSED = {
    "status_code": 400,
    "response_model": schemas.ErrorBody,
    "responses": schemas.errors(404, 408, 413, 415, 422) | {400: {"description": "Always: this model has a predict signature"}},
}
_READ = {"response_model": None, "responses": schemas.errors(404, 422)}


def servable_for(state: ServingState, model_name: str, version: int | None = None) -> Servable:
    """The servable a TF Serving URL names, or 404 in TF Serving's words."""
    name = state.models.name
    spec = f"Latest({model_name})" if version is None else f"Specific({model_name}, {version})"
    if model_name != name:
        raise Refused(404, f"Servable not found for request: {spec}", f"this server's model is called {name!r}")
    servable = state.models.current() if version is None else state.models.get(version)
    if servable is None:
        held = ", ".join(map(str, state.models.versions()))
        raise Refused(404, f"Servable not found for request: {spec}", f"this server has version(s) {held}")
    return servable


async def _predict(request: Request, state: ServingState, servable: Servable) -> JSONResponse:
    body = await state.read_body(request)
    parse = lambda: tfserving.parse_predict(body, max_instances=state.config.max_instances)  # noqa: E731
    try:
        parsed = parse() if len(body) <= _INLINE_JSON else await state.on_cpu(parse)
    except tfserving.BadRequest as exc:
        name = state.models.name
        hint = exc.hint or (
            f'send {{"instances": [image, ...]}}, each image a {ROWS}x{COLS} array of integers 0-255; '
            f"GET /v1/models/{name}/metadata describes the input"
        )
        raise Refused(400, str(exc), hint) from None
    logits = await state.batcher.logits(parsed.images, servable.run_model)
    return JSONResponse(tfserving.answer(signature_outputs(logits), columnar=parsed.columnar))


@router.post(MODEL + ":predict", summary="TensorFlow Serving's REST predict API", **_PREDICT)
async def predict_latest(request: Request, state: State, model_name: ModelName) -> Any:
    """Predict with the latest version."""
    return await _predict(request, state, servable_for(state, model_name))


@router.post(VERSION + ":predict", summary="TF Serving's predict, for a given version", **_PREDICT)
async def predict_version(request: Request, state: State, model_name: ModelName, version: Version) -> Any:
    """Predict with a given version."""
    return await _predict(request, state, servable_for(state, model_name, version))


async def _other_method(request: Request, state: ServingState, verb: str) -> Any:
    await state.read_body(request)  # read (capped) before answering, so that the connection stays usable
    hint = f"this model has a predict signature: POST /v1/models/{state.models.name}:predict"
    raise Refused(400, tfserving.not_a_method_of_this_signature(verb), hint)


@router.post(MODEL + ":classify", summary="TF Serving's classify API: 400, the signature is a predict signature", **_REFUSED)
async def classify_latest(request: Request, state: State, model_name: ModelName) -> Any:
    """400, as TF Serving answers for a predict signature."""
    servable_for(state, model_name)
    return await _other_method(request, state, "classify")


@router.post(MODEL + ":regress", summary="TF Serving's regress API: 400, the signature is a predict signature", **_REFUSED)
async def regress_latest(request: Request, state: State, model_name: ModelName) -> Any:
    """400, as TF Serving answers for a predict signature."""
    servable_for(state, model_name)
    return await _other_method(request, state, "regress")


@router.post(VERSION + ":classify", summary="TF Serving's classify API, for a version: 400", **_REFUSED)
async def classify_version(request: Request, state: State, model_name: ModelName, version: Version) -> Any:
    """400, as TF Serving answers for a predict signature."""
    servable_for(state, model_name, version)
    return await _other_method(request, state, "classify")


@router.post(VERSION + ":regress", summary="TF Serving's regress API, for a version: 400", **_REFUSED)
async def regress_version(request: Request, state: State, model_name: ModelName, version: Version) -> Any:
    """400, as TF Serving answers for a predict signature."""
    servable_for(state, model_name, version)
    return await _other_method(request, state, "regress")


@router.get(MODEL, summary="The model's status, as TF Serving reports it", **_READ | {"response_model": schemas.ModelStatus})
async def status(state: State, model_name: ModelName) -> Any:
    """Every version held, each AVAILABLE."""
    servable_for(state, model_name)
    # "name" and "ready" beside TF Serving's answer: what KServe v1's is_model_ready reads here.
    return JSONResponse({**tfserving.model_status(state.models.versions()), "name": state.models.name, "ready": True})


@router.get(VERSION, summary="One version's status, as TF Serving reports it", **_READ | {"response_model": schemas.ModelStatus})
async def version_status(state: State, model_name: ModelName, version: Version) -> Any:
    """The version's status: AVAILABLE."""
    servable = servable_for(state, model_name, version)
    return JSONResponse(tfserving.model_status((servable.version,)))


@router.get(MODEL + "/metadata", summary="The serving signature, as TF Serving describes it", **_READ | {"response_model": schemas.ModelMetadata})
async def metadata(state: State, model_name: ModelName) -> Any:
    """The latest version's signature."""
    servable = servable_for(state, model_name)
    return JSONResponse(tfserving.metadata(state.models.name, str(servable.version)))


@router.get(VERSION + "/metadata", summary="One version's serving signature", **_READ | {"response_model": schemas.ModelMetadata})
async def version_metadata(state: State, model_name: ModelName, version: Version) -> Any:
    """The version's signature."""
    servable = servable_for(state, model_name, version)
    return JSONResponse(tfserving.metadata(state.models.name, str(servable.version)))
