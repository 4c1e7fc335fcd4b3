"""TensorFlow Serving's gRPC API: `PredictionService` (Predict, GetModelMetadata) and `ModelService.GetModelStatus`.

The servicers are `tensorflow-serving-api`'s generated ones, so the official stub works as it
does against TF Serving: `tf.make_tensor_proto(images, dtype=tf.uint8)` in, the signature's
outputs as TensorProtos out, and TF Serving's status codes and messages for what it refuses.

They run on grpc.aio in the event loop uvicorn runs: a Predict awaits the same dynamic batcher
as the REST routes, with no thread hop and no second loop, so gRPC and HTTP requests share
model calls. The metadata and status answers are TF Serving's REST JSON (`tfserving`) parsed
into the protos, so both APIs describe the model from one place.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from mnist_cli.core.errors import AddressError
from mnist_cli.model.signature import INPUT, INPUT_SHAPE, OUTPUTS, SIGNATURE
from mnist_cli.serving import tfserving
from mnist_cli.serving.observe import OnRequest, RequestLog
from mnist_cli.serving.outputs import little_endian_bytes, signature_outputs

_METADATA_FIELD = "signature_def"
_PREDICT_METHOD = "tensorflow/serving/predict"
_PIXELS = INPUT_SHAPE[1] * INPUT_SHAPE[2]
_NUMPY_TO_PROTO = {"float32": types_pb2.DT_FLOAT, "int64": types_pb2.DT_INT64, "uint8": types_pb2.DT_UINT8}


class Refusal(Exception):
    """An RPC answered with a status code other than OK, and TF Serving's message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _dtype_name(dtype: int) -> str:
    # TF's DataTypeString: DT_FLOAT -> "float", as in "Expects arg[0] to be uint8 but float is provided".
    try:
        return types_pb2.DataType.Name(dtype).removeprefix("DT_").lower()
    except ValueError:
        return f"unknown type {dtype}"


def images_of(tensor: tensor_pb2.TensorProto, *, max_instances: int) -> np.ndarray:
    """The uint8 images [N, 28, 28] of a TensorProto (its tensor_content, or its int_val), checked as TF Serving would."""
    if tensor.dtype != types_pb2.DT_UINT8:
        raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"Expects arg[0] to be uint8 but {_dtype_name(tensor.dtype)} is provided")
    dims = [dim.size for dim in tensor.tensor_shape.dim]
    expected = "[" + ",".join(map(str, INPUT_SHAPE)) + "]"
    if tensor.tensor_shape.unknown_rank or len(dims) != len(INPUT_SHAPE) or tuple(dims[1:]) != INPUT_SHAPE[1:] or dims[0] < 1:
        got = "unknown rank" if tensor.tensor_shape.unknown_rank else "[" + ",".join(map(str, dims)) + "]"
        raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"input {INPUT} must have shape {expected} (N at least 1), got {got}")
    if dims[0] > max_instances:
        raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"too many instances: {dims[0]}, at most {max_instances} per request")
    size = dims[0] * _PIXELS
    if tensor.tensor_content:
        if len(tensor.tensor_content) != size:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"tensor parsing error: {INPUT} ({len(tensor.tensor_content)} bytes for {size} pixels)")
        return np.frombuffer(tensor.tensor_content, dtype=np.uint8).reshape(dims)
    values = np.asarray(tensor.int_val, dtype=np.int64)
    if len(values) > size:
        raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"tensor parsing error: {INPUT} ({len(values)} values for {size} pixels)")
    if len(values) and (values.min() < 0 or values.max() > 255):
        raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"tensor parsing error: {INPUT} holds values outside 0-255")
    # As TF's Tensor::FromProto: missing values repeat the last one given (zeros if none is).
    full = np.full(size, values[-1] if len(values) else 0, dtype=np.uint8)
    full[: len(values)] = values
    return full.reshape(dims)


def tensor_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    """`array` as a TensorProto with its bytes in tensor_content, as `tf.make_tensor_proto` writes it."""
    proto = tensor_pb2.TensorProto(dtype=_NUMPY_TO_PROTO[str(array.dtype)])
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    proto.tensor_content = little_endian_bytes(array)
    return proto


