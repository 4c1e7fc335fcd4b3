"""`mnist serve`: TF Serving's REST API as TF Serving answers it, and the OpenAPI document, on a real server process."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from mnist_cli.cli import app
from helpers import bar_digit
from serving import ServerProcess, good_request_works, png

MAX_INSTANCES = 8
TF = "/v1/models/mnist:predict"


@pytest.fixture(scope="module")
def run(tiny_run: Path) -> Path:
    return tiny_run


@pytest.fixture(scope="module")
def server(run: Path) -> Any:
    process = ServerProcess(str(run), "--port", "0", "--max-body-mb", "1", "--max-instances", str(MAX_INSTANCES), "--quiet")
    try:
        yield process.start()
    finally:
        process.stop()


def test_tf_serving_rows_columns_status_and_metadata(server: ServerProcess) -> None:
    digits = [bar_digit(label).tolist() for label in (1, 7)]
    with server.client() as client:
        rows = client.post("/v1/models/mnist:predict", json={"instances": digits}).json()
        named = client.post("/v1/models/mnist:predict", json={"signature_name": "serving_default", "instances": [{"images": d} for d in digits]}).json()
        columns = client.post("/v1/models/mnist/versions/1:predict", json={"inputs": {"images": digits}}).json()
        status = client.get("/v1/models/mnist").json()
        metadata = client.get("/v1/models/mnist/metadata").json()
    assert [row["classes"] for row in rows["predictions"]] == [1, 7]
    assert named == rows
    for row in rows["predictions"]:
        assert set(row) == {"logits", "probabilities", "classes"}
        assert sum(row["probabilities"]) == pytest.approx(1.0, abs=1e-5)
        assert row["classes"] == int(np.argmax(row["logits"]))
    assert columns["outputs"]["classes"] == [1, 7]
    assert columns["outputs"]["logits"] == [row["logits"] for row in rows["predictions"]]
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["images"]["dtype"] == "DT_UINT8"
    assert set(signature["outputs"]) == {"logits", "probabilities", "classes"}


def test_tf_serving_takes_the_default_signature_by_an_empty_name_and_ignores_unknown_keys(server: ServerProcess) -> None:
    digits = [bar_digit(label).tolist() for label in (2, 8)]
    with server.client() as client:
        plain = client.post(TF, json={"instances": digits}).json()
        empty = client.post(TF, json={"signature_name": "", "instances": digits}).json()
        extra = client.post(TF, json={"instances": digits, "model_spec": {"name": "x"}, "note": 1.5, "inputs_typo": [0.5]})
    assert [row["classes"] for row in plain["predictions"]] == [2, 8]
    assert empty == plain
    assert extra.status_code == 200 and extra.json() == plain


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9)


def test_gzip_bodies_are_inflated_for_every_endpoint(server: ServerProcess) -> None:
    rows = json.dumps({"instances": [bar_digit(4).tolist()]}).encode()
    with server.client() as client:
        tf = client.post(TF, content=_gzip(rows), headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        picture = client.post("/predict", content=_gzip(png(bar_digit(6))), headers={"Content-Type": "image/png", "Content-Encoding": "gzip"})
    assert tf.status_code == 200 and tf.json()["predictions"][0]["classes"] == 4
    assert picture.status_code == 200 and picture.json()[0]["prediction"] == 6


@pytest.mark.parametrize(
    ("body", "encoding", "status", "message"),
    [
        # 64 MiB of zeros in a 64 kB gzip stream: under the 1 MiB cap as sent, far over it inflated.
        (_gzip(b"0" * (64 * 1024 * 1024)), "gzip", 413, "the inflated body is over the"),
        (_gzip(b'{"instances": []}')[:-12], "gzip", 400, "truncated"),
        (b"plainly not gzip", "gzip", 400, "cannot be inflated"),
        (b'{"instances": []}', "br", 415, "Content-Encoding 'br' is not supported"),
    ],
    ids=["gzip-bomb", "truncated-gzip", "not-gzip", "unknown-encoding"],
)
def test_a_bad_or_bombing_gzip_body_is_refused_and_the_server_goes_on(server: ServerProcess, body: bytes, encoding: str, status: int, message: str) -> None:
    with server.client() as client:
        answer = client.post(TF, content=body, headers={"Content-Type": "application/json", "Content-Encoding": encoding})
    assert answer.status_code == status and message in answer.json()["error"], answer.text
    good_request_works(server)


def test_tf_serving_version_status_and_metadata_name_the_savedmodels_tensors(server: ServerProcess, run: Path, tmp_path: Path) -> None:
    from tensorflow.python.tools import saved_model_utils

    with server.client() as client:
        status = client.get("/v1/models/mnist/versions/1").json()
        metadata = client.get("/v1/models/mnist/versions/1/metadata").json()
        latest = client.get("/v1/models/mnist/metadata").json()
        missing = client.get("/v1/models/mnist/versions/2/metadata")
    assert status == {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert metadata == latest and metadata["model_spec"]["version"] == "1"
    assert missing.status_code == 404 and "Specific(mnist, 2)" in missing.json()["error"]
    # What `mnist export` writes for TF Serving is what the metadata describes, tensor names included.
    exported = tmp_path / "saved_model"
    result = CliRunner().invoke(app, ["export", str(run), "--format", "savedmodel", "-o", str(exported)])
    assert result.exit_code == 0, result.stderr
    signature = saved_model_utils.get_meta_graph_def(str(exported), "serve").signature_def["serving_default"]
    described = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert described["method_name"] == signature.method_name
    for side in ("inputs", "outputs"):
        real = getattr(signature, side)
        assert set(described[side]) == set(real)
        for key, tensor in described[side].items():
            assert tensor["name"] == real[key].name
            assert tensor["dtype"] == type(real[key]).DESCRIPTOR.fields_by_name["dtype"].enum_type.values_by_number[real[key].dtype].name
            assert [int(d["size"]) for d in tensor["tensor_shape"]["dim"]] == [d.size for d in real[key].tensor_shape.dim]


def test_the_openapi_document_names_the_model_versions_errors_and_media_types(server: ServerProcess) -> None:
    with server.client() as client:
        document = client.get("/openapi.json").json()
        wrong_method = client.get("/v1/models/mnist:predict")
    paths = document["paths"]
    for path in ("/v1/models/{model_name}:predict", "/v1/models/{model_name}/versions/{version}/metadata"):
        for parameter in next(iter(paths[path].values()))["parameters"]:
            expected = ["mnist"] if parameter["name"] == "model_name" else [1]
            assert parameter["schema"]["enum"] == expected, (path, parameter)
    tf = paths["/v1/models/{model_name}:predict"]["post"]
    body = tf["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["instances"]["anyOf"][0]["maxItems"] == MAX_INSTANCES  # this server's --max-instances
    assert {"200", "400", "404", "408", "413", "415", "422"} <= set(tf["responses"])
    error = tf["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(document["components"]["schemas"][error]["properties"]) == {"error", "hint"}
    assert "HTTPValidationError" not in document["components"]["schemas"]  # 422 is the real error body
    predict = paths["/predict"]["post"]
    assert {"image/png", "image/jpeg", "image/bmp", "image/gif", "image/tiff", "image/webp", "multipart/form-data"} <= set(predict["requestBody"]["content"])
    assert predict["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "array"
    assert list(paths["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
