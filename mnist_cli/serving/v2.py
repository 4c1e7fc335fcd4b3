"""The Open Inference Protocol (v2: Triton, KServe, MLServer, OpenVINO Model Server): infer requests and answers.

An infer request is JSON, `{"id"?, "parameters"?, "inputs": [{"name", "shape", "datatype",
"parameters"?, "data"?}], "outputs"?: [{"name", "parameters"?}]}`. With the binary tensor data
extension (tritonclient's default) the JSON is followed by raw tensor bytes: the
`Inference-Header-Content-Length` header gives the JSON's length, and each input whose data is
binary says how many bytes are its own with `"parameters": {"binary_data_size": n}`, in input
order. An output is answered in binary when it asks (`"parameters": {"binary_data": true}`),
or when the request asks it of all of them (`"parameters": {"binary_data_output": true}`);
the answer then carries the same header and layout. Error messages follow Triton's wording.
(A gzip body is inflated by the body reader before it gets here, as for every route.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mnist_cli import __version__
from mnist_cli.model.signature import INPUT, INPUT_DTYPE, INPUT_SHAPE, OUTPUT_DTYPES, OUTPUT_SHAPES, OUTPUTS
from mnist_cli.serving.outputs import little_endian_bytes

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_CONTENT_TYPE = "application/octet-stream"
EXTENSIONS = ("binary_tensor_data",)
SERVER_NAME = "mnist-cli"
PLATFORM = "tensorflow"
# numpy dtype names and the protocol's tensor data types (the ones the signature uses, and the rest
# for naming what a client sent)
DATATYPES = {"uint8": "UINT8", "float32": "FP32", "int64": "INT64"}
_ALL_DATATYPES = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BF16", "BYTES"}
_PIXELS = INPUT_SHAPE[1] * INPUT_SHAPE[2]  # values (and, uint8, bytes) per image


class BadRequest(ValueError):
    """A request this API cannot answer (400); the message is what the client is told."""


class NotFound(LookupError):
    """An unknown model or version (404); the message is what the client is told."""


@dataclass(frozen=True)
class RequestedOutput:
    """One output the client asked for, and whether it wants the bytes rather than JSON numbers."""

    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    """The images of an infer request, its id, and the outputs to answer with."""

    images: np.ndarray  # uint8 [N, 28, 28]
    outputs: tuple[RequestedOutput, ...]
    id: str | None = None


def _tensor_meta(name: str, dtype: str, shape: Sequence[int]) -> dict[str, Any]:
    return {"name": name, "datatype": DATATYPES[dtype], "shape": list(shape)}


def server_metadata() -> dict[str, Any]:
    """`GET /v2`: the server's name, version and protocol extensions."""
    return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}


def model_metadata(name: str, versions: Sequence[int]) -> dict[str, Any]:
    """`GET /v2/models/<name>`: the model's versions, its input and its outputs."""
    return {
        "name": name,
        "versions": [str(version) for version in versions],
        "platform": PLATFORM,
        "inputs": [_tensor_meta(INPUT, INPUT_DTYPE, INPUT_SHAPE)],
        "outputs": [_tensor_meta(output, OUTPUT_DTYPES[output], OUTPUT_SHAPES[output]) for output in OUTPUTS],
    }


def find_servable(models: Any, name: str, version: str = "") -> Any:
    """The servable of the registry `models` that a model name and version ("": the current one) name."""
    if name != models.name:
        raise NotFound(f"Request for unknown model: '{name}' is not found")
    if version == "":
        return models.current()
    servable = models.get(int(version)) if version.isascii() and version.isdigit() else None
    if servable is None:
        raise NotFound(f"Request for unknown model: '{name}' version {version} is not found")
    return servable


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    if not header_length.strip().isdigit() or int(header_length) > len(body):
        raise BadRequest(f"{HEADER_LENGTH} must be the length of the JSON at the start of the body ({len(body)} bytes), got {header_length[:40]!r}")
    length = int(header_length)
    return body[:length], body[length:]


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return value


def _parameters(value: dict[str, Any], what: str) -> dict[str, Any]:
    return _object(value.get("parameters", {}), f'the "parameters" of {what}')


def parse_infer(body: bytes, *, header_length: str | None, model: str, max_instances: int) -> InferRequest:
    """Validate an infer request: its JSON header, its one UINT8 input `images` [N, 28, 28], its outputs."""
    header, binary = _split(body, header_length)
    try:
        payload = json.loads(header)
    except RecursionError:
        raise BadRequest("the JSON is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"failed to parse the request JSON: {exc}") from None
    payload = _object(payload, "the request")
    request_id = payload.get("id")
    if "id" in payload and not isinstance(request_id, str):
        raise BadRequest('"id" must be a string')
    if "outputs" in payload and payload["outputs"] is None:
        raise BadRequest('"outputs" must be a list of {"name", "parameters"?}; leave it out for every output')
    binary_output = _parameters(payload, "the request").get("binary_data_output", False) is True
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(tensor, dict) for tensor in inputs):
        raise BadRequest('"inputs" must be a list of tensors: {"name", "shape", "datatype", "data"}')
    if len(inputs) != 1:
        raise BadRequest(f"expected 1 inputs but got {len(inputs)} inputs for model '{model}'")
    images, used = input_images(inputs[0], binary, model=model, max_instances=max_instances)
    if used != len(binary):
        raise BadRequest(f"the body holds {len(binary) - used} bytes of binary data that no input claims with binary_data_size")
    return InferRequest(images, requested_outputs(payload.get("outputs"), binary_output, model), request_id)


