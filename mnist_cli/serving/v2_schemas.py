"""What the OpenAPI document says the Open Inference Protocol's routes take and answer (they build their JSON themselves)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from mnist_cli.model.signature import INPUT, OUTPUTS
from mnist_cli.serving import schemas, v2


class Live(BaseModel):
    """`GET /v2/health/live`."""

    live: bool


class Ready(BaseModel):
    """`GET /v2/health/ready`."""

    ready: bool


class ModelReady(BaseModel):
    """`GET /v2/models/<name>/ready` (200: ready; 404: no such model or version)."""

    name: str
    ready: bool


class ServerMetadata(BaseModel):
    """`GET /v2`."""

    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    """A tensor's name, data type and shape (-1: any size)."""

    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    """`GET /v2/models/<name>`."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class OutputTensor(BaseModel):
    """One output: its numbers as `data` (row-major, flat), or `binary_data_size` bytes after the JSON."""

    model_config = ConfigDict(extra="allow")
    name: str
    datatype: str
    shape: list[int]
    data: list[float] | None = None
    parameters: dict[str, Any] | None = None


class InferAnswer(BaseModel):
    """`POST /v2/models/<name>/infer`'s JSON (the whole body, or its header when binary data follows)."""

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[OutputTensor]


class KServeModels(BaseModel):
    """`GET /v1/models`: KServe v1's model list."""

    models: list[str]


def infer_request_body() -> dict[str, Any]:
    """The infer request: JSON tensors, or JSON followed by binary tensor data (`Inference-Header-Content-Length`)."""
    pixels = {"type": "integer", "minimum": 0, "maximum": 255}
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"type": "string", "enum": [INPUT]},
            "datatype": {"type": "string", "enum": [v2.DATATYPES["uint8"]]},
            "shape": {
                "type": "array",
                "prefixItems": [{"type": "integer", "minimum": 1}, {"const": 28}, {"const": 28}],
                "minItems": 3,
                "maxItems": 3,
                "description": "[N, 28, 28]; N at most --max-instances",
            },
            "data": {"type": "array", "items": pixels, "description": "N x 28 x 28 pixels, row-major, flat or nested"},
            "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer", "minimum": 0}}},
        },
    }
    output = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "enum": list(OUTPUTS)}}}
    body = {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "items": tensor, "minItems": 1, "maxItems": 1},
            "outputs": {"type": "array", "items": output, "uniqueItems": True},
        },
    }
    example = {"inputs": [{"name": INPUT, "shape": [1, 28, 28], "datatype": "UINT8", "data": [0] * 784}]}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": body, "example": example},
                v2.BINARY_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    }


def infer_responses() -> dict[int | str, dict[str, Any]]:
    """200 in JSON or with binary data after the JSON; 404 and the body errors."""
    binary = {v2.BINARY_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}}
    return {200: {"model": InferAnswer, "content": binary}} | schemas.errors(404, *schemas.BODY_ERRORS)


NOT_FOUND = schemas.errors(404, 422)  # 422: FastAPI's own answer to a bad path parameter, with our error body
