"""`mnist download`: mirrors that misbehave on purpose, resume, locking, skip cache, CLI errors, real data.

Every server here is a loopback HTTP server started by the test; nothing reaches the network.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import dead_port, one_error_line, outcome
from mirror import NAMES, MirrorServer, Tiny, gzip_bytes, serve_mirror

from mnist_cli import data
from mnist_cli.data import download as dl
from mnist_cli.data.download import partfile
from mnist_cli.data import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS, DatasetSpec
from mnist_cli.core.errors import BusyError, DownloadError, IntegrityError, LocalIOError, UsageError


def _gz_named(raw: bytes) -> bytes:
    """The same data in a gzip whose header holds a file name, so every later byte is shifted."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="images.idx", mode="wb", fileobj=buffer, mtime=0) as handle:
        handle.write(raw)
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def _isolated(isolated_download: None) -> None:
    """Every test here: no mirror, data or proxy settings from the machine, quick retries."""


@pytest.fixture
def server(tiny: Tiny) -> Iterator[MirrorServer]:
    with serve_mirror(tiny.gz) as state:
        yield state


@pytest.fixture
def mirror_dir(tiny: Tiny, tmp_path: Path) -> Path:
    folder = tmp_path / "mirror"
    folder.mkdir()
    for name, content in tiny.gz.items():
        (folder / name).write_bytes(content)
    return folder


def _run(data_dir: Path, mirrors: list[str] | None, **kwargs: object) -> tuple[dl.DownloadResult, list[dl.Event]]:
    events: list[dl.Event] = []
    result = dl.download("mnist", data_dir, mirrors=mirrors, on_event=events.append, **kwargs)  # type: ignore[arg-type]
    return result, events


def _assert_complete(tiny: Tiny, data_dir: Path) -> None:
    folder = data_dir / "mnist"
    for name in NAMES:
        assert (folder / name).read_bytes() == tiny.gz[name]
    assert not list(folder.glob("*.part")) and not list(folder.glob(".*.part"))


def _failures(events: list[dl.Event]) -> list[dl.MirrorFailed]:
    return [event for event in events if isinstance(event, dl.MirrorFailed)]


# Mirrors that fail, one way or another -----------------------------------------


def test_downloads_all_files_over_http_and_records_them(tiny: Tiny, server: MirrorServer, tmp_path: Path) -> None:
    result, events = _run(tmp_path, [server.url()])
    assert [item.status for item in result.files] == ["downloaded"] * 4
    assert [item.sha256 for item in result.files] == [spec.sha256 for spec in tiny.spec.files]
    assert all(item.source == server.url() for item in result.files)
    assert not _failures(events)
    _assert_complete(tiny, tmp_path)
    started = [event for event in events if isinstance(event, dl.FileStarted)]
    assert [(event.name, event.total) for event in started] == [(name, len(tiny.gz[name])) for name in NAMES]