def input_images(tensor: dict[str, Any], binary: bytes, *, model: str, max_instances: int) -> tuple[np.ndarray, int]:
    """The images of an input tensor (as JSON has it), and how many bytes of the binary data after the JSON it took."""
    name = tensor.get("name")
    if name != INPUT:
        raise BadRequest(f"unexpected inference input '{str(name)[:100]}' for model '{model}'; its input is '{INPUT}'")
    datatype = tensor.get("datatype")
    if datatype != DATATYPES[INPUT_DTYPE]:
        shown = datatype if isinstance(datatype, str) and datatype in _ALL_DATATYPES else repr(str(datatype)[:40])
        raise BadRequest(f"unexpected datatype {shown} for inference input '{INPUT}', expecting {DATATYPES[INPUT_DTYPE]}")
    shape = tensor.get("shape")
    expected = "[" + ",".join(map(str, INPUT_SHAPE)) + "]"
    if not (isinstance(shape, list) and all(type(dim) is int for dim in shape)):
        raise BadRequest(f"the shape of input '{INPUT}' must be a list of integers, such as {expected}")
    got = "[" + ",".join(map(str, shape)) + "]"
    if len(shape) != len(INPUT_SHAPE) or tuple(shape[1:]) != INPUT_SHAPE[1:] or shape[0] < 1:
        raise BadRequest(f"unexpected shape for input '{INPUT}' for model '{model}'. Expected {expected}, got {got}")
    count = shape[0]
    if count > max_instances:
        raise BadRequest(f"too many instances: {count}, at most {max_instances} per request")
    size = count * _PIXELS
    binary_size = _parameters(tensor, f"input '{INPUT}'").get("binary_data_size")
    if binary_size is not None:
        if "data" in tensor:
            raise BadRequest(f"input '{INPUT}' has both binary_data_size and JSON data; give one")
        if type(binary_size) is not int or binary_size != size:
            raise BadRequest(f"unexpected size {binary_size} for inference input '{INPUT}', expecting {size} bytes for shape {got}")
        if len(binary) < size:
            raise BadRequest(f"input '{INPUT}' claims {size} bytes of binary data; the body holds {len(binary)}")
        return np.frombuffer(binary, dtype=np.uint8, count=size).reshape(shape), size
    if "data" not in tensor:
        raise BadRequest(f"input '{INPUT}' has no data: give \"data\", or binary data with binary_data_size")
    return _json_pixels(tensor["data"], size).reshape(shape), 0


def _json_pixels(data: Any, size: int) -> np.ndarray:
    if not isinstance(data, list):
        raise BadRequest(f"the data of input '{INPUT}' must be a list of numbers")
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, OverflowError):  # ragged lists
        raise BadRequest(f"the data of input '{INPUT}' is a ragged list; give it flat or nested in its shape") from None
    if array.dtype.kind not in "iu":
        found = "fractions" if array.dtype.kind == "f" else "booleans" if array.dtype.kind == "b" else "values other than numbers"
        raise BadRequest(f"the data of input '{INPUT}' must hold whole numbers from 0 to 255 (UINT8), found {found}")
    if array.size != size:
        raise BadRequest(f"input '{INPUT}' has {array.size} values; its shape needs {size}")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise BadRequest(f"the data of input '{INPUT}' must hold numbers from 0 to 255 (UINT8), found {array.min()} to {array.max()}")
    return array.astype(np.uint8).ravel()


def requested_outputs(outputs: Any, binary_output: bool, model: str) -> tuple[RequestedOutput, ...]:
    """The outputs a request's `outputs` list (JSON) asks for, in its order; all of them when it has none."""
    if outputs is None:
        return tuple(RequestedOutput(name, binary_output) for name in OUTPUTS)
    if not isinstance(outputs, list) or not all(isinstance(output, dict) for output in outputs):
        raise BadRequest('"outputs" must be a list of {"name", "parameters"?}')
    requested: list[RequestedOutput] = []
    for output in outputs:
        name = output.get("name")
        if name not in OUTPUTS:
            raise BadRequest(f"unexpected inference output '{str(name)[:100]}' for model '{model}'; its outputs are {', '.join(OUTPUTS)}")
        if any(seen.name == name for seen in requested):
            raise BadRequest(f"output '{name}' is requested twice")
        parameters = _parameters(output, f"output '{name}'")
        if parameters.get("classification"):
            raise BadRequest("the classification extension is not supported; ask for the 'classes' or 'probabilities' output")
        requested.append(RequestedOutput(name, parameters.get("binary_data", binary_output) is True))
    return tuple(requested)


def answer(outputs: Mapping[str, np.ndarray], request: InferRequest, *, model: str, version: int) -> tuple[bytes, int | None]:
    """The response body, and the length of its JSON header when binary data follows it (else None)."""
    tensors: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for wanted in request.outputs:
        array = outputs[wanted.name]
        tensor = _tensor_meta(wanted.name, str(array.dtype), array.shape)
        if wanted.binary:
            data = little_endian_bytes(array)
            tensor["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:
            tensor["data"] = array.ravel().tolist()
        tensors.append(tensor)
    body: dict[str, Any] = {"model_name": model, "model_version": str(version), "outputs": tensors}
    if request.id is not None:
        body["id"] = request.id
    header = json.dumps(body, separators=(",", ":")).encode()
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)
