"""What the OpenAPI document says each endpoint takes and answers: pydantic models and JSON Schemas.

The routes answer with plain JSON they build themselves (validating every answer through
pydantic would cost the TF Serving API a third of its speed); these models only describe
those answers, and the schemathesis test holds the server to them. Limits that depend on
the server's settings (how many instances a request may hold) are written as `MAX_INSTANCES`
markers and filled in by `serving/openapi.py` for each server.
"""

from __future__ import annotations

from typing import Any, Literal

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from mnist_cli.data.registry import COLS, ROWS
from mnist_cli.inference.preprocessing import IMAGE_SUFFIXES
from mnist_cli.model.signature import INPUT, SIGNATURE

MAX_INSTANCES = "x-mnist-max-instances"  # marks an array whose maxItems is the server's --max-instances

# --------------------------------------------------------------------------- errors

ERRORS = {
    400: "The request cannot be used: bad JSON, a wrong shape or value, a bad form, too many items",
    404: "No such model or version (or path)",
    408: "The body did not arrive within the body timeout",
    413: "The body, or its gzip-inflated bytes, is over the size cap",
    415: "The Content-Type or Content-Encoding is not one this endpoint takes",
    422: "Invalid query or path parameters, or a picture that cannot be read",
}


class ErrorBody(BaseModel):
    """Every error: what went wrong and, where there is one, what to do."""

    model_config = ConfigDict(extra="allow")
    error: str
    hint: str | None = None


def errors(*codes: int, model: type[BaseModel] = ErrorBody, **models: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route for the error codes it can answer, each with the error body."""
    return {code: {"model": models.get(f"e{code}", model), "description": ERRORS[code]} for code in codes}


BODY_ERRORS = (400, 408, 413, 415, 422)  # what reading a capped, possibly gzip-encoded body can answer

# --------------------------------------------------------------------------- ops


class Health(BaseModel):
    """Liveness."""

    status: Literal["ok"]


class Batching(BaseModel):
    """The dynamic batcher's settings."""

    enabled: bool
    max_batch_size: int
    wait_ms: float


class Info(BaseModel):
    """The model being served and the server's limits."""

    model_config = ConfigDict(extra="allow")
    run: str | None
    model: str
    dataset: str | None
    architecture: str | None
    loss: str
    test_accuracy: float | None
    class_names: list[str]
    tf_serving_name: str
    max_instances: int
    max_body_bytes: int
    batching: Batching
    version: str


# --------------------------------------------------------------------------- /predict


class TopClass(BaseModel):
    """One of the most probable classes."""

    model_config = ConfigDict(populate_by_name=True)
    class_: int = Field(alias="class")
    name: str
    probability: float


class PicturePrediction(BaseModel):
    """What `mnist predict --json` prints for one picture."""

    path: str
    prediction: int
    name: str
    probability: float
    probabilities: list[float]
    top_k: list[TopClass]
    image: list[list[int]] | None = Field(None, description=f"The {ROWS}x{COLS} digit the network saw, with ?image=true.")


class PictureFailure(BaseModel):
    """A picture that could not be read, and why."""

    path: str
    error: str
    hint: str | None


class PicturesError(ErrorBody):
    """Some pictures could not be read: the first one's error, and every picture's result in order."""

    results: list[PicturePrediction | PictureFailure] | None = None


def picture_media_types() -> tuple[str, ...]:
    """The media types of the picture formats preprocessing reads (from its file suffixes)."""
    Image.init()
    formats = Image.registered_extensions()
    return tuple(dict.fromkeys(Image.MIME[formats[suffix]] for suffix in IMAGE_SUFFIXES if formats.get(suffix) in Image.MIME))


def pictures_request_body() -> dict[str, Any]:
    """`/predict`'s body: one picture as the whole body, or several as a multipart form."""
    picture = {"type": "string", "format": "binary"}
    content: dict[str, Any] = {media_type: {"schema": picture} for media_type in (*picture_media_types(), "application/octet-stream")}
    files = {"type": "array", "items": picture, "minItems": 1, MAX_INSTANCES: True}
    # Text fields are skipped, but count against the same cap as files: none are documented.
    form = {"type": "object", "properties": {"file": files}, "required": ["file"], "additionalProperties": False}
    content["multipart/form-data"] = {"schema": form}
    return {"requestBody": {"required": True, "content": content}}


# --------------------------------------------------------------------------- TF Serving


def tf_predict_request_body() -> dict[str, Any]:
    """TF Serving's predict request: rows (`instances`) or columns (`inputs`) of uint8 28x28 images."""
    pixel = {"type": "integer", "minimum": 0, "maximum": 255}
    row = {"type": "array", "items": pixel, "minItems": COLS, "maxItems": COLS}
    image = {"type": "array", "items": row, "minItems": ROWS, "maxItems": ROWS}

    def named(value: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "properties": {INPUT: value}, "required": [INPUT], "additionalProperties": False}

    def batch(item: dict[str, Any]) -> dict[str, Any]:
        return {"type": "array", "items": item, "minItems": 1, MAX_INSTANCES: True}

    schema = {
        "type": "object",
        "description": "Exactly one of `instances` and `inputs`; other keys are ignored, as TF Serving ignores them.",
        "properties": {
            "signature_name": {"type": "string", "enum": ["", SIGNATURE], "description": '"" is the default signature'},
            "instances": {"anyOf": [batch(image), batch(named(image))], "description": "Row format: one image per instance"},
            "inputs": {"anyOf": [batch(image), named(batch(image))], "description": "Columnar format: the [N, 28, 28] batch"},
        },
        "oneOf": [
            {"required": ["instances"], "not": {"required": ["inputs"]}},
            {"required": ["inputs"], "not": {"required": ["instances"]}},
        ],
    }
    example = {"instances": [[[0] * COLS] * ROWS]}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema, "example": example}}}}


