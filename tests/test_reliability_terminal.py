"""Reliability round two (issue 11): what reaches the terminal, special files, and mirror credentials.

Untrusted strings (picture names, HTTP reasons, run names, mirror text) are printed with their
control characters escaped; libraries print nothing beside the `error:` line; a URL's password
is used as HTTP basic auth and never printed; FIFOs are refused without being opened for a read
that could block; `mnist predict ./-` reads the file named `-`.
"""

from __future__ import annotations

import base64
import functools
import http.server
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from helpers import invoke, make_run, one_error_line, outcome
from mirror import Tiny, mirror_handler, serve_mirror

from typer.testing import CliRunner

from mnist_cli.cli import app, common
from mnist_cli.core.errors import DOWNLOAD, INPUT
from mnist_cli.data import TRAIN_IMAGES
from mnist_cli.data import download as dl

ESC = "\x1b"
# Clear screen, set the window title, write the clipboard (OSC 52), a C1 CSI and a bell.
HOSTILE = "\x1b[2J\x1b]0;pwned\x07\x1b]52;c;aGVsbG8=\x07\x9b31m"


def _no_raw_controls(text: str) -> None:
    assert ESC not in text and "\x07" not in text and "\x9b" not in text, repr(text)


def test_the_escaping_helper_shows_every_control_character_and_keeps_markup_literal() -> None:
    shown = common.safe(f"a{HOSTILE}[bold]b\n")
    _no_raw_controls(shown)
    assert "\\x1b[2J" in shown.replace("\\[", "[") and "\\x9b" in shown and shown.endswith("\\x0a")
    assert "\\[bold]" in shown  # Rich markup in a name stays text
    assert common.printable("plain ünïcode name.png") == "plain ünïcode name.png"


_cli = functools.partial(outcome, "download")


# Pictures ------------------------------------------------------------------------------


def _digit(path: Path) -> Path:
    Image.fromarray(np.pad(np.full((12, 4), 255, np.uint8), 8)).save(path, format="PNG")
    return path


