"""`mnist serve` against its own OpenAPI document: schemathesis, every check, on a live server on loopback.

Schemathesis reads /openapi.json and sends examples, boundary cases, fuzzed and negative
requests and stateful sequences to every documented operation, and checks each answer:
no 5xx, only documented status codes, content types and schemas, schema-valid requests
accepted and invalid ones refused, 405 with `Allow` for undocumented methods. The settings
(tests/schemathesis.toml) name the two places where a valid document still allows a 4xx;
the hooks (tests/schemathesis_hooks.py) send whole pixels as JSON integers.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from serving import REPO, ServerProcess

pytestmark = pytest.mark.slow

TESTS = REPO / "tests"
MAX_EXAMPLES = 15  # per operation and phase: about a minute on a busy 2-core machine
MAX_SECONDS = 90  # schemathesis's own time budget, well inside the subprocess deadline


@pytest.fixture(scope="module")
def server(tiny_run: Path) -> ServerProcess:
    # Few instances per request keeps generated TF Serving bodies small (each is 784 pixels).
    process = ServerProcess(str(tiny_run), "--port", "0", "--quiet", "--max-instances", "3", "--max-body-mb", "1")
    try:
        yield process.start()
    finally:
        process.stop()


def test_schemathesis_finds_nothing_with_every_check(server: ServerProcess, tmp_path: Path) -> None:
    environment = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH", "")])),
    }
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(TESTS / "schemathesis.toml"), "--no-color",
        "run", f"{server.url}openapi.json", "--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--seed", "20",
        "--max-time", str(MAX_SECONDS), "--generation-database", "none", "--workers", "1", "--request-timeout", "60",
        "--report", "junit", "--report-dir", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=MAX_SECONDS + 120)
    summary = done.stdout[-6000:]
    assert done.returncode == 0, summary + done.stderr[-2000:]
    # Every documented operation was tested (none skipped for an unusable schema).
    selected = re.search(r"Selected: (\d+)/(\d+)", done.stdout)
    tested = re.search(r"Tested: (\d+)", done.stdout)
    assert selected and tested and selected.group(1) == selected.group(2) == tested.group(1), summary
    assert int(tested.group(1)) >= 14, summary  # the page's API and TF Serving's, at least
    # The server lived through it and still answers.
    with server.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
