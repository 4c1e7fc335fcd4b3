"""`mnist download` under faults: kill -9 at random moments, a full disk, hostile networks, racing processes.

The loopback mirror and the tiny data set come from mirror.py (the `tiny` fixture, conftest.py); subprocesses
run the real `mnist` entry point with that tiny set registered (see helpers.tiny_registry_command).
"""

from __future__ import annotations

import errno
import http.server
import json
import random
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from helpers import clean_env, fill, invoke, one_error_line, tiny_registry_command, tmpfs
from mirror import NAMES, OCTETS, MirrorServer, Tiny, make_tiny, mirror_handler, serve_mirror

from mnist_cli.data import download as dl
from mnist_cli.data.download import partfile
from mnist_cli.data import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS
from mnist_cli.core.errors import DOWNLOAD, LOCAL_IO

QUICK = dl.Settings(timeout=0.3, retries=2, backoff=0.0, sleep=lambda seconds: None, lock_timeout=20.0)


@pytest.fixture
def download_settings() -> dl.Settings:
    """Shorter timeouts than the other download tests': the hostile mirrors here cost each one."""
    return QUICK


def _genuine_or_absent(tiny: Tiny, folder: Path) -> list[str]:
    """Names of the files under their final names; assert each is complete and genuine."""
    present = []
    for name in NAMES:
        path = folder / name
        if path.exists():
            assert path.read_bytes() == tiny.gz[name], f"{name} is under its final name but not genuine"
            present.append(name)
    manifest = folder / dl.MANIFEST_NAME
    if manifest.exists():
        json.loads(manifest.read_text())  # replaced atomically: never half-written
    return present


def _assert_complete(tiny: Tiny, folder: Path) -> None:
    assert _genuine_or_absent(tiny, folder) == list(NAMES)
    leftovers = sorted(p.name for p in folder.iterdir() if p.name not in NAMES and p.name not in (dl.LOCK_NAME, dl.MANIFEST_NAME))
    assert leftovers == []


# kill -9 ---------------------------------------------------------------------------------


def _still_to_send(tiny: Tiny, folder: Path) -> int:
    """Bytes a download into `folder` still has to fetch (part files are resumed)."""
    left = 0
    for name in NAMES:
        if not (folder / name).exists():
            part = folder / f".{name}.part"
            left += len(tiny.gz[name]) - (part.stat().st_size if part.exists() else 0)
    return max(left, 0)


@pytest.mark.slow
def test_kill_9_at_random_moments_never_leaves_an_unverified_file_and_a_new_download_finishes(tmp_path: Path) -> None:
    tiny = make_tiny(())
    launch = tiny_registry_command(tiny.spec, tmp_path)
    env = clean_env()
    rng = random.Random(6)
    phases: dict[str, int] = {}
    kills = finished = sets = 0
    with serve_mirror(tiny.gz) as server:
        server.throttle = 0.005  # a few ms per 64 kB, so a kill can land inside a transfer

        def command(folder: Path) -> list[str]:
            return [*launch, "download", "--data-dir", str(folder.parent), "--mirror", server.url(), "--quiet"]

        folder, kills_here = tmp_path / "set-0" / "mnist", 0
        while kills < 24:
            # The moment is chosen by progress, not by the clock, so slow and fast machines see the same spread:
            # in start-up (imports, lock, manifest), part-way through the bytes, or just after the last byte
            # (verifying, renaming, writing the manifest).
            moment = rng.choice(["start-up", "transfer", "transfer", "transfer", "after"])
            goal = rng.random() * _still_to_send(tiny, folder) if moment == "transfer" else _still_to_send(tiny, folder)
            server.sent = 0
            process = subprocess.Popen(command(folder), env=env)
            if moment == "start-up":
                time.sleep(rng.uniform(0, 0.4))
            else:
                deadline = time.monotonic() + 30
                while process.poll() is None and server.sent < goal and time.monotonic() < deadline:
                    time.sleep(0.001)
                if moment == "after":
                    time.sleep(rng.uniform(0, 0.05))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
                kills_here += 1
            else:
                finished += 1
            process.wait(10)
            present = _genuine_or_absent(tiny, folder) if folder.exists() else []
            parts = list(folder.glob(".*.part")) if folder.exists() else []
            phase = f"{len(present)} final" + (" + part" if parts else "")
            phases[phase] = phases.get(phase, 0) + 1
            if len(present) == len(NAMES) or kills_here == 3:
                # A new download after the kills finishes, resuming what it can.
                done = subprocess.run(command(folder), env=env, timeout=60, stdout=subprocess.DEVNULL)
                assert done.returncode == 0
                _assert_complete(tiny, folder)
                sets += 1
                folder, kills_here = tmp_path / f"set-{sets}" / "mnist", 0
        if kills_here:
            assert subprocess.run(command(folder), env=env, timeout=60, stdout=subprocess.DEVNULL).returncode == 0
            _assert_complete(tiny, folder)
            sets += 1
    assert len(phases) >= 3, phases  # the kills landed at different stages
    print(f"download kill -9: {kills} kills ({finished} runs finished first), {sets} data sets completed after kills; states seen {phases}")