def test_picture_names_with_escape_sequences_are_printed_escaped(finished_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, _ = finished_run
    good = _digit(tmp_path / f"good{HOSTILE}.png")
    bad = tmp_path / f"bad{HOSTILE}.png"
    bad.write_text("not a picture")
    result = invoke("predict", "--checkpoint", str(run), str(good), str(bad))
    assert result.exit_code == INPUT
    _no_raw_controls(result.stdout)
    _no_raw_controls(result.stderr)
    assert "good\\x1b[2J" in result.stdout.replace("\n", "") or "good\\x1b" in result.stdout
    assert "bad\\x1b" in result.stderr
    result = invoke("predict", "--checkpoint", str(run), "--show", str(good))
    assert result.exit_code == 0
    _no_raw_controls(result.stdout)


def test_a_fifo_picture_fails_alone_and_a_folder_skips_it(finished_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, _ = finished_run
    folder = tmp_path / "pictures"
    folder.mkdir()
    _digit(folder / "one.png")
    os.mkfifo(folder / "waiting.png")  # nobody ever writes to it: opening it to read would block
    result = invoke("predict", "--checkpoint", str(run), "--json", str(folder / "waiting.png"), str(folder))
    assert result.exit_code == INPUT
    items = json.loads(result.stdout)
    assert [item["path"] for item in items] == [str(folder / "waiting.png"), str(folder / "one.png")]
    assert "is a FIFO, not a regular file" in items[0]["error"]
    assert "prediction" in items[1]


def test_predict_dot_slash_dash_reads_the_file_named_dash(
    finished_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, _ = finished_run
    monkeypatch.chdir(tmp_path)
    _digit(tmp_path / "-")
    result = CliRunner().invoke(app, ["predict", "--checkpoint", str(run), "--json", "./-"], input=b"")
    assert result.exit_code == 0, result.output
    (item,) = json.loads(result.stdout)
    assert item["path"] == "./-" and "prediction" in item
    result = CliRunner().invoke(app, ["predict", "--checkpoint", str(run), "--json", "-"], input=b"")
    assert result.exit_code == INPUT and "standard input is empty" in result.output


def test_libtiff_noise_on_a_damaged_tiff_never_reaches_stderr(
    finished_run: tuple[Path, Path], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from mnist_cli.core.errors import InputError
    from mnist_cli.inference import preprocessing

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)).save(
        buffer, format="TIFF", compression="tiff_adobe_deflate"
    )
    damaged = bytearray(buffer.getvalue())
    damaged[20:2000] = bytes(1980)  # the deflate stream, not the header or the directory
    picture = tmp_path / "damaged.tif"
    picture.write_bytes(bytes(damaged))
    capfd.readouterr()
    with pytest.raises(InputError, match="is corrupt or truncated"):
        preprocessing.load_image(picture)
    captured = capfd.readouterr()
    assert "ZIPDecode" not in captured.err and captured.err == ""


# Runs -----------------------------------------------------------------------------------


def test_run_names_and_reasons_with_escape_sequences_are_printed_escaped(tmp_path: Path) -> None:
    make_run(tmp_path, f"run{HOSTILE}", val=[0.9], test_accuracy=0.9)
    broken = tmp_path / f"broken{HOSTILE}"
    broken.mkdir()
    (broken / "config.json").write_text('{"model": "\\u001b]0;x\\u0007"}')
    result = invoke("runs", "--root", str(tmp_path))
    assert result.exit_code == 0
    _no_raw_controls(result.stdout)
    _no_raw_controls(result.stderr)
    assert "run\\x1b" in result.stdout.replace("\n", "")


# Mirrors --------------------------------------------------------------------------------


def _hostile_reason_handler(server):  # noqa: ANN001, ANN202 - the test server's factory
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(404, f"Not Found{HOSTILE}")
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


def test_an_http_reason_phrase_with_escape_sequences_is_printed_escaped(tiny: Tiny, tmp_path: Path) -> None:
    with serve_mirror(tiny.gz, _hostile_reason_handler) as server:
        code, stdout, stderr = _cli("--data-dir", str(tmp_path), "--mirror", server.url("x"))
    assert code == DOWNLOAD
    _no_raw_controls(stderr)
    assert "Not Found\\x1b" in one_error_line(stderr)


def _auth_handler(server):  # noqa: ANN001, ANN202
    plain = mirror_handler(server)
    expected = "Basic " + base64.b64encode(b"reader:s3cret pass").decode()

    class Handler(plain):  # type: ignore[misc, valid-type]
        def do_GET(self) -> None:  # noqa: N802
            if self.headers.get("Authorization") != expected:
                self.send_response(401, "Unauthorized")
                self.send_header("WWW-Authenticate", 'Basic realm="mnist"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            super().do_GET()

    return Handler


def test_mirror_credentials_are_used_as_basic_auth_and_never_printed(tiny: Tiny, tmp_path: Path) -> None:
    with serve_mirror(tiny.gz, _auth_handler) as server:
        url = server.url("good").replace("http://", "http://reader:s3cret%20pass@")
        code, stdout, stderr = _cli("--data-dir", str(tmp_path / "ok"), "--mirror", url, "--json", "--quiet")
        assert code == 0, stderr
        payload = json.loads(stdout)
        assert [f["status"] for f in payload["files"]] == ["downloaded"] * 4
        assert payload["files"][0]["source"] == server.url("good").replace("http://", "http://***@")
        manifest = "".join(path.read_text() for path in (tmp_path / "ok").rglob("*.json"))
        for text in (stdout, stderr, manifest):
            assert "s3cret" not in text and "reader" not in text

        # Wrong password: refused by the server; the error line shows the URL redacted.
        wrong = server.url("good").replace("http://", "http://reader:wrong-secret@")
        code, stdout, stderr = _cli("--data-dir", str(tmp_path / "no"), "--mirror", wrong, "--quiet", "--json")
        assert code == DOWNLOAD and "HTTP 401" in one_error_line(stderr) and "***@" in stderr
        assert "wrong-secret" not in stdout + stderr

    # Credentials on a mirror that cannot use them are refused, still redacted.
    code, _, stderr = _cli("--data-dir", str(tmp_path), "--mirror", "file://user:hunter2@localhost/tmp")
    assert code == 2 and "hunter2" not in stderr and "carries credentials" in one_error_line(stderr)


def test_a_mirror_folder_with_a_fifo_or_an_oversized_file_is_refused_and_the_next_mirror_used(
    tiny: Tiny, tmp_path: Path
) -> None:
    good = tmp_path / "good"
    good.mkdir()
    for name, content in tiny.gz.items():
        (good / name).write_bytes(content)
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / TRAIN_IMAGES)
    huge = tmp_path / "huge"
    huge.mkdir()
    with open(huge / TRAIN_IMAGES, "wb") as handle:
        handle.write(tiny.gz[TRAIN_IMAGES][:64])
        handle.truncate(300 << 20)  # sparse: 300 MB that cost no disk
    events: list[dl.Event] = []
    result = dl.download("mnist", tmp_path / "data", mirrors=[str(fifo), str(huge), str(good)], on_event=events.append)
    assert [item.status for item in result.files] == ["downloaded"] * 4
    reasons = [event.reason for event in events if isinstance(event, dl.MirrorFailed) and event.name == TRAIN_IMAGES]
    assert any("is a FIFO, not a regular file" in reason for reason in reasons), reasons
    assert any("is larger than" in reason for reason in reasons), reasons
    assert not list((tmp_path / "data" / "mnist").glob(".*.part"))


def test_a_fifo_or_hostile_manifest_in_the_data_folder_never_hangs_download(tiny: Tiny, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name, content in tiny.gz.items():
        (mirror / name).write_bytes(content)
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    (folder / dl.MANIFEST_NAME).write_text("[" * 100_000 + "]" * 100_000)
    os.mkfifo(folder / TRAIN_IMAGES)
    code, stdout, stderr = _cli("--data-dir", str(tmp_path / "data"), "--mirror", str(mirror))
    assert code == 6 and stdout == ""
    assert "is a FIFO, not a regular file; refusing to read it" in one_error_line(stderr)
    (folder / TRAIN_IMAGES).unlink()
    (folder / dl.MANIFEST_NAME).write_text(json.dumps({TRAIN_IMAGES: [1, 2], "x": "y"}))
    code, stdout, stderr = _cli("--data-dir", str(tmp_path / "data"), "--mirror", str(mirror))
    assert code == 0, stderr
