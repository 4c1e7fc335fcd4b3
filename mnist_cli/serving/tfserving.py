"""TensorFlow Serving's REST predict API: reading its requests and writing its answers.

A request is `{"instances": [...]}` (row format: one entry per image, each a 28x28 array
or `{"images": <28x28 array>}`) or `{"inputs": ...}` (columnar: the [N, 28, 28] array, or
`{"images": <it>}`), optionally with `"signature_name": "serving_default"` (or `""`, the
default). As in TF Serving, other top-level keys are ignored and a pixel must be a JSON
integer (rapidjson's `IsInt()`: `0.0` is refused for the uint8 input). The answer has
the outputs of the SavedModel's `serving_default` signature that `mnist export` writes:
`{"predictions": [{"logits", "probabilities", "classes"}, ...]}` for rows and
`{"outputs": {"logits": [...], "probabilities": [...], "classes": [...]}}` for columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mnist_cli.data.registry import COLS, ROWS
from mnist_cli.model.signature import CLASSES, INPUT, INPUT_DTYPE, LOGITS, OUTPUT_DTYPES, OUTPUT_SHAPES, OUTPUTS, PROBABILITIES, SIGNATURE

PREDICT_METHOD = "tensorflow/serving/predict"  # the signature's method_name, as TF Serving checks it
OTHER_METHODS = {"classify": "classification", "regress": "regression"}  # TF Serving's other REST verbs
_TF_DTYPES = {"uint8": "DT_UINT8", "float32": "DT_FLOAT", "int64": "DT_INT64"}


class BadRequest(ValueError):
    """A request this API cannot answer; the message is what the client is told, the hint what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class PredictRequest:
    """The images of a predict request and whether the answer goes in rows or columns."""

    images: np.ndarray  # uint8 [N, 28, 28]
    columnar: bool


def _reject_constant(name: str) -> float:
    raise BadRequest(f"{name} is not a pixel value: JSON has no NaN or Infinity")


class _JsonDecimal:
    """A JSON number written with a fraction or an exponent: never a uint8, as rapidjson's IsInt() says."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def not_a_method_of_this_signature(verb: str) -> str:
    """TF Serving's answer to `:classify` or `:regress` on a predict signature."""
    kind = OTHER_METHODS[verb]
    return f"Expected {kind} signature method_name to be tensorflow/serving/{verb}. Was: {PREDICT_METHOD}"


def parse_predict(body: bytes, *, max_instances: int) -> PredictRequest:
    """Validate a predict request body: JSON, row or columnar format, 1 to `max_instances` 28x28 images of 0-255."""
    try:
        payload = json.loads(body, parse_constant=_reject_constant, parse_float=_JsonDecimal)
    except BadRequest:
        raise
    except RecursionError:
        raise BadRequest("the JSON is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadRequest('the body must be a JSON object: {"instances": [...]} or {"inputs": ...}')
    signature = payload.get("signature_name", "")
    if not isinstance(signature, str):
        shown = signature.text if isinstance(signature, _JsonDecimal) else json.dumps(signature)
        raise BadRequest(f"JSON Value: {shown} not formatted correctly. 'signature_name' key must be a string value.")
    if signature not in ("", SIGNATURE):  # "" is the default signature, as TF Serving reads it
        raise BadRequest(f'Serving signature name: "{signature}" not found in signature def')
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
        raise BadRequest(f"too many instances: {count}, at most {max_instances} per request", "send the images in several requests")


def _named_input(value: Any, what: str) -> Any:
    if not isinstance(value, dict) or set(value) != {INPUT}:
        raise BadRequest(f'{what} given as an object must have exactly one key, "{INPUT}"')
    return value[INPUT]


def _images(value: list[Any], *, what: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError):  # ragged lists
        raise BadRequest(f"{what} must be a [N, {ROWS}, {COLS}] array; its rows have different lengths") from None
    if array.dtype.kind == "O":
        decimal = _first_decimal(value)
        if decimal is not None:
            raise BadRequest(f"JSON Value: {decimal} Type: Number is not of expected type: {INPUT_DTYPE}")
    if array.dtype.kind not in "iu":
        raise BadRequest(f"{what} must hold numbers from 0 to 255 (found {_kind(array)})")
    if array.ndim != 3 or array.shape[1:] != (ROWS, COLS):
        shape = "x".join(map(str, array.shape[1:])) or "scalars"
        raise BadRequest(f"each instance must be a {ROWS}x{COLS} array of pixels, got {shape}")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise BadRequest(f"{what} must hold numbers from 0 to 255, found {array.min():g} to {array.max():g}")
    return array.astype(np.uint8)


def _first_decimal(value: Any) -> str | None:
    """The text of the first number written with a fraction or exponent in nested lists, if any."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _JsonDecimal):
            return item.text
        if isinstance(item, list):
            stack.extend(reversed(item))
    return None


def _kind(array: np.ndarray) -> str:
    return {"U": "strings", "S": "strings", "O": "mixed or nested values", "b": "booleans"}.get(array.dtype.kind, str(array.dtype))


def answer(outputs: Mapping[str, np.ndarray], *, columnar: bool) -> dict[str, Any]:
    """The signature's outputs (`outputs.signature_outputs`) in TF Serving's row or columnar JSON."""
    logits, probabilities, classes = outputs[LOGITS], outputs[PROBABILITIES], outputs[CLASSES]
    if columnar:
        return {"outputs": {key: outputs[key].tolist() for key in OUTPUTS}}
    return {
        "predictions": [
            {LOGITS: row.tolist(), PROBABILITIES: probs.tolist(), CLASSES: int(cls)}
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

    def tensor(dtype: str, dims: tuple[int, ...], tensor_name: str) -> dict[str, Any]:
        shape = {"dim": [{"size": str(size), "name": ""} for size in dims], "unknown_rank": False}
        return {"dtype": _TF_DTYPES[dtype], "tensor_shape": shape, "name": tensor_name}

    # The names `mnist export`'s SavedModel gives its tensors: the outputs of the traced call
    # come out in sorted key order (tf.nest flattens a dict by its keys).
    output_names = {key: f"StatefulPartitionedCall:{index}" for index, key in enumerate(sorted(OUTPUTS))}
    return {
        "model_spec": {"name": name, "signature_name": "", "version": version},
        "metadata": {
            "signature_def": {
                "signature_def": {
                    SIGNATURE: {
                        "inputs": {INPUT: tensor(INPUT_DTYPE, (-1, ROWS, COLS), f"{SIGNATURE}_{INPUT}:0")},
                        "outputs": {key: tensor(OUTPUT_DTYPES[key], OUTPUT_SHAPES[key], output_names[key]) for key in OUTPUTS},
                        "method_name": PREDICT_METHOD,
                    }
                }
            }
        },
    }