def test_dead_first_mirror_falls_through_and_is_not_retried(tiny: Tiny, server: MirrorServer, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{dead_port()}/"
    result, events = _run(tmp_path, [dead, server.url()])
    assert all(item.source == server.url() for item in result.files)
    failures = _failures(events)
    # Refused once, then skipped for the other three files without another wait.
    assert [(event.source, event.reason) for event in failures] == [(dead, "connection refused")]
    _assert_complete(tiny, tmp_path)


@pytest.mark.parametrize(
    ("mode", "reason", "error"),
    [
        ("404", "HTTP 404", DownloadError),
        ("html", "HTML page", DownloadError),
        ("html-octet", "HTML page", DownloadError),
        ("truncated", "truncated", IntegrityError),
        ("tampered", "sha256 mismatch", IntegrityError),
    ],
)
def test_bad_mirror_falls_through_or_fails_clearly(
    tiny: Tiny, server: MirrorServer, tmp_path: Path, mode: str, reason: str, error: type[Exception]
) -> None:
    server.modes["bad"] = mode
    result, events = _run(tmp_path / "a", [server.url("bad"), server.url()])
    assert all(item.source == server.url() for item in result.files)
    assert reason in _failures(events)[0].reason
    _assert_complete(tiny, tmp_path / "a")

    with pytest.raises(error) as caught:
        _run(tmp_path / "b", [server.url("bad")])
    assert reason in caught.value.message and TRAIN_IMAGES in caught.value.message
    assert "\n" not in str(caught.value)
    # A folder that held nothing before is not left behind when no file landed in it.
    assert not (tmp_path / "b").exists()


def test_tampered_copy_beside_a_dead_mirror_is_an_integrity_error(
    tiny: Tiny, server: MirrorServer, tmp_path: Path
) -> None:
    server.modes["bad"] = "tampered"
    with pytest.raises(IntegrityError) as caught:
        _run(tmp_path, [f"http://127.0.0.1:{dead_port()}/", server.url("bad")])
    assert "sha256 mismatch" in caught.value.message


def test_transient_errors_retry_with_exponential_backoff(tiny: Tiny, server: MirrorServer, tmp_path: Path) -> None:
    delays: list[float] = []
    settings = dl.Settings(timeout=2.0, retries=3, backoff=0.5, sleep=delays.append)
    server.plan[("good", TEST_LABELS)] = ["503", "503", "ok"]
    result, _ = _run(tmp_path / "a", [server.url()], settings=settings)
    assert delays == [0.5, 1.0] and result.files[3].status == "downloaded"

    delays.clear()
    server.modes["busy"] = "503"
    result, events = _run(tmp_path / "b", [server.url("busy"), server.url()], settings=settings)
    assert len([r for r in server.requests if r.mirror == "busy" and r.name == TRAIN_IMAGES]) == 4
    assert delays[:3] == [0.5, 1.0, 2.0]
    assert "HTTP 503" in _failures(events)[0].reason


def test_dropped_connection_resumes_with_range(tiny: Tiny, server: MirrorServer, tmp_path: Path) -> None:
    server.plan[("good", TRAIN_IMAGES)] = ["drop", "ok"]
    result, events = _run(tmp_path, [server.url()])
    first, second = server.gets(TRAIN_IMAGES)
    assert first.range is None
    half = len(tiny.gz[TRAIN_IMAGES]) // 2
    assert second.range == f"bytes={half}-"
    assert result.files[0].status == "downloaded"
    assert any(event.retry_in is not None and "closed after" in event.reason for event in _failures(events))
    _assert_complete(tiny, tmp_path)


def test_next_mirror_resumes_a_broken_transfer_and_a_foreign_prefix_is_discarded(
    tiny: Tiny, server: MirrorServer, tmp_path: Path
) -> None:
    once = dl.Settings(timeout=2.0, retries=0, backoff=0.0)
    server.modes["flaky"] = "drop"
    _run(tmp_path / "a", [server.url("flaky"), server.url()], only=[TRAIN_IMAGES], settings=once)
    flaky = [r for r in server.gets(TRAIN_IMAGES) if r.mirror == "flaky"]
    good = [r for r in server.gets(TRAIN_IMAGES) if r.mirror == "good"]
    # Each broken transfer that made progress resumes on the same mirror; the next mirror finishes it.
    assert len(flaky) > 2 and all(r.range for r in flaky[1:])
    assert len(good) == 1 and good[0].range is not None
    assert (tmp_path / "a" / "mnist" / TRAIN_IMAGES).read_bytes() == tiny.gz[TRAIN_IMAGES]

    # A mirror with another compression of the same data breaks off; its half cannot be resumed elsewhere.
    other = {name: _gz_named(raw) for name, raw in tiny.raw.items()}
    with serve_mirror(other) as foreign:
        foreign.modes["flaky"] = "drop"
        result, _ = _run(tmp_path / "b", [foreign.url("flaky"), server.url()], only=[TEST_IMAGES], settings=once)
    assert [r.range is not None for r in server.gets(TEST_IMAGES)] == [True, False]  # resumed, then clean
    assert result.files[0].verified_by == "sha256"
    assert (tmp_path / "b" / "mnist" / TEST_IMAGES).read_bytes() == tiny.gz[TEST_IMAGES]


def test_server_that_ignores_range_restarts_cleanly(tiny: Tiny, server: MirrorServer, tmp_path: Path) -> None:
    server.plan[("good", TRAIN_IMAGES)] = ["drop", "ignore-range"]
    _run(tmp_path, [server.url()])
    assert server.gets(TRAIN_IMAGES)[1].range is not None
    _assert_complete(tiny, tmp_path)


def test_stalled_server_times_out_and_resumes(tiny: Tiny, server: MirrorServer, tmp_path: Path) -> None:
    server.plan[("good", TEST_IMAGES)] = ["stall", "ok"]
    started = time.monotonic()
    _, events = _run(tmp_path, [server.url()], settings=dl.Settings(timeout=0.3, backoff=0.0))
    assert time.monotonic() - started < 5
    assert any("timed out" in event.reason for event in _failures(events))
    assert server.gets(TEST_IMAGES)[1].range is not None
    _assert_complete(tiny, tmp_path)


# Interruption, locking, skipping ------------------------------------------------


def test_interruption_leaves_no_final_file_and_the_next_run_resumes(
    tiny: Tiny, server: MirrorServer, tmp_path: Path
) -> None:
    def interrupt(event: dl.Event) -> None:
        if isinstance(event, dl.FileProgress) and event.total and event.done < event.total:
            raise KeyboardInterrupt

    server.throttle = 0.01  # several reads per file, so the interruption lands mid-file
    with pytest.raises(KeyboardInterrupt):
        dl.download("mnist", tmp_path, mirrors=[server.url()], on_event=interrupt)
    folder = tmp_path / "mnist"
    assert not (folder / TRAIN_IMAGES).exists()
    kept = (folder / f".{TRAIN_IMAGES}.part").stat().st_size
    assert 0 < kept < len(tiny.gz[TRAIN_IMAGES])

    result, events = _run(tmp_path, [server.url()])  # also proves the lock was released
    assert not any(isinstance(event, dl.LockWaiting) for event in events)
    assert server.gets(TRAIN_IMAGES)[-1].range == f"bytes={kept}-"
    assert result.files[0].status == "downloaded"
    _assert_complete(tiny, tmp_path)


def test_two_concurrent_downloads_fetch_each_file_once(tiny: Tiny, server: MirrorServer, tmp_path: Path) -> None:
    server.throttle = 0.005
    first_started = threading.Event()
    outcomes: dict[str, tuple[dl.DownloadResult, list[dl.Event]]] = {}

    def first(event: dl.Event) -> None:
        if isinstance(event, dl.FileStarted):
            first_started.set()

    def run(label: str, callback: object = None) -> None:
        events: list[dl.Event] = []

        def record(event: dl.Event) -> None:
            events.append(event)
            if callback:
                callback(event)  # type: ignore[operator]

        outcomes[label] = (dl.download("mnist", tmp_path, mirrors=[server.url()], on_event=record), events)

    one = threading.Thread(target=run, args=("one", first))
    one.start()
    assert first_started.wait(10)
    two = threading.Thread(target=run, args=("two",))
    two.start()
    one.join(20)
    two.join(20)
    assert [item.status for item in outcomes["one"][0].files] == ["downloaded"] * 4
    assert [item.status for item in outcomes["two"][0].files] == ["skipped"] * 4
    assert any(isinstance(event, dl.LockWaiting) for event in outcomes["two"][1])
    assert all(len(server.gets(name)) == 1 for name in NAMES)
    _assert_complete(tiny, tmp_path)


def test_lock_held_too_long_is_a_busy_error(tiny: Tiny, mirror_dir: Path, tmp_path: Path) -> None:
    import filelock

    folder = tmp_path / "mnist"
    folder.mkdir()
    with filelock.FileLock(folder / dl.LOCK_NAME), pytest.raises(BusyError):
        dl.download("mnist", tmp_path, mirrors=[str(mirror_dir)], settings=dl.Settings(lock_timeout=0.05))
    assert not (folder / TRAIN_IMAGES).exists()


def test_verified_files_are_skipped_rehashed_when_changed_and_force_downloads_again(
    tiny: Tiny, server: MirrorServer, tmp_path: Path
) -> None:
    _run(tmp_path, [server.url()])
    result, _ = _run(tmp_path, [server.url()])
    assert [item.status for item in result.files] == ["skipped"] * 4
    assert all(item.source == server.url() for item in result.files)
    assert len(server.requests) == 4

    (tmp_path / "mnist" / dl.MANIFEST_NAME).unlink()
    result, _ = _run(tmp_path, [server.url()])
    assert [item.status for item in result.files] == ["verified"] * 4 and len(server.requests) == 4

    # Same size, other bytes: the cache entry no longer matches, the digest check rejects it.
    labels = tmp_path / "mnist" / TEST_LABELS
    labels.write_bytes(b"\0" * labels.stat().st_size)
    result, events = _run(tmp_path, [server.url()])
    assert [item.status for item in result.files] == ["skipped"] * 3 + ["downloaded"]
    assert any(isinstance(event, dl.ExistingRejected) for event in events)

    result, _ = _run(tmp_path, [server.url()], force=True)
    assert [item.status for item in result.files] == ["downloaded"] * 4
    assert len(server.requests) == 4 + 1 + 4
    _assert_complete(tiny, tmp_path)


# Local mirrors, re-compressed copies, the mirror list ---------------------------


def test_directory_and_file_url_mirrors(tiny: Tiny, mirror_dir: Path, tmp_path: Path) -> None:
    result, _ = _run(tmp_path / "a", [str(mirror_dir)])
    assert all(item.source == str(mirror_dir) for item in result.files)
    _assert_complete(tiny, tmp_path / "a")
    result, _ = _run(tmp_path / "b", [mirror_dir.as_uri()])
    assert [item.status for item in result.files] == ["downloaded"] * 4
    _assert_complete(tiny, tmp_path / "b")


def test_recompressed_copy_verifies_by_decoded_digest_unless_none_is_published(
    tiny: Tiny, mirror_dir: Path, tmp_path: Path
) -> None:
    for name, raw in tiny.raw.items():
        (mirror_dir / name).write_bytes(gzip_bytes(raw, mtime=1234, level=6))
    with pytest.raises(IntegrityError) as caught:
        _run(tmp_path, [str(mirror_dir)])
    assert "only the original .gz verifies" in caught.value.message

    result, _ = _run(tmp_path, [str(mirror_dir)], only=[TRAIN_LABELS, TEST_IMAGES, TEST_LABELS])
    assert [item.verified_by for item in result.files] == ["decoded_sha256"] * 3
    assert not (tmp_path / "mnist" / TRAIN_IMAGES).exists()


def test_missing_file_in_directory_mirror_falls_through(
    tiny: Tiny, mirror_dir: Path, server: MirrorServer, tmp_path: Path
) -> None:
    (mirror_dir / TEST_LABELS).unlink()
    result, events = _run(tmp_path, [str(mirror_dir), server.url()])
    assert [item.source for item in result.files] == [str(mirror_dir)] * 3 + [server.url()]
    assert _failures(events)[0].reason == "no such file"


def test_mirror_env_var_and_builtin_list(
    tiny: Tiny, mirror_dir: Path, server: MirrorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"http://127.0.0.1:{dead_port()}/"
    monkeypatch.setenv("MNIST_MIRROR", f"{dead} ,\n {mirror_dir}")
    assert [m.label for m in dl.resolve_mirrors("mnist")] == [dead, str(mirror_dir)]
    result, events = _run(tmp_path / "a", None)
    assert all(item.source == str(mirror_dir) for item in result.files)
    assert _failures(events)[0].source == dead
    # --mirror replaces the environment's list.
    assert [m.label for m in dl.resolve_mirrors("mnist", [server.url()])] == [server.url()]

    monkeypatch.delenv("MNIST_MIRROR")
    monkeypatch.setitem(data.DATASETS, "mnist", DatasetSpec("mnist", tiny.spec.files, (dead, server.url()), ()))
    result, _ = _run(tmp_path / "b", None)
    assert all(item.source == server.url() for item in result.files)


@pytest.mark.parametrize("value", ["ftp://example.org/mnist/", "http://", "/no/such/folder", "file://elsewhere/x", " "])
def test_bad_mirror_values_are_usage_errors(tiny: Tiny, value: str) -> None:
    with pytest.raises(UsageError):
        dl.resolve_mirrors("mnist", [value])


# ensure_dataset: what `train` and `evaluate` call ------------------------------


def test_ensure_dataset_uses_files_present_as_they_are(tiny: Tiny, tmp_path: Path) -> None:
    from helpers import write_tiny_dataset

    folder = write_tiny_dataset(tmp_path / "mnist", n_train=20, n_test=10)
    before = {name: (folder / name).read_bytes() for name in NAMES}
    dead = f"http://127.0.0.1:{dead_port()}/"
    assert dl.ensure_dataset("mnist", tmp_path, mirrors=[dead]) == folder
    assert {name: (folder / name).read_bytes() for name in NAMES} == before
    assert not (folder / dl.MANIFEST_NAME).exists()


def test_ensure_dataset_downloads_only_the_missing_files(tiny: Tiny, mirror_dir: Path, tmp_path: Path) -> None:
    from helpers import write_tiny_dataset

    folder = write_tiny_dataset(tmp_path / "mnist", n_train=20, n_test=10)
    own = (folder / TRAIN_IMAGES).read_bytes()
    (folder / TEST_LABELS).unlink()
    events: list[dl.Event] = []
    assert dl.ensure_dataset("mnist", tmp_path, mirrors=[str(mirror_dir)], on_event=events.append) == folder
    assert (folder / TEST_LABELS).read_bytes() == tiny.gz[TEST_LABELS]
    assert (folder / TRAIN_IMAGES).read_bytes() == own
    assert [event.name for event in events if isinstance(event, dl.FileDone)] == [TEST_LABELS]


# Local disk failures ------------------------------------------------------------


def test_full_disk_is_a_local_io_error_and_leaves_nothing(
    tiny: Tiny, mirror_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    class FullDisk:
        def __init__(self, handle: object) -> None:
            self.handle = handle

        def __getattr__(self, name: str) -> object:
            return getattr(self.handle, name)

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()  # type: ignore[attr-defined]

        def write(self, chunk: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    real_open = partfile.open_part
    monkeypatch.setattr(partfile, "open_part", lambda part, append: FullDisk(real_open(part, append=append)))
    with pytest.raises(LocalIOError, match="no space left"):
        _run(tmp_path, [str(mirror_dir)])
    assert not (tmp_path / "mnist").exists()  # nothing landed, so the folder it made is gone too


# The command line -------------------------------------------------------------


_cli = functools.partial(outcome, "download")


def test_cli_json_output_and_quiet(tiny: Tiny, mirror_dir: Path, tmp_path: Path) -> None:
    code, stdout, stderr = _cli("--data-dir", str(tmp_path), "--mirror", str(mirror_dir), "--json", "--quiet")
    assert code == 0 and stderr == ""
    payload = json.loads(stdout)
    assert payload["dataset"] == "mnist" and payload["directory"] == str(tmp_path / "mnist")
    assert [(f["name"], f["status"], f["bytes"]) for f in payload["files"]] == [
        (name, "downloaded", len(tiny.gz[name])) for name in NAMES
    ]
    assert {"source", "sha256"} <= set(payload["files"][0]) and payload["seconds"] >= 0

    code, stdout, stderr = _cli("--data-dir", str(tmp_path), "--mirror", str(mirror_dir))
    assert code == 0 and stdout.count("skipped") == 4 and "mnist ready in" in stdout


def test_cli_plain_progress_names_the_failed_mirror(tiny: Tiny, mirror_dir: Path, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{dead_port()}/"
    code, stdout, stderr = _cli("--data-dir", str(tmp_path), "-m", dead, "-m", str(mirror_dir))
    assert code == 0
    assert f"{dead}: connection refused; trying the next mirror" in stderr
    assert f"fetching {TRAIN_IMAGES}" in stderr and stdout.count("downloaded") == 4


@pytest.mark.parametrize(
    ("mode", "code", "said"),
    [("dead", 4, "connection refused"), ("404", 4, "HTTP 404"), ("tampered", 5, "mismatch")],
)
def test_cli_mirror_failures_exit_with_one_line(
    tiny: Tiny, server: MirrorServer, tmp_path: Path, mode: str, code: int, said: str
) -> None:
    server.modes["bad"] = mode
    url = f"http://127.0.0.1:{dead_port()}/" if mode == "dead" else server.url("bad")
    exit_code, stdout, stderr = _cli("--data-dir", str(tmp_path), "--mirror", url)
    assert exit_code == code and stdout == ""
    line = one_error_line(stderr)
    assert said in line and url in line and TRAIN_IMAGES in line
    assert not (tmp_path / "mnist" / TRAIN_IMAGES).exists()


@pytest.mark.parametrize("value", ["ftp://example.org/", "/no/such/folder"])
def test_cli_bad_mirror_is_a_usage_error(tiny: Tiny, tmp_path: Path, value: str) -> None:
    code, _, stderr = _cli("--data-dir", str(tmp_path), "--mirror", value)
    assert code == 2 and value in one_error_line(stderr)


def test_cli_bad_mirror_env_is_a_usage_error(tiny: Tiny, tmp_path: Path) -> None:
    code, _, stderr = _cli("--data-dir", str(tmp_path), env={"MNIST_MIRROR": "gopher://x"})
    assert code == 2 and "MNIST_MIRROR" in one_error_line(stderr)


def test_cli_data_dir_that_cannot_be_created_is_a_local_io_error(tiny: Tiny, mirror_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    code, _, stderr = _cli("--data-dir", str(tmp_path / "file" / "data"), "--mirror", str(mirror_dir))
    assert code == 6 and "creating" in one_error_line(stderr)


def test_terminal_progress_bars_render(tiny: Tiny) -> None:
    from rich.console import Console

    from mnist_cli.cli.progress import DownloadReporter

    buffer = io.StringIO()
    reporter = DownloadReporter(Console(file=buffer, force_terminal=True, width=100))
    assert not reporter.plain
    with reporter.live():
        reporter(dl.FileStarted(TRAIN_IMAGES, "http://m/", 2_000_000))
        reporter(dl.FileProgress(TRAIN_IMAGES, 1_000_000, 2_000_000))
        reporter(dl.MirrorFailed(TRAIN_IMAGES, "http://m/", "transfer broke [x]", retry_in=1.0))
        reporter(dl.FileStarted(TRAIN_IMAGES, "http://m/", 2_000_000, offset=1_000_000))
        reporter(dl.FileDone(TRAIN_IMAGES, "downloaded", "http://m/", 2_000_000, "0" * 64))
    shown = buffer.getvalue()
    assert TRAIN_IMAGES in shown and "2.0/2.0 MB" in shown and "transfer broke [x]; retrying in 1 s" in shown


def test_command_line_does_not_import_tensorflow() -> None:
    code = "import sys, mnist_cli.cli, mnist_cli.data.download; print('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# Real Fashion-MNIST (Debian's re-compressed copy) -------------------------------

FASHION = "fashion-mnist"


def _fashion_files(fashion_mnist_dir: Path) -> dict[str, bytes]:
    return {name: (fashion_mnist_dir / name).read_bytes() for name in NAMES}


def _assert_fashion(folder: Path, fashion_mnist_dir: Path) -> None:
    for name in NAMES:
        assert (folder / name).read_bytes() == (fashion_mnist_dir / name).read_bytes()


def test_real_fashion_from_directory_mirror_then_skip(fashion_mnist_dir: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    result = dl.download(FASHION, tmp_path, mirrors=[str(fashion_mnist_dir)])
    first = time.monotonic() - started
    assert [item.verified_by for item in result.files] == ["decoded_sha256"] * 4
    _assert_fashion(tmp_path / FASHION, fashion_mnist_dir)
    started = time.monotonic()
    again = dl.download(FASHION, tmp_path, mirrors=[str(fashion_mnist_dir)])
    skip = time.monotonic() - started
    assert [item.status for item in again.files] == ["skipped"] * 4
    assert skip < first / 5, (first, skip)  # the manifest spares the re-hash


def test_real_fashion_over_loopback_http_with_a_dropped_connection(fashion_mnist_dir: Path, tmp_path: Path) -> None:
    with serve_mirror(_fashion_files(fashion_mnist_dir)) as state:
        state.plan[("good", TRAIN_IMAGES)] = ["drop", "ok"]
        result = dl.download(FASHION, tmp_path, mirrors=[f"http://127.0.0.1:{dead_port()}/", state.url()])
        assert [item.status for item in result.files] == ["downloaded"] * 4
        assert state.gets(TRAIN_IMAGES)[1].range is not None
    _assert_fashion(tmp_path / FASHION, fashion_mnist_dir)


def test_real_fashion_tampered_copy_is_refused(fashion_mnist_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in NAMES:
        (copy / name).symlink_to(fashion_mnist_dir / name)
    content = bytearray((fashion_mnist_dir / TRAIN_LABELS).read_bytes())
    content[len(content) // 2] ^= 0x01
    (copy / TRAIN_LABELS).unlink()
    (copy / TRAIN_LABELS).write_bytes(bytes(content))
    code, stdout, stderr = _cli("--dataset", FASHION, "--data-dir", str(tmp_path / "data"), "--mirror", str(copy))
    assert code == 5 and stdout == ""
    line = one_error_line(stderr)
    assert TRAIN_LABELS in line and str(copy.resolve()) in line
    folder = tmp_path / "data" / FASHION
    assert not (folder / TRAIN_LABELS).exists() and not list(folder.glob(".*.part"))
    assert (folder / TRAIN_IMAGES).exists()  # verified before the bad file; kept


@pytest.mark.slow  # the real Fashion-MNIST, several download processes
def test_real_fashion_two_processes_download_each_file_once(fashion_mnist_dir: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "mnist_cli", "download", "--dataset", FASHION, "--data-dir", str(tmp_path)]
    command += ["--mirror", str(fashion_mnist_dir), "--json", "--quiet"]
    env = {key: value for key, value in os.environ.items() if key != "MNIST_MIRROR"}
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for _ in range(2)]
    outputs = [process.communicate(timeout=60) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    statuses = [[item["status"] for item in json.loads(out)["files"]] for out, _ in outputs]
    for index in range(4):
        assert [run[index] for run in statuses].count("downloaded") == 1
    _assert_fashion(tmp_path / FASHION, fashion_mnist_dir)


@pytest.mark.slow  # the real Fashion-MNIST, several download processes
def test_real_fashion_killed_process_leaves_no_final_file_and_resumes(fashion_mnist_dir: Path, tmp_path: Path) -> None:
    with serve_mirror(_fashion_files(fashion_mnist_dir)) as state:
        state.throttle = 0.002
        command = [sys.executable, "-m", "mnist_cli", "download", "--dataset", FASHION, "--data-dir", str(tmp_path)]
        process = subprocess.Popen([*command, "--mirror", state.url(), "--quiet"])
        deadline = time.monotonic() + 120  # generous: CI machines are busy
        while state.sent < 2_000_000 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        folder = tmp_path / FASHION
        assert not (folder / TRAIN_IMAGES).exists()
        assert (folder / f".{TRAIN_IMAGES}.part").stat().st_size > 0
        state.throttle = 0.0
        result = dl.download(FASHION, tmp_path, mirrors=[state.url()])
        assert state.gets(TRAIN_IMAGES)[-1].range is not None
        assert result.files[0].status == "downloaded"
    _assert_fashion(tmp_path / FASHION, fashion_mnist_dir)


def test_real_mnist_10k_subset_is_refused_by_download_but_used_by_ensure_dataset(
    real_mnist_dir: Path, tmp_path: Path
) -> None:
    # The 10k training subset is not the canonical file, and MNIST train-images has only a gz digest.
    with pytest.raises(IntegrityError, match="only the original .gz verifies"):
        dl.download("mnist", tmp_path / "a", mirrors=[str(real_mnist_dir)], only=[TRAIN_IMAGES])
    # The official test set, re-gzipped, verifies by its decoded digest.
    result = dl.download("mnist", tmp_path / "a", mirrors=[str(real_mnist_dir)], only=[TEST_IMAGES, TEST_LABELS])
    assert [item.verified_by for item in result.files] == ["decoded_sha256"] * 2
    folder = tmp_path / "b" / "mnist"
    folder.mkdir(parents=True)
    for name in NAMES:
        (folder / name).symlink_to(real_mnist_dir / name)
    assert dl.ensure_dataset("mnist", tmp_path / "b", mirrors=[f"http://127.0.0.1:{dead_port()}/"]) == folder


# Your own files, and failures that read well ------------------------------------


def test_a_local_folder_of_other_files_says_they_differ_and_no_verify_takes_them(tiny: Tiny, tmp_path: Path) -> None:
    from helpers import write_tiny_dataset

    own = write_tiny_dataset(tmp_path / "own", n_train=50, n_test=20)
    code, _, stderr = _cli("--data-dir", str(tmp_path / "data"), "--mirror", str(own))
    assert code == 5
    line = one_error_line(stderr)
    assert "differs from the published file" in line and "damaged" not in stderr
    assert f"mnist download --mirror {own} --no-verify" in stderr
    assert not (tmp_path / "data").exists()

    code, stdout, _ = _cli("--data-dir", str(tmp_path / "data"), "--mirror", str(own), "--no-verify", "--json")
    assert code == 0
    assert {item["verified_by"] for item in json.loads(stdout)["files"]} == {dl.UNVERIFIED}
    manifest = json.loads((tmp_path / "data" / "mnist" / dl.MANIFEST_NAME).read_text())
    assert {entry["verified_by"] for entry in manifest.values()} == {dl.UNVERIFIED}

    # A later download (from the genuine mirror) keeps the files the user brought on purpose.
    before = {name: (tmp_path / "data" / "mnist" / name).read_bytes() for name in NAMES}
    code, stdout, _ = _cli("--data-dir", str(tmp_path / "data"), "--mirror", str(own))
    assert code == 0 and stdout.count("skipped") == 4
    assert before == {name: (tmp_path / "data" / "mnist" / name).read_bytes() for name in NAMES}


@pytest.mark.parametrize("where", ["folder", "http"])
def test_a_mismatch_is_said_once(tiny: Tiny, server: MirrorServer, tmp_path: Path, where: str) -> None:
    # The reason the error line gives is not also printed as a progress line just before it.
    from helpers import write_tiny_dataset

    server.modes["bad"] = "tampered"
    mirror = str(write_tiny_dataset(tmp_path / "own", n_train=50, n_test=20)) if where == "folder" else server.url("bad")
    code, _, stderr = _cli("--data-dir", str(tmp_path / "data"), "--mirror", mirror)
    assert code == 5
    assert "sha256 mismatch" in one_error_line(stderr)
    assert stderr.count("sha256 mismatch") == 1, stderr


def test_a_failed_last_mirror_is_named_when_the_error_leaves_it_out(tiny: Tiny, server: MirrorServer, tmp_path: Path) -> None:
    server.modes["bad"] = "tampered"
    dead = f"http://127.0.0.1:{dead_port()}/"
    code, _, stderr = _cli("--data-dir", str(tmp_path / "data"), "-m", server.url("bad"), "-m", dead)
    assert code == 5 and "failed verification: sha256 mismatch" in one_error_line(stderr)
    # The tampered mirror's reason is in the error; the dead one's is said on its own line.
    assert f"{dead}: connection refused" in stderr and stderr.count("sha256 mismatch") == 2


def test_no_verify_still_checks_the_idx_structure(tiny: Tiny, tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    for name in NAMES:
        (junk / name).write_bytes(gzip.compress(b"not an idx file"))
    code, _, stderr = _cli("--data-dir", str(tmp_path / "data"), "--mirror", str(junk), "--no-verify")
    assert code == 5 and "not a usable IDX file" in one_error_line(stderr)
    assert not (tmp_path / "data").exists()


def test_offline_failure_is_one_line_per_mirror_then_error_and_hint(tiny: Tiny, tmp_path: Path) -> None:
    dead = [f"http://127.0.0.1:{dead_port()}/" for _ in range(3)]
    code, _, stderr = _cli("--data-dir", str(tmp_path / "typo"), *[arg for url in dead for arg in ("--mirror", url)])
    assert code == 4
    lines = stderr.strip().splitlines()
    assert len(lines) <= len(set(dead)) + 2, stderr
    assert lines[-2].startswith("error: ") and lines[-1].startswith("hint: ")
    assert len(lines[-2]) < 200
    assert not (tmp_path / "typo").exists()  # a mistyped --data-dir is not created
