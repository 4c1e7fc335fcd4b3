"""Following a run: a checkpoint being written is never loaded; versions come and go; the feed carries the history."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from mnist_cli.inference import loading
from mnist_cli.runs import checkpoint_state, layout
from mnist_cli.serving.follow import Feed, Follower, newest_complete


def _state_file(directory: Path, name: str) -> None:
    """Replace the state file atomically, as TensorFlow's CheckpointManager does."""
    temporary = directory / ".checkpoint.tmp"
    temporary.write_text(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
    temporary.replace(directory / checkpoint_state.CHECKPOINT_STATE)


class _Versions:
    """What the server would hold: install and retire, recorded."""

    def __init__(self) -> None:
        self.held: dict[int, Any] = {}
        self.current: int | None = None
        self.retired: list[int] = []

    def install(self, version: int, loaded: Any) -> None:
        self.held[version] = loaded
        self.current = version

    def retire(self, version: int) -> None:
        self.retired.append(version)
        del self.held[version]


@pytest.fixture
def growing_run(tiny_run: Path, tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """(a run holding only the first of tiny_run's checkpoints, tiny_run's checkpoint folder, their names)."""
    source = tiny_run / layout.CHECKPOINTS_DIR
    names = checkpoint_state.checkpoints_in(source)
    assert len(names) >= 2, names
    run = tmp_path / "growing"
    (run / layout.CHECKPOINTS_DIR).mkdir(parents=True)
    shutil.copy(tiny_run / "config.json", run / "config.json")
    for path in source.glob(f"{names[0]}.*"):
        shutil.copy(path, run / layout.CHECKPOINTS_DIR / path.name)
    _state_file(run / layout.CHECKPOINTS_DIR, names[0])
    return run, source, names


def _step(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


def test_a_checkpoint_being_written_is_never_loaded(growing_run: tuple[Path, Path, list[str]]) -> None:
    run, source, names = growing_run
    first, second = names[0], names[-1]
    versions, feed = _Versions(), Feed()
    follower = Follower(run, feed, load=loading.load, install=versions.install, retire=versions.retire)
    follower.poll()
    assert versions.current == _step(first)
    target = run / layout.CHECKPOINTS_DIR
    # The new checkpoint's files arrive a slice at a time, the index last, as a slow disk writes them.
    for path in sorted(source.glob(f"{second}.*"), key=lambda p: p.suffix == ".index"):
        data = path.read_bytes()
        with open(target / path.name, "wb") as out:
            for begin in range(0, len(data), max(1, len(data) // 4)):
                out.write(data[begin : begin + max(1, len(data) // 4)])
                out.flush()
                follower.poll()
                assert versions.current == _step(first), f"loaded while {path.name} was at {begin} of {len(data)} bytes"
    follower.poll()
    assert versions.current == _step(first), "loaded before the state file named it"
    _state_file(target, second)
    follower.poll()
    assert versions.current == _step(second)
    assert [note.version for note in feed.view.versions] == [_step(first), _step(second)] and feed.view.current == _step(second)


def test_a_state_file_naming_a_missing_or_damaged_checkpoint_keeps_the_previous_version(growing_run: tuple[Path, Path, list[str]]) -> None:
    run, source, names = growing_run
    versions, feed = _Versions(), Feed()
    follower = Follower(run, feed, load=loading.load, install=versions.install, retire=versions.retire)
    follower.poll()
    target = run / layout.CHECKPOINTS_DIR
    _state_file(target, "ckpt-999")  # no files at all
    follower.poll()
    assert newest_complete(run) is None and versions.current == _step(names[0])
    # An index with a truncated data file: refused with a reason, the server stays where it was.
    (target / "ckpt-1000.index").write_bytes((source / f"{names[-1]}.index").read_bytes())
    (target / "ckpt-1000.data-00000-of-00001").write_bytes(b"\0" * 10)
    _state_file(target, "ckpt-1000")
    follower.poll()
    assert versions.current == _step(names[0])
    assert feed.view.problem and "ckpt-1000" in feed.view.problem


class _FakeSource:
    def __init__(self, step: int) -> None:
        self.step, self.epoch, self.partial, self.path = step, step // 10, False, f"ckpt-{step}"


class _FakeLoaded:
    def __init__(self, prefix: Path) -> None:
        self.source = _FakeSource(int(prefix.name.rsplit("-", 1)[1]))


def test_only_the_newest_versions_stay_loaded_and_the_history_reaches_the_feed(tmp_path: Path) -> None:
    run = tmp_path / "run"
    checkpoints = run / layout.CHECKPOINTS_DIR
    checkpoints.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    versions, feed = _Versions(), Feed()
    follower = Follower(run, feed, load=_FakeLoaded, install=versions.install, retire=versions.retire, keep=2)
    entry = {"train_loss": 0.5, "train_accuracy": 0.8, "val_loss": 0.4, "val_accuracy": 0.85, "lr": 0.01, "seconds": 1.0, "samples": 100, "samples_per_second": 100.0}
    history: list[dict[str, Any]] = []
    for epoch in range(1, 6):
        (checkpoints / f"ckpt-{epoch * 10}.index").write_bytes(b"")
        _state_file(checkpoints, f"ckpt-{epoch * 10}")
        history.append({"epoch": epoch, **entry})
        (run / layout.HISTORY_FILE).write_text(json.dumps(history))
        follower.poll()
        assert versions.current == epoch * 10 and len(feed.view.history) == epoch
    assert sorted(versions.held) == [40, 50] and versions.retired == [10, 20, 30]
    assert [note.version for note in feed.view.versions] == [40, 50]
    # A damaged history is reported, and the curves keep what they had.
    (run / layout.HISTORY_FILE).write_text('[{"epoch": 1, "train_loss": "nan"}]')
    follower.poll()
    assert len(feed.view.history) == 5 and "history.json" in (feed.view.problem or "")


def _png(label: int) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    from helpers import make_learnable_images

    image = make_learnable_images(np.array([label], np.uint8), np.random.default_rng(label))[0]
    buffer = io.BytesIO()
    Image.fromarray(255 - image).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.slow
def test_no_request_fails_while_versions_are_swapped_during_a_live_run(tmp_path: Path) -> None:
    import subprocess
    import sys
    import threading
    import time

    from conftest import write_tiny_dataset
    from serving import REPO, ServerProcess

    # Enough steps per epoch (720 of 8 images) that the run lasts while the client keeps asking.
    write_tiny_dataset(tmp_path / "data" / "mnist", n_train=6400, n_test=100)
    run = tmp_path / "live"
    run.mkdir()
    server = ServerProcess(str(run), "--follow", "--port", "0", "--quiet")
    environment = {**__import__("os").environ, "PYTHONPATH": str(REPO)}
    train = subprocess.Popen(
        [sys.executable, "-m", "mnist_cli", "train", "--data-dir", str(tmp_path / "data"), "--run-dir", str(run),
         "--epochs", "6", "--batch-size", "8", "--hidden", "32", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment,
    )  # fmt: skip
    try:
        server.start()
        errors: list[str] = []
        versions_seen: set[int] = set()
        answered = 0
        picture = _png(3)
        body = {"instances": [[[0] * 28] * 28]}
        with server.client() as client:
            finished_at = None
            while finished_at is None or time.monotonic() - finished_at < 1.0:
                for method, path, kwargs in (
                    ("POST", "/predict", {"content": picture, "headers": {"Content-Type": "image/png"}}),
                    ("POST", "/v1/models/mnist:predict", {"json": body}),
                    ("GET", "/v1/models/mnist", {}),
                ):
                    response = client.request(method, path, **kwargs)
                    answered += 1
                    if response.status_code != 200:
                        errors.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
                    elif path == "/v1/models/mnist":
                        versions_seen.update(int(item["version"]) for item in response.json()["model_version_status"])
                threading.Event().wait(0.05)  # a client's pace (every 50 ms), not a wait for the server
                if finished_at is None and train.poll() is not None:
                    finished_at = time.monotonic()
        assert train.wait() == 0, train.stderr.read() if train.stderr else ""
        assert errors == [], errors[:5]
        assert len(versions_seen) >= 2 and answered > 30, (versions_seen, answered)
    finally:
        if train.poll() is None:
            train.kill()
        assert server.stop() == 0, server.stderr[-10:]


@pytest.mark.slow
def test_train_serve_prints_the_address_and_ctrl_c_stops_both_with_exit_130(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    import httpx

    from conftest import write_tiny_dataset
    from serving import REPO

    write_tiny_dataset(tmp_path / "data" / "mnist", n_train=6400, n_test=100)
    run = tmp_path / "served"
    train = subprocess.Popen(
        [sys.executable, "-m", "mnist_cli", "train", "--data-dir", str(tmp_path / "data"), "--run-dir", str(run),
         "--epochs", "200", "--batch-size", "8", "--hidden", "32", "--serve", "--port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert train.stderr is not None
        url = next(line.split()[4] for line in train.stderr if "watch it learn at" in line)
        status = httpx.get(url + "v1/models/mnist", timeout=60).json()
        assert status["model_version_status"][0]["state"] == "AVAILABLE"
        train.send_signal(signal.SIGINT)
        rest = train.stderr.read()
        assert train.wait(timeout=120) == 130, rest
        assert "interrupted" in rest and "Traceback" not in rest
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "healthz", timeout=5)  # the page's server went with the training
    finally:
        if train.poll() is None:
            train.kill()
