"""`mnist serve` for clients nobody here wrote: TF Serving's gRPC stub, Triton's `tritonclient`, KServe's routes.

Real server processes on loopback (`--grpc-port`) and the official clients, unmodified. On
the tiny run's bar digits: every route, error code and limit. On a model trained on real
MNIST (slow): each client reads at least 95% of 200 test digits and agrees with the REST API.
"""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mnist_cli.core.errors import ADDRESS
from mnist_cli.data.idx import load_split
from helpers import REPO, train_cli
from serving import ServerProcess, free_port

grpc = pytest.importorskip("grpc")
tritonhttp = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

COUNT = 200  # test digits each client reads
FLOOR = 0.95
MAX_INSTANCES = 256
MAX_BODY_MB = 1  # 200 digits fit, as JSON too


def bar_digits() -> tuple[np.ndarray, np.ndarray]:
    """The ten digits of the tiny data set (a bar at row 3 + 2 * label), which its model reads without fault."""
    labels = np.arange(10)
    images = np.zeros((10, 28, 28), np.uint8)
    for label in labels:
        images[label, 3 + 2 * label : 5 + 2 * label, 4:24] = 255
    return images, labels


def serve_with_grpc(run: Path) -> Any:
    """`mnist serve RUN --grpc-port P` on loopback, until the test module is done."""
    grpc_port = free_port()
    process = ServerProcess(
        str(run), "--port", "0", "--grpc-port", str(grpc_port), "--max-instances", str(MAX_INSTANCES), "--max-body-mb", str(MAX_BODY_MB)
    )
    try:
        process.start()
        # Printed before the address line, but on the other stream: it may be read a moment later.
        wait_for_stderr(process, f"gRPC at 127.0.0.1:{grpc_port}: TF Serving's API and the Open Inference Protocol's")
        process.grpc_port = grpc_port  # type: ignore[attr-defined]
        yield process
    finally:
        assert process.stop() == 0


@pytest.fixture(scope="module")
def server(tiny_run: Path) -> Any:
    """A server of the tiny run: every protocol's routes, errors and limits."""
    yield from serve_with_grpc(tiny_run)