@pytest.mark.parametrize(
    "name",
    [TRAIN_IMAGES, *(pytest.param(name, marks=pytest.mark.slow) for name in (TEST_LABELS, dl.MANIFEST_NAME))],
    ids=["before-renaming-a-verified-file", "before-renaming-the-last-file", "while-writing-the-manifest"],
)
def test_kill_9_at_the_riskiest_moment_then_a_new_download_finishes_clean(tmp_path: Path, name: str) -> None:
    tiny = make_tiny(())
    launch = tiny_registry_command(tiny.spec, tmp_path)
    with serve_mirror(tiny.gz) as server:
        command = [*launch, "download", "--data-dir", str(tmp_path), "--mirror", server.url(), "--quiet"]
        killed = subprocess.run(command, env=clean_env(MNIST_TEST_KILL_AT_REPLACE=name), timeout=60)
        assert killed.returncode == -signal.SIGKILL
        folder = tmp_path / "mnist"
        present = _genuine_or_absent(tiny, folder)
        assert name not in present
        done = subprocess.run([*command, "--json"], env=clean_env(), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        statuses = {item["name"]: item["status"] for item in json.loads(done.stdout)["files"]}
        assert all(statuses[n] in ("verified", "skipped") for n in present)
        _assert_complete(tiny, folder)


def test_a_waiting_download_takes_over_when_the_lock_holder_is_killed(tmp_path: Path) -> None:
    tiny = make_tiny(())
    launch = tiny_registry_command(tiny.spec, tmp_path)
    env = clean_env()
    with serve_mirror(tiny.gz) as server:
        # The mirror answers nobody until the holder is killed, so the holder keeps the lock
        # however long the waiter takes to start on a busy machine.
        server.modes["good"] = "held"
        command = [*launch, "download", "--data-dir", str(tmp_path), "--mirror", server.url()]
        holder = subprocess.Popen([*command, "--quiet"], env=env)
        while not server.requests:
            time.sleep(0.005)
        waiter = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        # However busy the machine, the holder is killed only once the waiter says it waits.
        said = []
        for line in waiter.stderr:
            said.append(line)
            if "waiting for another mnist process" in line:
                break
        assert waiter.poll() is None, "".join(said)  # waiting for the lock, not failing
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        server.modes["good"] = "ok"
        server.release.set()
        stdout, rest = waiter.communicate(timeout=120)
    stderr = "".join(said) + rest
    assert waiter.returncode == 0, stderr
    assert "waiting for another mnist process" in stderr
    _assert_complete(tiny, tmp_path / "mnist")


# A full disk ---------------------------------------------------------------------------------


@pytest.mark.slow  # a real tmpfs, three download processes
def test_full_disk_on_a_real_small_filesystem_keeps_the_verified_files(tmp_path: Path) -> None:
    tiny = make_tiny(())
    launch = tiny_registry_command(tiny.spec, tmp_path)
    total = sum(len(content) for content in tiny.gz.values())
    with tmpfs(tmp_path / "disk", "1m") as disk, serve_mirror(tiny.gz) as server:
        assert total < 1 << 20 < total + len(tiny.gz[TRAIN_IMAGES])  # a set fits, a second train-images does not
        command = [*launch, "download", "--data-dir", str(disk), "--mirror", server.url()]
        assert subprocess.run([*command, "--quiet"], env=clean_env(), timeout=60).returncode == 0
        folder = disk / "mnist"
        manifest = (folder / dl.MANIFEST_NAME).read_bytes()
        # --force fetches each file again beside the verified copy, which the disk cannot hold.
        done = subprocess.run([*command, "--force"], env=clean_env(), capture_output=True, text=True, timeout=60)
        assert done.returncode == LOCAL_IO
        assert "no space left on the device" in one_error_line(done.stderr) and done.stdout == ""
        _assert_complete(tiny, folder)  # the verified copies stay, the part file is gone
        assert (folder / dl.MANIFEST_NAME).read_bytes() == manifest
        again = subprocess.run([*command, "--json"], env=clean_env(), capture_output=True, text=True, timeout=60)
        assert [f["status"] for f in json.loads(again.stdout)["files"]] == ["skipped"] * 4

        # A disk that fills while the manifest is written: the files are in place, the manifest is not damaged.
        (folder / dl.MANIFEST_NAME).unlink()
        filler = fill(disk)
        done = subprocess.run(command, env=clean_env(), capture_output=True, text=True, timeout=60)
        assert done.returncode == LOCAL_IO and "no space left" in one_error_line(done.stderr)
        _assert_complete(tiny, folder)
        filler.unlink()
        again = subprocess.run([*command, "--json"], env=clean_env(), capture_output=True, text=True, timeout=60)
        assert again.returncode == 0 and [f["status"] for f in json.loads(again.stdout)["files"]] == ["verified"] * 4


class _FillingDisk:
    """A part file on a disk with `room` bytes left: writes past it fail with ENOSPC."""

    room = 0

    def __init__(self, handle) -> None:  # noqa: ANN001
        self.handle = handle

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.handle, name)

    def __enter__(self) -> _FillingDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    def write(self, chunk: bytes) -> int:
        if len(chunk) > _FillingDisk.room:
            self.handle.write(chunk[: _FillingDisk.room])
            _FillingDisk.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        _FillingDisk.room -= len(chunk)
        return self.handle.write(chunk)


