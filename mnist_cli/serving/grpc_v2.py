"""The Open Inference Protocol's gRPC service (`inference.GRPCInferenceService`, Triton's and KServe's), beside TF Serving's.

Health, server and model metadata, model readiness and ModelInfer, on the gRPC port, through
the same batcher. The protos are the ones `tritonclient[grpc]` ships; without it the service
is not offered (`AVAILABLE` says so). Requests are checked by the same code as the REST
protocol's (`serving/v2.py`): a gRPC input is turned into the JSON tensor it stands for.
Outputs always go back as raw little-endian bytes (`raw_output_contents`), as Triton sends them.
"""

from __future__ import annotations

from typing import Any

import grpc

from mnist_cli.model.signature import INPUT
from mnist_cli.serving import v2
from mnist_cli.serving.grpc_api import Refusal, answer_or_abort
from mnist_cli.serving.outputs import little_endian_bytes, signature_outputs

try:  # an optional dependency: tritonclient[grpc]
    from tritonclient.grpc import service_pb2, service_pb2_grpc
except ImportError:  # pragma: no cover - depends on what is installed
    service_pb2 = service_pb2_grpc = None

AVAILABLE = service_pb2_grpc is not None


def _lookup(models: Any, name: str, version: str) -> Any:
    try:
        return v2.find_servable(models, name, version)
    except v2.NotFound as exc:
        raise Refusal(grpc.StatusCode.NOT_FOUND, str(exc)) from None


def _input_tensor(request: Any) -> tuple[dict[str, Any], bytes]:
    """The request's one input as the JSON tensor it stands for, and its raw bytes (if sent so)."""
    (tensor,) = request.inputs
    described: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
    if request.raw_input_contents:
        raw = request.raw_input_contents[0]
        described["parameters"] = {"binary_data_size": len(raw)}
        return described, raw
    described["data"] = list(tensor.contents.uint_contents)
    return described, b""


def _metadata_tensors(tensors: list[dict[str, Any]]) -> list[Any]:
    return [service_pb2.ModelMetadataResponse.TensorMetadata(**tensor) for tensor in tensors]


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer if AVAILABLE else object):  # type: ignore[misc]
    """ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata and ModelInfer."""

    def __init__(self, state: Any) -> None:
        self._state = state

    async def ServerLive(self, request: Any, context: Any) -> Any:  # noqa: N802
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        return service_pb2.ServerReadyResponse(ready=True)

    async def ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        try:
            v2.find_servable(self._state.models, request.name, request.version)
        except v2.NotFound:
            return service_pb2.ModelReadyResponse(ready=False)
        return service_pb2.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        return service_pb2.ServerMetadataResponse(**v2.server_metadata())

    async def ModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        async def metadata() -> Any:
            models = self._state.models
            servable = _lookup(models, request.name, request.version)
            described = v2.model_metadata(models.name, models.versions() if request.version == "" else (servable.version,))
            return service_pb2.ModelMetadataResponse(
                name=described["name"],
                versions=described["versions"],
                platform=described["platform"],
                inputs=_metadata_tensors(described["inputs"]),
                outputs=_metadata_tensors(described["outputs"]),
            )

        return await answer_or_abort(context, metadata)

    async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
        return await answer_or_abort(context, lambda: self._infer(request))

    async def _infer(self, request: Any) -> Any:
        state = self._state
        models = state.models
        servable = _lookup(models, request.model_name, request.model_version)
        try:
            if len(request.inputs) != 1:
                raise v2.BadRequest(f"expected 1 inputs but got {len(request.inputs)} inputs for model '{models.name}'")
            if len(request.raw_input_contents) > 1:
                raise v2.BadRequest(f"raw_input_contents holds {len(request.raw_input_contents)} tensors; the model has 1 input, {INPUT}")
            tensor, raw = _input_tensor(request)
            images, _ = v2.input_images(tensor, raw, model=models.name, max_instances=state.config.max_instances)
            wanted = v2.requested_outputs([{"name": output.name} for output in request.outputs] or None, True, models.name)
        except v2.BadRequest as exc:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        logits = await state.batcher.logits(images, servable.run_model)
        outputs = signature_outputs(logits)
        response = service_pb2.ModelInferResponse(model_name=models.name, model_version=str(servable.version), id=request.id)
        for output in wanted:
            array = outputs[output.name]
            response.outputs.add(name=output.name, datatype=v2.DATATYPES[str(array.dtype)], shape=list(array.shape))
            response.raw_output_contents.append(little_endian_bytes(array))
        return response


def add_to_server(state: Any, server: Any) -> bool:
    """Offer the service on `server`; False when tritonclient[grpc] is not installed."""
    if not AVAILABLE:
        return False
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(state), server)
    return True