class RowPrediction(BaseModel):
    """One instance's outputs (row format)."""

    logits: list[float]
    probabilities: list[float]
    classes: int


class RowsAnswer(BaseModel):
    """The answer to a row-format request."""

    predictions: list[RowPrediction]


class ColumnOutputs(BaseModel):
    """Every output for the whole batch (columnar format)."""

    logits: list[list[float]]
    probabilities: list[list[float]]
    classes: list[int]


class ColumnsAnswer(BaseModel):
    """The answer to a columnar request."""

    outputs: ColumnOutputs


class PredictAnswer(BaseModel):
    """`predictions` for a row-format request, `outputs` for a columnar one."""

    model_config = ConfigDict(extra="forbid")
    predictions: list[RowPrediction] | None = None
    outputs: ColumnOutputs | None = None


class VersionState(BaseModel):
    """A version's error status."""

    error_code: Literal["OK"]
    error_message: str


class VersionStatus(BaseModel):
    """One version's state."""

    version: str
    state: Literal["AVAILABLE"]
    status: VersionState


class ModelStatus(BaseModel):
    """`GET /v1/models/<name>`: the versions held."""

    model_version_status: list[VersionStatus]


class Dim(BaseModel):
    """One dimension of a tensor's shape (-1: any size)."""

    size: str
    name: str


class TensorShape(BaseModel):
    """A tensor's shape."""

    dim: list[Dim]
    unknown_rank: bool


class TensorInfo(BaseModel):
    """An input or output of the signature."""

    dtype: str
    tensor_shape: TensorShape
    name: str


class SignatureDef(BaseModel):
    """The serving signature."""

    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]
    method_name: str


class SignatureDefMap(BaseModel):
    """Signatures by name."""

    signature_def: dict[str, SignatureDef]


class MetadataBody(BaseModel):
    """The metadata TF Serving reports."""

    signature_def: SignatureDefMap


class ModelSpec(BaseModel):
    """Which model and version the answer is about."""

    name: str
    signature_name: str
    version: str


class ModelMetadata(BaseModel):
    """`GET /v1/models/<name>/metadata`."""

    model_spec: ModelSpec
    metadata: MetadataBody