@pytest.fixture(scope="module")
def real_run(real_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The walk-through's network trained on real MNIST with cross-entropy and Adam (about 95% on the test set)."""
    run_dir = tmp_path_factory.mktemp("runs") / "mlp"
    return train_cli(real_data_dir, run_dir, "--loss", "xent", "--optimizer", "adam", "--lr", "0.001", "--epochs", "5", "--batch-size", "64")


@pytest.fixture(scope="module")
def real_server(real_run: Path) -> Any:
    """A server of a model trained on real MNIST: what the real clients read."""
    yield from serve_with_grpc(real_run)


def triton(server: ServerProcess) -> Any:
    return tritonhttp.InferenceServerClient(url=f"127.0.0.1:{server.port}", connection_timeout=60, network_timeout=60)


def images_input(images: np.ndarray, *, binary: bool = True) -> Any:
    tensor = tritonhttp.InferInput("images", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images, binary_data=binary)
    return tensor


# --------------------------------------------------------------------------- Open Inference Protocol (tritonclient)


def test_tritonclient_health_metadata_and_inference_in_binary_and_json(server: ServerProcess) -> None:
    images, labels = bar_digits()
    client = triton(server)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("mnist")
    assert client.is_model_ready("mnist", "1") and not client.is_model_ready("nope") and not client.is_model_ready("mnist", "2")
    metadata = client.get_model_metadata("mnist")
    assert metadata["versions"] == ["1"] and client.get_model_metadata("mnist", "1")["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "images", "datatype": "UINT8", "shape": [-1, 28, 28]}]
    assert [(o["name"], o["datatype"], o["shape"]) for o in metadata["outputs"]] == [
        ("logits", "FP32", [-1, 10]), ("probabilities", "FP32", [-1, 10]), ("classes", "INT64", [-1]),
    ]  # fmt: skip
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]

    result = client.infer("mnist", [images_input(images)], request_id="bars")  # binary in, binary out: the defaults
    assert result.get_response()["id"] == "bars" and result.get_response()["model_version"] == "1"
    classes, probabilities = result.as_numpy("classes"), result.as_numpy("probabilities")
    assert classes.dtype == np.int64 and (classes == labels).all()
    assert probabilities.shape == (10, 10) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert (result.as_numpy("logits").argmax(axis=1) == classes).all()

    wanted = [tritonhttp.InferRequestedOutput("classes", binary_data=False)]
    as_json = client.infer("mnist", [images_input(images, binary=False)], model_version="1", outputs=wanted)
    outputs = as_json.get_response()["outputs"]
    assert [output["name"] for output in outputs] == ["classes"] and outputs[0]["data"] == labels.tolist()
    # A compressed request, as tritonclient sends it when asked.
    squeezed = client.infer("mnist", [images_input(images)], outputs=wanted, request_compression_algorithm="gzip")
    assert (squeezed.as_numpy("classes") == labels).all()


@pytest.mark.parametrize(
    ("model", "version", "images", "status", "message"),
    [
        ("nope", "", np.zeros((2, 28, 28), np.uint8), "404", "Request for unknown model: 'nope' is not found"),
        ("mnist", "7", np.zeros((2, 28, 28), np.uint8), "404", "'mnist' version 7 is not found"),
        ("mnist", "", np.zeros((2, 28, 28), np.float32), "400", "unexpected datatype FP32 for inference input 'images', expecting UINT8"),
        ("mnist", "", np.zeros((2, 27, 28), np.uint8), "400", "Expected [-1,28,28], got [2,27,28]"),
        ("mnist", "", np.zeros((MAX_INSTANCES + 1, 28, 28), np.uint8), "400", "too many instances: 257, at most 256"),
    ],
    ids=["unknown-model", "unknown-version", "float-pixels", "wrong-shape", "too-many"],
)
def test_tritonclient_hears_the_protocols_errors_and_the_server_goes_on(
    server: ServerProcess, model: str, version: str, images: np.ndarray, status: str, message: str
) -> None:
    client = triton(server)
    tensor = tritonhttp.InferInput("images", list(images.shape), {np.uint8: "UINT8", np.float32: "FP32"}[images.dtype.type])
    tensor.set_data_from_numpy(images)
    with pytest.raises(InferenceServerException) as raised:
        client.infer(model, [tensor], model_version=version)
    assert raised.value.status() == status and message in raised.value.message()
    assert client.infer("mnist", [images_input(bar_digits()[0][:1])]).as_numpy("classes").tolist() == [0]


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (b'{"inputs": [{"name": "images", "shape": [1, 28, 28], "datatype": "UINT8", "parameters": {"binary_data_size": 784}}]}',
         {}, 400, "claims 784 bytes of binary data; the body holds 0"),
        (b'{"inputs": []}' + bytes(784), {"Inference-Header-Content-Length": "14"}, 400, "expected 1 inputs but got 0 inputs"),
        (b'{"inputs": [{"name": "images", "shape": [1, 28, 28], "datatype": "UINT8", "data": [0]}]}', {}, 400, "has 1 values; its shape needs 784"),
        (b'{"inputs": [{"name": "images", "shape": [1, 28, 28], "datatype": "UINT8", "data": ' + json.dumps([0.5] * 784).encode() + b"}]}",
         {}, 400, "found fractions"),
        (b'{"inputs": [{"name": "pixels", "shape": [1, 28, 28], "datatype": "UINT8", "data": []}]}', {}, 400, "unexpected inference input 'pixels'"),
        (b'{"inputs": [{"name": "images", "shape": [1, 28, 28], "datatype": "UINT8", "data": ' + json.dumps([0] * 784).encode() + b'}],'
         b' "outputs": [{"name": "scores"}]}', {}, 400, "unexpected inference output 'scores'"),
        (b'{"inputs": [{"name": "images", "datatype": {}, "shape": [1, 28, 28], "data": []}]}', {}, 400, "unexpected datatype '{}'"),
        (b'{"id": null, "inputs": []}', {}, 400, '"id" must be a string'),
        (b"not json", {}, 400, "failed to parse the request JSON"),
        (b"{}", {"Inference-Header-Content-Length": "9999"}, 400, "Inference-Header-Content-Length must be the length"),
        (b"\x1f\x8b not gzip", {"Content-Encoding": "gzip"}, 400, "the gzip body cannot be inflated"),
        (gzip.compress(b" " * 20_000_000), {"Content-Encoding": "gzip"}, 413, "the inflated body is over the"),
        (b"{}", {"Content-Encoding": "br"}, 415, "Content-Encoding 'br' is not supported"),
    ],
    ids=["binary-missing", "no-input", "short-json", "fractions", "wrong-input", "wrong-output", "datatype-object", "null-id", "not-json", "bad-header-length",
         "bad-gzip", "gzip-bomb", "brotli"],
)  # fmt: skip
def test_a_bad_infer_request_gets_the_protocols_json_error(server: ServerProcess, body: bytes, headers: dict[str, str], status: int, message: str) -> None:
    with server.client() as client:
        answer = client.post("/v2/models/mnist/infer", content=body, headers=headers)
        assert answer.status_code == status and message in answer.json()["error"], answer.text
        assert client.get("/v2/health/live").json() == {"live": True}


