"""`mnist serve`: the real server in a process on a free loopback port, good and hostile requests, batching, metrics."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from mnist_cli.cli import app
from mnist_cli.core.errors import ADDRESS, MODEL, USAGE
from helpers import REPO, bar_digit
from serving import ServerProcess, good_request_works, png, raw_request, read_answer

BODY_TIMEOUT = 3  # seconds, short so that the trickling client is cut off quickly
MAX_BODY_MB = 1
MAX_INSTANCES = 8


@pytest.fixture(scope="module")
def run(tiny_run: Path) -> Path:
    return tiny_run


@pytest.fixture(scope="module")
def server(run: Path) -> Any:
    process = ServerProcess(
        str(run), "--port", "0", "--body-timeout", str(BODY_TIMEOUT), "--max-body-mb", str(MAX_BODY_MB),
        "--max-instances", str(MAX_INSTANCES),
    )  # fmt: skip
    try:
        yield process.start()
    finally:
        process.stop()


# --------------------------------------------------------------------------- good requests


def test_predict_answers_what_mnist_predict_json_prints(server: ServerProcess, run: Path, tmp_path: Path) -> None:
    files = []
    for label in (0, 4, 9):
        path = tmp_path / f"digit-{label}.png"
        path.write_bytes(png(bar_digit(label)))
        files.append(path)
    cli = CliRunner().invoke(app, ["predict", *map(str, files), "--checkpoint", str(run), "--json"])
    assert cli.exit_code == 0, cli.stderr
    expected = json.loads(cli.stdout)
    with server.client() as client:
        raw = client.post("/predict", content=files[0].read_bytes(), headers={"Content-Type": "image/png"})
        form = client.post("/predict", files=[("file", (path.name, path.read_bytes(), "image/png")) for path in files])
        with_image = client.post("/predict?image=true&top_k=5", content=files[1].read_bytes(), headers={"Content-Type": "image/png"})
    assert raw.status_code == 200 and form.status_code == 200
    assert raw.json()[0]["path"] == "request body"
    for got, want in zip(form.json(), expected):
        assert got["path"] == Path(want["path"]).name
        assert set(got) == set(want)
        assert got["prediction"] == want["prediction"] and got["name"] == want["name"]
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-5)
        assert [k["class"] for k in got["top_k"]] == [k["class"] for k in want["top_k"]]
    item = with_image.json()[0]
    assert len(item["top_k"]) == 5
    assert np.array_equal(np.array(item["image"], np.uint8), bar_digit(4))  # what the network saw


def test_page_assets_info_health_docs(server: ServerProcess, run: Path) -> None:
    with server.client() as client:
        page = client.get("/", headers={"Accept": "text/html"})  # a browser; other clients get KServe v1 liveness JSON
        assert page.status_code == 200 and "<canvas id=\"pad\"" in page.text
        # Every asset the page loads comes from the server itself: no CDN, no web fonts.
        for url in re.findall(r'(?:src|href)="([^"]+)"', page.text):
            if url.startswith("data:"):
                continue  # inline, such as the empty favicon
            assert url.startswith("/"), url
            assert client.get(url).status_code == 200, url
        for asset in ("/static/app.js", "/static/style.css"):
            assert "http" not in client.get(asset).text.replace("http.", "")
        docs = client.get("/docs").text
        assert "cdn" not in docs.lower() and "/docs-assets/swagger-ui-bundle.js" in docs
        assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
        assert client.get("/healthz").json() == {"status": "ok"}
        info = client.get("/info").json()
        assert client.get("/openapi.json").json()["paths"]["/predict"]
    assert info["run"] == run.name and info["dataset"] == "mnist" and info["test_accuracy"] == 1.0
    assert info["class_names"] == [str(d) for d in range(10)]


def test_one_log_line_per_request_with_method_path_status_and_milliseconds(server: ServerProcess) -> None:
    with server.client() as client:
        client.get("/log-test?query=is-not-logged")
    assert server.wait_for_line(r"^GET /log-test 404 \d+\.\d ms$", deadline=30)


def test_metrics_count_requests_errors_latency_and_batch_sizes(server: ServerProcess) -> None:
    with server.client() as client:
        client.post("/v1/models/mnist:predict", json={"instances": [bar_digit(2).tolist()] * 3})
        client.post("/v1/models/mnist:predict", content=b"{not json")
        text = client.get("/metrics").text
    families = {family.name: family for family in text_string_to_metric_families(text)}
    requests = {(s.labels["endpoint"], s.labels["status"]): s.value for s in families["mnist_requests"].samples if s.name.endswith("_total")}
    assert requests[("/v1/models:predict", "200")] >= 1 and requests[("/v1/models:predict", "400")] >= 1
    errors = [s for s in families["mnist_request_errors"].samples if s.name.endswith("_total")]
    assert any(s.labels["status"] == "400" for s in errors)
    assert any(s.name == "mnist_request_duration_seconds_count" and s.value >= 1 for s in families["mnist_request_duration_seconds"].samples)
    batch_sizes = {s.labels["le"]: s.value for s in families["mnist_batch_size"].samples if s.name.endswith("_bucket")}
    assert batch_sizes["+Inf"] >= 1 and batch_sizes["2.0"] < batch_sizes["4.0"]  # the batch of 3


# --------------------------------------------------------------------------- bad requests

TRUNCATED = png(bar_digit(1))[:60]


def _bomb(width: int, height: int) -> bytes:
    """A valid PNG header claiming a huge picture, with a few bytes of pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def _form(*parts: tuple[str, str | None, bytes]) -> tuple[bytes, str]:
    boundary = "mnistboundary"
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: image/png\r\n\r\n".encode() + content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