class _Servicing:
    """What the servicers share: the model registry, the batcher and the limits (the HTTP app's state)."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def servable(self, spec: Any) -> Any:
        """The servable a ModelSpec names, or TF Serving's NOT_FOUND."""
        models = self.state.models
        if spec.name != models.name:
            raise Refusal(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({spec.name})")
        if spec.HasField("version_label"):
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"Unrecognized servable version label: {spec.version_label}")
        if spec.HasField("version"):
            servable = models.get(spec.version.value)
            if servable is None:
                raise Refusal(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Specific({spec.name}, {spec.version.value})")
            return servable
        return models.current()


async def answer_or_abort(context: grpc.aio.ServicerContext, work: Callable[[], Any]) -> Any:
    """The RPC's answer from `work()`, or its Refusal's status code and message."""
    try:
        return await work()
    except Refusal as refusal:
        await context.abort(refusal.code, refusal.message)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict and GetModelMetadata; Classify and Regress refused as TF Serving refuses them for a predict signature."""

    def __init__(self, servicing: _Servicing) -> None:
        self._servicing = servicing

    async def Predict(self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext) -> predict_pb2.PredictResponse:  # noqa: N802
        return await answer_or_abort(context, lambda: self._predict(request))

    async def _predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        state = self._servicing.state
        servable = self._servicing.servable(request.model_spec)
        signature = request.model_spec.signature_name or SIGNATURE
        if signature != SIGNATURE:
            raise Refusal(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{signature}" not found.')
        if set(request.inputs) != {INPUT}:
            unknown = sorted(set(request.inputs) - {INPUT})
            if unknown:
                message = f"input tensor alias not found in signature: {unknown[0]}. Inputs expected to be in the set {{{INPUT}}}."
            else:
                message = f"input size does not match signature: {len(request.inputs)}!=1 len([]) != len([{INPUT}])"
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, message)
        wanted = list(request.output_filter) or list(OUTPUTS)
        for alias in wanted:
            if alias not in OUTPUTS:
                raise Refusal(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"output tensor alias not found in signature: {alias} Outputs expected to be in the set {{{','.join(OUTPUTS)}}}.",
                )
        if len(set(wanted)) != len(wanted):
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"duplicate output tensor alias: {next(a for a in wanted if wanted.count(a) > 1)}")
        images = images_of(request.inputs[INPUT], max_instances=state.config.max_instances)
        logits = await state.batcher.logits(images, servable.run_model)
        outputs = signature_outputs(logits)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = state.models.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = SIGNATURE
        for alias in wanted:
            response.outputs[alias].CopyFrom(tensor_proto(outputs[alias]))
        return response

    async def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return await answer_or_abort(context, lambda: self._metadata(request))

    async def _metadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest) -> get_model_metadata_pb2.GetModelMetadataResponse:
        servable = self._servicing.servable(request.model_spec)
        if not request.metadata_field:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != _METADATA_FIELD:
                raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {field} is not supported")
        name = self._servicing.state.models.name
        described = tfserving.metadata(name, str(servable.version))
        signatures = json_format.ParseDict(
            described["metadata"][_METADATA_FIELD], get_model_metadata_pb2.SignatureDefMap(), ignore_unknown_fields=True
        )
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = name
        response.model_spec.version.value = servable.version
        response.metadata[_METADATA_FIELD].Pack(signatures)
        return response

    async def Classify(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        await self._not_predict(request, context, "classification", "tensorflow/serving/classify")

    async def Regress(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        await self._not_predict(request, context, "regression", "tensorflow/serving/regress")

    async def _not_predict(self, request: Any, context: grpc.aio.ServicerContext, kind: str, method: str) -> None:
        async def refuse() -> None:
            self._servicing.servable(request.model_spec)
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"Expected {kind} signature method_name to be {method}. Was: {_PREDICT_METHOD}")

        await answer_or_abort(context, refuse)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus: every version held, AVAILABLE."""

    def __init__(self, servicing: _Servicing) -> None:
        self._servicing = servicing

    async def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return await answer_or_abort(context, lambda: self._status(request))

    async def _status(self, request: get_model_status_pb2.GetModelStatusRequest) -> get_model_status_pb2.GetModelStatusResponse:
        models = self._servicing.state.models
        spec = request.model_spec
        if spec.name != models.name:
            raise Refusal(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {spec.name}")
        versions = list(models.versions())
        if spec.HasField("version"):
            if spec.version.value not in versions:
                raise Refusal(grpc.StatusCode.NOT_FOUND, f"Could not find version {spec.version.value} of model {spec.name}")
            versions = [spec.version.value]
        return json_format.ParseDict(tfserving.model_status(versions), get_model_status_pb2.GetModelStatusResponse(), ignore_unknown_fields=True)


# How HTTP would say each status code (grpc-gateway's table): for the log line and the metrics,
# which count gRPC calls beside HTTP requests.
_HTTP_STATUS = {
    grpc.StatusCode.OK: 200, grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.ABORTED: 409, grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.UNAVAILABLE: 503,
}  # fmt: skip
GRPC_METHOD = "gRPC"  # the method of a gRPC call in the log line and the metrics


class _Observe(grpc.aio.ServerInterceptor):
    """Counts, times and reports every RPC as the HTTP middleware does each request; keeps `state.in_flight`."""

    def __init__(self, state: Any, on_request: OnRequest | None) -> None:
        self.state, self.on_request = state, on_request

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler  # an unknown method: gRPC answers UNIMPLEMENTED, nothing to count
        inner, method = handler.unary_unary, details.method

        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            began = time.perf_counter()
            self.state.in_flight += 1  # the batcher waits for company only while other requests are on their way
            try:
                return await inner(request, context)
            finally:
                self.state.in_flight -= 1
                seconds = time.perf_counter() - began
                code = context.code() or grpc.StatusCode.OK
                status = _HTTP_STATUS.get(code, 500) if isinstance(code, grpc.StatusCode) else 500
                self.state.metrics.observe_request(method=GRPC_METHOD, endpoint=method, status=status, seconds=seconds)
                if self.on_request is not None:
                    self.on_request(RequestLog(GRPC_METHOD, method, status, seconds * 1000))

        return grpc.unary_unary_rpc_method_handler(
            observed, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )


class GrpcServer:
    """TF Serving's gRPC services on a port reserved at start (so a port in use is reported before the model loads)."""

    def __init__(self, state: Any, reserved: socket.socket, host: str, *, on_request: OnRequest | None = None) -> None:
        self._state, self._reserved, self._host, self._on_request = state, reserved, host, on_request
        self.port: int = reserved.getsockname()[1]
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        """Listen and serve (in the running event loop): the reserved socket hands its port over to gRPC."""
        # grpc.aio servers belong to the loop they are made in, and cannot adopt a socket: the
        # reservation is closed and the port bound again at once. SO_REUSEPORT off: a second
        # server on the same port must fail, not share its connections.
        config = self._state.config
        # The HTTP routes' caps hold here too: a message over --max-body-mb is refused unread
        # (RESOURCE_EXHAUSTED), and RPCs beyond --max-connections at once are refused.
        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", config.max_body_bytes),
                ("grpc.max_send_message_length", max(config.max_body_bytes, 4 * 1024 * 1024)),
            ],
            maximum_concurrent_rpcs=config.max_connections,
            interceptors=[_Observe(self._state, self._on_request)],
        )
        servicing = _Servicing(self._state)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(servicing), server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(servicing), server)
        from mnist_cli.serving import grpc_v2  # imports this module

        grpc_v2.add_to_server(self._state, server)
        bind_host = "[::]" if self._host == "::" else f"[{self._host}]" if ":" in self._host else self._host or "0.0.0.0"
        self._reserved.close()
        try:
            server.add_insecure_port(f"{bind_host}:{self.port}")
        except RuntimeError:
            raise AddressError(
                f"port {self.port} on {self._host} was taken before gRPC could listen on it", "choose another --grpc-port (0 picks a free one)"
            ) from None
        await server.start()
        self._server = server

    async def stop(self, grace_s: float) -> None:
        """Refuse new RPCs and give those in flight `grace_s` seconds to finish."""
        if self._server is not None:
            await self._server.stop(grace_s)
            self._server = None
        else:
            self._reserved.close()