def test_kserve_v1_liveness_readiness_and_model_list(server: ServerProcess) -> None:
    with server.client() as client:
        assert client.get("/", headers={"Accept": "application/json"}).json() == {"status": "alive"}
        assert client.get("/").json() == {"status": "alive"}  # httpx, as KServe's client, accepts anything
        page = client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
        assert page.headers["content-type"].startswith("text/html") and "<canvas" in page.text
        status = client.get("/v1/models/mnist").json()
        assert status["ready"] is True and status["name"] == "mnist"  # what KServe's v1 is_model_ready reads
        assert status["model_version_status"][0]["state"] == "AVAILABLE"  # and TF Serving's, still
        assert client.get("/v1/models").json() == {"models": ["mnist"]}


# --------------------------------------------------------------------------- TF Serving's gRPC API (its own stub)


def stubs(server: ServerProcess) -> tuple[Any, Any]:
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")  # type: ignore[attr-defined]
    return prediction_service_pb2_grpc.PredictionServiceStub(channel), model_service_pb2_grpc.ModelServiceStub(channel)


def predict_request(images: Any, *, dtype: Any = None, name: str = "mnist", version: int | None = None, alias: str = "images") -> Any:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = "serving_default"
    if version is not None:
        request.model_spec.version.value = version
    request.inputs[alias].CopyFrom(tf.make_tensor_proto(images, dtype=dtype or tf.uint8))
    return request


def images_classified(server: ServerProcess) -> float:
    """The server's count of images its model calls (the batcher's) have classified."""
    with server.client() as client:
        families = text_string_to_metric_families(client.get("/metrics").text)
        return next(sample.value for family in families for sample in family.samples if sample.name == "mnist_images_total")


def test_tf_serving_grpc_stub_predict_metadata_and_status(server: ServerProcess) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

    images, labels = bar_digits()
    prediction, models = stubs(server)
    before = images_classified(server)
    response = prediction.Predict(predict_request(images), timeout=60)
    assert images_classified(server) - before == len(images)  # through the batcher, as the HTTP routes
    assert (tf.make_ndarray(response.outputs["classes"]) == labels).all()
    assert tf.make_ndarray(response.outputs["probabilities"]).shape == (10, 10)
    assert response.model_spec.name == "mnist" and response.model_spec.version.value == 1
    # A nested Python list, and only the outputs asked for.
    filtered = predict_request(images[:3].tolist(), version=1)
    filtered.output_filter.append("classes")
    answer = prediction.Predict(filtered, timeout=60)
    assert list(answer.outputs) == ["classes"] and tf.make_ndarray(answer.outputs["classes"]).tolist() == [0, 1, 2]

    metadata_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata_request.model_spec.name = "mnist"
    metadata = prediction.GetModelMetadata(metadata_request, timeout=60)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signatures)
    signature = signatures.signature_def["serving_default"]
    assert signature.inputs["images"].dtype == tf.uint8.as_datatype_enum
    assert [dim.size for dim in signature.inputs["images"].tensor_shape.dim] == [-1, 28, 28]
    assert set(signature.outputs) == {"logits", "probabilities", "classes"}

    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "mnist"
    (status,) = models.GetModelStatus(status_request, timeout=60).model_version_status
    assert status.version == 1 and status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE


def _grpc_error(call: Any, request: Any) -> tuple[Any, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=60)
    return raised.value.code(), raised.value.details()


def test_tf_serving_grpc_errors_have_its_status_codes_and_the_server_goes_on(server: ServerProcess) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

    images = bar_digits()[0][:2]
    prediction, models = stubs(server)
    code = grpc.StatusCode
    cases = [
        (predict_request(images, name="nope"), code.NOT_FOUND, "Servable not found for request: Latest(nope)"),
        (predict_request(images, version=3), code.NOT_FOUND, "Servable not found for request: Specific(mnist, 3)"),
        (predict_request(images.astype(np.float32), dtype=tf.float32), code.INVALID_ARGUMENT, "Expects arg[0] to be uint8 but float is provided"),
        (predict_request(images[:, :, :20]), code.INVALID_ARGUMENT, "must have shape [-1,28,28]"),
        (predict_request(np.zeros((MAX_INSTANCES + 1, 28, 28), np.uint8)), code.INVALID_ARGUMENT, "too many instances: 257"),
        (predict_request(images, alias="pixels"), code.INVALID_ARGUMENT, "input tensor alias not found in signature: pixels"),
    ]
    over_the_cap = np.zeros((MAX_BODY_MB * 1024 * 1024 // 784 + 1, 28, 28), np.uint8)  # refused unread, as over HTTP
    cases.append((predict_request(over_the_cap), code.RESOURCE_EXHAUSTED, "larger than max"))
    for request, expected, message in cases:
        got, details = _grpc_error(prediction.Predict, request)
        assert got == expected and message in details, (got, details)
    other_signature = predict_request(images)
    other_signature.model_spec.signature_name = "classify"
    assert _grpc_error(prediction.Predict, other_signature)[0] == code.FAILED_PRECONDITION
    unfiltered = predict_request(images)
    unfiltered.output_filter.append("scores")
    assert _grpc_error(prediction.Predict, unfiltered)[0] == code.INVALID_ARGUMENT

    metadata_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["graph"])
    metadata_request.model_spec.name = "mnist"
    assert _grpc_error(prediction.GetModelMetadata, metadata_request) == (code.INVALID_ARGUMENT, "Metadata field graph is not supported")
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "nope"
    assert _grpc_error(models.GetModelStatus, status_request) == (code.NOT_FOUND, "Could not find any versions of model nope")

    assert tf.make_ndarray(prediction.Predict(predict_request(images), timeout=60).outputs["classes"]).shape == (2,)


def wait_for_stderr(server: ServerProcess, text: str) -> None:
    """Until a line of the server's standard error holds `text` (the output is read by another thread)."""
    deadline = time.monotonic() + 30
    while not any(text in line for line in server.stderr) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(text in line for line in server.stderr), server.stderr[-20:]


def test_each_grpc_call_is_logged_and_counted_as_http_requests_are(server: ServerProcess) -> None:
    prediction, _ = stubs(server)
    prediction.Predict(predict_request(bar_digits()[0][:1]), timeout=60)
    _grpc_error(prediction.Predict, predict_request(bar_digits()[0][:1], name="nope"))
    for status in (200, 404):  # how HTTP says OK and NOT_FOUND
        wait_for_stderr(server, f"gRPC /tensorflow.serving.PredictionService/Predict {status} ")
    with server.client() as client:
        families = text_string_to_metric_families(client.get("/metrics").text)
        counted = {
            sample.labels["status"]
            for family in families
            for sample in family.samples
            if sample.name == "mnist_requests_total" and sample.labels.get("method") == "gRPC"
        }
    assert {"200", "404"} <= counted


# --------------------------------------------------------------------------- Open Inference Protocol over gRPC


def test_tritonclient_grpc_on_the_grpc_port(server: ServerProcess) -> None:
    tritongrpc = pytest.importorskip("tritonclient.grpc")
    images, labels = bar_digits()
    client = tritongrpc.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")  # type: ignore[attr-defined]
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("mnist")
    assert not client.is_model_ready("nope") and not client.is_model_ready("mnist", "2")
    metadata = client.get_model_metadata("mnist", as_json=True)
    assert metadata["inputs"] == [{"name": "images", "datatype": "UINT8", "shape": ["-1", "28", "28"]}]
    tensor = tritongrpc.InferInput("images", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    result = client.infer("mnist", [tensor], outputs=[tritongrpc.InferRequestedOutput("classes")])
    assert (result.as_numpy("classes") == labels).all()
    assert result.as_numpy("logits") is None  # only what was asked for
    wrong = tritongrpc.InferInput("images", [1, 28, 28], "FP32")
    wrong.set_data_from_numpy(images[:1].astype(np.float32))
    for model, inputs, status, message in [
        ("nope", [tensor], "StatusCode.NOT_FOUND", "Request for unknown model: 'nope' is not found"),
        ("mnist", [wrong], "StatusCode.INVALID_ARGUMENT", "unexpected datatype FP32 for inference input 'images'"),
    ]:
        with pytest.raises(InferenceServerException) as raised:
            client.infer(model, inputs)
        assert raised.value.status() == status and message in raised.value.message()


# --------------------------------------------------------------------------- real clients, real digits


@pytest.mark.slow
def test_every_real_client_reads_mnist_and_agrees_with_the_rest_api(real_server: ServerProcess, real_mnist_dir: Path) -> None:
    import tensorflow as tf

    images, labels = (array[:COUNT] for array in load_split(real_mnist_dir, "test"))
    with real_server.client() as http:
        answer = http.post("/v1/models/mnist:predict", json={"inputs": images.tolist()})
    assert answer.status_code == 200, answer.text
    rest = np.array(answer.json()["outputs"]["classes"])
    read: dict[str, np.ndarray] = {}

    client = triton(real_server)
    read["tritonclient.http, binary"] = client.infer("mnist", [images_input(images)]).as_numpy("classes")
    wanted = [tritonhttp.InferRequestedOutput("classes", binary_data=False)]
    read["tritonclient.http, JSON"] = client.infer("mnist", [images_input(images, binary=False)], outputs=wanted).as_numpy("classes")
    prediction, _ = stubs(real_server)
    read["TF Serving's gRPC stub"] = tf.make_ndarray(prediction.Predict(predict_request(images), timeout=60).outputs["classes"])
    tritongrpc = pytest.importorskip("tritonclient.grpc")
    tensor = tritongrpc.InferInput("images", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    read["tritonclient.grpc"] = tritongrpc.InferenceServerClient(f"127.0.0.1:{real_server.grpc_port}").infer("mnist", [tensor]).as_numpy("classes")  # type: ignore[attr-defined]

    for client_name, classes in read.items():
        assert (classes == labels).mean() >= FLOOR, client_name
        assert (classes == rest).all(), client_name


# --------------------------------------------------------------------------- listening


def test_a_grpc_port_in_use_is_the_address_error_before_tensorflow_loads(tiny_run: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = (
            "import json, sys\nfrom typer.testing import CliRunner\nfrom mnist_cli.cli import app\n"
            f"result = CliRunner().invoke(app, ['serve', {str(tiny_run)!r}, '--port', '0', '--grpc-port', '{port}'])\n"
            "print(json.dumps([result.exit_code, result.stderr, 'tensorflow' in sys.modules]))\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120, check=True)
    exit_code, stderr, imported_tf = json.loads(done.stdout.strip().splitlines()[-1])
    assert exit_code == ADDRESS
    assert f"error: port {port} on 127.0.0.1 is already in use" in stderr and "--grpc-port" in stderr
    assert len(stderr.strip().splitlines()) == 2 and "Traceback" not in stderr
    assert not imported_tf
