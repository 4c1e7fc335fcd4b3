"""TensorFlow Serving's REST predict API: reading its requests and writing its answers.

A request is `{"instances": [...]}` (row format: one entry per image, each a 28x28 array
or `{"images": <28x28 array>}`) or `{"inputs": ...}` (columnar: the [N, 28, 28] array, or
`{"images": <it>}`), optionally with `"signature_name": "serving_default"`. The answer has
the outputs of the SavedModel's `serving_default` signature that `mnist export` writes:
`{"predictions": [{"logits", "probabilities", "classes"}, ...]}` for rows and
`{"outputs": {"logits": [...], "probabilities": [...], "classes": [...]}}` for columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mnist_cli.data.registry import COLS, ROWS
from mnist_cli.model.signature import INPUT, SIGNATURE



class BadRequest(ValueError):
    """A request this API cannot answer; the message is what the client is told."""


@dataclass(frozen=True)
class PredictRequest:
    """The images of a predict request and whether the answer goes in rows or columns."""

    images: np.ndarray  # uint8 [N, 28, 28]
    columnar: bool


def _reject_constant(name: str) -> float:
    raise BadRequest(f"{name} is not a pixel value: JSON has no NaN or Infinity")


def parse_predict(body: bytes, *, max_instances: int) -> PredictRequest:
    """Validate a predict request body: JSON, row or columnar format, 1 to `max_instances` 28x28 images of 0-255."""
    try:
        payload = json.loads(body, parse_constant=_reject_constant)
    except BadRequest:
        raise
    except RecursionError:
        raise BadRequest("the JSON is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadRequest('the body must be a JSON object: {"instances": [...]} or {"inputs": ...}')
    signature = payload.get("signature_name", SIGNATURE)
    if signature != SIGNATURE:
        raise BadRequest(f'serving signature name "{signature}" not found; this model has "{SIGNATURE}"')
    unknown = set(payload) - {"instances", "inputs", "signature_name"}
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(sorted(map(repr, unknown)))}: expected 'instances' or 'inputs'")
    if ("instances" in payload) == ("inputs" in payload):
        raise BadRequest('give exactly one of "instances" (row format) or "inputs" (columnar format)')
    if "instances" in payload:
        instances = payload["instances"]
        if not isinstance(instances, list) or not instances:
            raise BadRequest('"instances" must be a non-empty list, one 28x28 image each')
        _check_count(len(instances), max_instances)
        if any(isinstance(instance, dict) for instance in instances):
            instances = [_named_input(instance, "an instance") for instance in instances]
        return PredictRequest(_images(instances, what='"instances"'), columnar=False)
    inputs = payload["inputs"]
    if isinstance(inputs, dict):
        inputs = _named_input(inputs, '"inputs"')
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest('"inputs" must be a non-empty [N, 28, 28] array')
    _check_count(len(inputs), max_instances)
    return PredictRequest(_images(inputs, what='"inputs"'), columnar=True)


def _check_count(count: int, max_instances: int) -> None:
    if count > max_instances:
        raise BadRequest(f"too many instances: {count}, at most {max_instances} per request")


def _named_input(value: Any, what: str) -> Any:
    if not isinstance(value, dict) or set(value) != {INPUT}:
        raise BadRequest(f'{what} given as an object must have exactly one key, "{INPUT}"')
    return value[INPUT]


def _images(value: list[Any], *, what: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError):  # ragged lists
        raise BadRequest(f"{what} must be a [N, {ROWS}, {COLS}] array; its rows have different lengths") from None
    if array.dtype.kind not in "iuf" or array.dtype.kind == "b":
        raise BadRequest(f"{what} must hold numbers from 0 to 255 (found {_kind(array)})")
    if array.ndim != 3 or array.shape[1:] != (ROWS, COLS):
        shape = "x".join(map(str, array.shape[1:])) or "scalars"
        raise BadRequest(f"each instance must be a {ROWS}x{COLS} array of pixels, got {shape}")
    if array.dtype.kind == "f" and not (np.isfinite(array).all() and (array == np.round(array)).all()):
        raise BadRequest(f"{what} must hold whole numbers from 0 to 255 (uint8 pixels), found fractions")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise BadRequest(f"{what} must hold numbers from 0 to 255, found {array.min():g} to {array.max():g}")
    return array.astype(np.uint8)


def _kind(array: np.ndarray) -> str:
    return {"U": "strings", "S": "strings", "O": "mixed or nested values", "b": "booleans"}.get(array.dtype.kind, str(array.dtype))


def answer(logits: np.ndarray, *, columnar: bool) -> dict[str, Any]:
    """The signature's outputs in TF Serving's shapes: logits, softmax probabilities, argmax classes."""
    logits = np.asarray(logits, dtype=np.float32)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    probabilities = exp / exp.sum(axis=1, keepdims=True)  # what the SavedModel's tf.nn.softmax gives
    classes = logits.argmax(axis=1)
    if columnar:
        return {"outputs": {"logits": logits.tolist(), "probabilities": probabilities.tolist(), "classes": classes.tolist()}}
    return {
        "predictions": [
            {"logits": row.tolist(), "probabilities": probs.tolist(), "classes": int(cls)}
            for row, probs, cls in zip(logits, probabilities, classes)
        ]
    }


def model_status(versions: Iterable[int] = (1,)) -> dict[str, Any]:
    """`GET /v1/models/<name>` as TF Serving answers it for loaded versions."""
    return {
        "model_version_status": [
            {"version": str(version), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            for version in versions
        ]
    }


def metadata(name: str, version: str = "1") -> dict[str, Any]:
    """`GET /v1/models/<name>/metadata`: the serving signature's inputs and outputs, as TF Serving describes them."""

    def tensor(dtype: str, dims: list[int]) -> dict[str, Any]:
        return {"dtype": dtype, "tensor_shape": {"dim": [{"size": str(size), "name": ""} for size in dims], "unknown_rank": False}}

    return {
        "model_spec": {"name": name, "signature_name": "", "version": version},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    SIGNATURE: {
                        "inputs": {INPUT: {**tensor("DT_UINT8", [-1, ROWS, COLS]), "name": f"serving_default_{INPUT}:0"}},
                        "outputs": {
                            "logits": tensor("DT_FLOAT", [-1, 10]),
                            "probabilities": tensor("DT_FLOAT", [-1, 10]),
                            "classes": tensor("DT_INT64", [-1]),
                        },
                        "method_name": "tensorflow/serving/predict",
                    }
                }
            }
        },
    }