def test_full_disk_injected_mid_file_exits_6_and_keeps_earlier_files(
    tiny: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve_mirror(tiny.gz) as server:
        assert invoke("download", "--data-dir", str(tmp_path), "--mirror", server.url(), "--quiet").exit_code == 0
        folder = tmp_path / "mnist"
        (folder / TEST_IMAGES).unlink()
        (folder / TEST_LABELS).unlink()
        real_open = partfile.open_part
        monkeypatch.setattr(partfile, "open_part", lambda part, append: _FillingDisk(real_open(part, append=append)))
        _FillingDisk.room = 50_000  # the disk fills half-way through test-images
        result = invoke("download", "--data-dir", str(tmp_path), "--mirror", server.url())
        assert result.exit_code == LOCAL_IO and result.stdout == ""
        assert "no space left on the device while writing" in one_error_line(result.stderr)
        assert _genuine_or_absent(tiny, folder) == [TRAIN_IMAGES, TRAIN_LABELS]
        assert not list(folder.glob(".*.part"))  # the space it took is given back
        _FillingDisk.room = 1 << 30
        assert invoke("download", "--data-dir", str(tmp_path), "--mirror", server.url(), "--quiet").exit_code == 0
    _assert_complete(tiny, folder)


# Hostile networks ------------------------------------------------------------------------


def _reset(connection: socket.socket) -> None:
    # SO_LINGER with a zero timeout makes close() send RST: a connection reset, not a clean end.
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


def _hostile_handler(state: MirrorServer) -> type[http.server.BaseHTTPRequestHandler]:
    base = mirror_handler(state)

    class Hostile(base):  # type: ignore[misc, valid-type]
        def do_GET(self) -> None:  # noqa: N802
            mirror, _, name = self.path.strip("/").partition("/")
            content = state.files[name]
            mode = state.modes.get(mirror, "ok")
            try:
                if mode == "reset-at-once":
                    _reset(self.connection)
                elif mode == "reset-mid-body":
                    self._head(len(content))
                    self.wfile.write(content[: len(content) // 3])
                    _reset(self.connection)
                elif mode == "no-answer":
                    state.release.wait(10)
                elif mode == "not-http":
                    self.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n")
                elif mode == "garbage":
                    self._body(random.Random(1).randbytes(len(content)))
                elif mode == "endless":
                    self.send_response(200)
                    self.send_header("Content-Type", OCTETS)
                    self.end_headers()
                    self.wfile.write(b"\x1f\x8b")
                    junk = random.Random(2).randbytes(1 << 16)
                    while True:
                        self.wfile.write(junk)
                elif mode == "drip":
                    self._head(len(content))
                    give_up = time.monotonic() + 10  # so that a client without a speed limit fails, not hangs
                    for start in range(0, len(content), 16):
                        if time.monotonic() > give_up:
                            break
                        self.wfile.write(content[start : start + 16])
                        time.sleep(0.05)
                else:
                    super().do_GET()
                    return
            except OSError:
                pass  # the client gave up: that is the point
            self.close_connection = True

        def _head(self, length: int) -> None:
            self.send_response(200)
            self.send_header("Content-Type", OCTETS)
            self.send_header("Content-Length", str(length))
            self.end_headers()

    return Hostile


HOSTILE = [
    ("reset-at-once", "no valid answer"),
    ("reset-mid-body", "transfer broke"),
    ("no-answer", "timed out"),
    ("not-http", "no valid answer"),
    ("garbage", "not gzip"),
    ("endless", "far more than the file has"),
    ("drip", "too slow"),
]


@pytest.mark.parametrize(("mode", "says"), HOSTILE, ids=[mode for mode, _ in HOSTILE])
def test_hostile_mirror_costs_bounded_time_falls_through_and_fails_clearly_alone(
    tiny: Tiny, tmp_path: Path, mode: str, says: str
) -> None:
    with serve_mirror(tiny.gz, _hostile_handler) as hostile, serve_mirror(tiny.gz) as good:
        hostile.modes["bad"] = mode
        started = time.monotonic()
        events: list[dl.Event] = []
        result = dl.download("mnist", tmp_path / "a", mirrors=[hostile.url("bad"), good.url()], only=[TRAIN_IMAGES], on_event=events.append)
        assert time.monotonic() - started < 8
        assert result.files[0].source == good.url()
        reasons = [event.reason for event in events if isinstance(event, dl.MirrorFailed)]
        assert reasons and says in reasons[-1], reasons
        assert (tmp_path / "a" / "mnist" / TRAIN_IMAGES).read_bytes() == tiny.gz[TRAIN_IMAGES]

        started = time.monotonic()
        outcome = invoke("download", "--data-dir", str(tmp_path / "b"), "--mirror", hostile.url("bad"))
        assert time.monotonic() - started < 8
        assert outcome.exit_code == DOWNLOAD and outcome.stdout == ""
        line = one_error_line(outcome.stderr)
        assert says in line and hostile.url("bad") in line and TRAIN_IMAGES in line
        assert not (tmp_path / "b" / "mnist" / TRAIN_IMAGES).exists()