TF = "/v1/models/mnist:predict"
ONE = bar_digit(0).tolist()
BAD_REQUESTS = {
    "invalid-json": (TF, b'{"instances": [', "application/json", 400, "not valid JSON"),
    "json-not-an-object": (TF, b"[1, 2, 3]", "application/json", 400, "must be a JSON object"),
    "neither-instances-nor-inputs": (TF, b'{"signature_name": "serving_default"}', "application/json", 400, "exactly one of"),
    "both-instances-and-inputs": (TF, json.dumps({"instances": [ONE], "inputs": [ONE]}).encode(), "application/json", 400, "exactly one of"),
    "wrong-shape": (TF, json.dumps({"instances": [ONE[:27]]}).encode(), "application/json", 400, "28x28"),
    "flat-784": (TF, json.dumps({"instances": [[0] * 784]}).encode(), "application/json", 400, "28x28"),
    "ragged-rows": (TF, json.dumps({"instances": [ONE[:27] + [[0] * 5]]}).encode(), "application/json", 400, "different lengths"),
    "value-over-255": (TF, json.dumps({"instances": [[[300] * 28] * 28]}).encode(), "application/json", 400, "0 to 255"),
    "negative-value": (TF, json.dumps({"instances": [[[-1] * 28] * 28]}).encode(), "application/json", 400, "0 to 255"),
    # TF Serving's IsInt() check for a uint8 input, in its words: a written fraction is never a pixel.
    "fractions": (TF, json.dumps({"instances": [[[0.5] * 28] * 28]}).encode(), "application/json", 400, "JSON Value: 0.5 Type: Number is not of expected type: uint8"),
    "float-zero": (TF, json.dumps({"instances": [[[0] * 27 + [0.0]] * 28]}).encode(), "application/json", 400, "JSON Value: 0.0 Type: Number is not of expected type: uint8"),
    "exponent": (TF, json.dumps({"inputs": [[[0] * 28] * 27 + [[1e2] * 28]]}).encode(), "application/json", 400, "JSON Value: 100.0 Type: Number"),
    "signature-not-a-string": (TF, json.dumps({"signature_name": 5, "instances": [ONE]}).encode(), "application/json", 400, "'signature_name' key must be a string value"),
    "classify": ("/v1/models/mnist:classify", b'{"examples": []}', "application/json", 400, "Expected classification signature method_name to be tensorflow/serving/classify. Was: tensorflow/serving/predict"),
    "regress": ("/v1/models/mnist/versions/1:regress", b'{"examples": []}', "application/json", 400, "Expected regression signature method_name to be tensorflow/serving/regress. Was: tensorflow/serving/predict"),
    "classify-unknown-model": ("/v1/models/resnet:classify", b"{}", "application/json", 404, "Servable not found for request: Latest(resnet)"),
    "strings": (TF, json.dumps({"instances": [[["1"] * 28] * 28]}).encode(), "application/json", 400, "strings"),
    "nan": (TF, b'{"instances": [[[NaN]]]}', "application/json", 400, "NaN"),
    "huge-integer": (TF, json.dumps({"instances": [[[10**40] * 28] * 28]}).encode(), "application/json", 400, "0 to 255"),
    "deep-nesting": (TF, b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "application/json", 400, "nested too deeply"),
    "too-many-instances": (TF, json.dumps({"instances": [ONE] * (MAX_INSTANCES + 1)}).encode(), "application/json", 400, "too many instances"),
    "wrong-signature": (TF, json.dumps({"signature_name": "predict", "instances": [ONE]}).encode(), "application/json", 400, 'Serving signature name: "predict" not found in signature def'),
    "unknown-model": ("/v1/models/resnet:predict", json.dumps({"instances": [ONE]}).encode(), "application/json", 404, "Servable not found"),
    "unknown-version": ("/v1/models/mnist/versions/7:predict", json.dumps({"instances": [ONE]}).encode(), "application/json", 404, "Servable not found"),
    "not-an-image": ("/predict", b"hello, I am text pretending to be a picture", "image/png", 422, "is not a PNG"),
    "truncated-png": ("/predict", TRUNCATED, "image/png", 422, "corrupt or truncated"),
    "picture-bomb": ("/predict", _bomb(8_000, 6_000), "image/png", 422, "decompression bomb"),
    "picture-bomb-over-pillows-limit": ("/predict", _bomb(50_000, 50_000), "image/png", 422, "megapixels"),
    "empty-body": ("/predict", b"", "image/png", 422, "empty"),
    "json-to-predict": ("/predict", b'{"instances": []}', "application/json", 415, "takes pictures"),
    "form-without-files": ("/predict", *_form(("note", None, b"no picture here")), 400, "holds no file"),
    "form-without-boundary": ("/predict", b"--x\r\n", "multipart/form-data", 400, "multipart form"),
    "too-many-pictures": ("/predict", *_form(*[("file", f"{i}.png", png(bar_digit(1))) for i in range(MAX_INSTANCES + 1)]), 400, "too many"),
    "one-bad-picture-of-two": ("/predict", *_form(("file", "good.png", png(bar_digit(1))), ("file", "bad.png", b"nope")), 422, "1 of 2 pictures"),
    "bad-top-k": ("/predict?top_k=99", png(bar_digit(1)), "image/png", 422, "top_k"),
    "unknown-path": ("/v2/nothing", b"", "text/plain", 404, "Not Found"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
def test_a_bad_request_gets_a_4xx_json_error_and_the_server_goes_on(server: ServerProcess, case: str) -> None:
    path, body, content_type, status, message = BAD_REQUESTS[case]
    with server.client() as client:
        answer = client.post(path, content=body, headers={"Content-Type": content_type})
    assert answer.status_code == status, answer.text
    error = answer.json()
    assert message in error["error"], error
    if status == 400:
        # Every bad request says what to do, not only what is wrong (invalid JSON, a wrong shape...).
        assert error.get("hint"), error
    if case == "one-bad-picture-of-two":
        # The other picture is still read, as `mnist predict` reads the others.
        assert error["results"][0]["prediction"] == 1 and "error" in error["results"][1]
    good_request_works(server)


def test_a_body_over_the_cap_is_refused_from_content_length_without_being_sent(server: ServerProcess) -> None:
    size = 64 * MAX_BODY_MB * 1024 * 1024
    head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {size}"
    status, answer = raw_request(server.port, head)  # not one byte of the body is sent
    assert status == 413 and b"cap" in answer
    good_request_works(server)


def test_a_chunked_body_is_cut_off_once_it_passes_the_cap(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(b"POST /v1/models/mnist:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"[" * 65536
        sent = 0
        answer = b""
        # Keep streaming (far past the cap) until the server answers; it must never read it whole.
        while sent < 64 * MAX_BODY_MB * 1024 * 1024:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            sock.settimeout(0.0)
            try:
                answer = sock.recv(65536)
            except BlockingIOError:
                pass
            finally:
                sock.settimeout(60)
            if answer:
                break
        if not answer:
            answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 8 * MAX_BODY_MB * 1024 * 1024  # refused soon after the cap, not at the end
    good_request_works(server)


def test_a_trickling_client_times_out_while_others_are_served(server: ServerProcess) -> None:
    body = png(bar_digit(2))
    answer: list[bytes] = []
    finished = threading.Event()

    def trickle() -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
            sock.sendall(f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {len(body)}\r\n\r\n".encode())
            for byte in body:
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break
                sock.settimeout(0.2)  # the client's own pace: one byte per 0.2 s, reading any answer meanwhile
                try:
                    data = sock.recv(65536)
                except (socket.timeout, BlockingIOError):
                    continue
                except OSError:
                    break
                finally:
                    sock.settimeout(60)
                if data:
                    answer.append(data + read_answer(sock))
                    break
        finished.set()

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    good_request_works(server)  # served while the trickler holds its connection
    assert not finished.is_set()
    thread.join(timeout=120)
    assert answer and answer[0].startswith(b"HTTP/1.1 408"), answer
    assert b"did not arrive within" in answer[0]
    good_request_works(server)


# --------------------------------------------------------------------------- the command


def _serve_in_fresh_python(*args: str) -> tuple[int, str, bool]:
    code = (
        "import sys, json\n"
        "from typer.testing import CliRunner\n"
        "from mnist_cli.cli import app\n"
        f"result = CliRunner().invoke(app, ['serve', *{list(args)!r}])\n"
        "print(json.dumps([result.exit_code, result.stderr, 'tensorflow' in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120, check=True)
    exit_code, stderr, imported_tf = json.loads(done.stdout.strip().splitlines()[-1])
    return exit_code, stderr, imported_tf


def test_a_port_in_use_is_one_error_line_with_its_exit_code_before_tensorflow_loads(run: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        exit_code, stderr, imported_tf = _serve_in_fresh_python(str(run), "--port", str(port))
    assert exit_code == ADDRESS == 11
    assert f"error: port {port} on 127.0.0.1 is already in use" in stderr and "hint:" in stderr
    assert len(stderr.strip().splitlines()) == 2 and "Traceback" not in stderr
    assert not imported_tf


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["/nowhere/run", "--port", "0"], MODEL, "does not exist"),
        (["--port", "70000"], USAGE, "--port must be between 0 and 65535"),
        (["--max-batch-size", "0", "--port", "0"], USAGE, "--max-batch-size must be >= 1"),
        # TEST-NET-1: a valid address that is no interface of this machine (no DNS involved).
        (["--host", "192.0.2.1", "--port", "0"], ADDRESS, "192.0.2.1 is not an address of this machine"),
    ],
    ids=["missing-target", "bad-port", "bad-batch-size", "foreign-address"],
)
def test_bad_targets_and_options_fail_fast_without_tensorflow(args: list[str], code: int, message: str) -> None:
    exit_code, stderr, imported_tf = _serve_in_fresh_python(*args)
    assert exit_code == code and message in stderr, stderr
    assert not imported_tf


def test_listening_on_every_interface_prints_a_warning(run: Path) -> None:
    from mnist_cli.cli import common, serve
    from mnist_cli.inference import loading
    from mnist_cli.serving.config import ServeConfig

    with common.err.capture() as captured:
        serve._announce(loading.load(run), ServeConfig(host="0.0.0.0"), "http://127.0.0.1:8000/")
    warnings = [line for line in captured.get().splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "anyone who can reach this machine" in warnings[0]


def test_request_paths_are_printed_with_control_characters_escaped() -> None:
    from mnist_cli.cli.serve import clipped as printable

    assert printable("/predict\x1b[31m\x07") == "/predict\\x1b[31m\\x07"
    assert len(printable("/" + "a" * 1000)) == 200


def test_sigterm_lets_the_request_in_flight_finish_and_exits_0(server: ServerProcess) -> None:
    body = png(bar_digit(6))
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:10])
        good_request_works(server)  # the server has taken the first connection in by now
        server.process.send_signal(signal.SIGTERM)
        server.wait_for_line(r"^stopping \(SIGTERM\)", deadline=60)
        sock.sendall(body[10:])
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])[0]["prediction"] == 6
    assert server.process.wait(timeout=60) == 0
    assert server.stderr[-1] == "stopped (SIGTERM)"


def test_a_fashion_mnist_model_is_served_with_its_class_names(run: Path, tmp_path: Path) -> None:
    import shutil

    import httpx

    from mnist_cli.data import DATASETS
    from mnist_cli.inference import loading
    from mnist_cli.serving.app import create_app
    from mnist_cli.serving.config import ServeConfig

    copy = shutil.copytree(run, tmp_path / "fashion")
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "dataset": "fashion-mnist"}))
    application = create_app(loading.load(copy), ServeConfig())

    async def ask() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        # In-process, without the lifespan: the batcher then calls the model per request.
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://serve") as client:
            info = (await client.get("/info")).json()
            items = (await client.post("/predict", content=png(bar_digit(1)), headers={"Content-Type": "image/png"})).json()
        return info, items

    info, items = asyncio.run(ask())
    names = list(DATASETS["fashion-mnist"].class_names)
    assert info["dataset"] == "fashion-mnist" and info["class_names"] == names
    assert items[0]["name"] == "Trouser" and items[0]["top_k"][0]["name"] == "Trouser"

