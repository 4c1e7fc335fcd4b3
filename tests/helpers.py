"""Plain helpers the tests share: tiny data made in the test, running `mnist`, its errors, small filesystems.

Fixtures live in conftest.py; the loopback download mirror in mirror.py, the test server in
serving.py and the pictures a person makes in pictures.py. No test imports another test module.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mnist_cli import data
from mnist_cli.core.config import CONFIG_FILE, TrainConfig
from mnist_cli.data import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS, write_idx

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "mnist_cli"
IN_CI = os.environ.get("CI", "").lower() == "true"
COMMANDS = ("download", "train", "evaluate", "predict", "show", "runs", "export", "serve", "tune")


# Tiny data sets ------------------------------------------------------------------------------


def make_learnable_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 28x28 images where each class is a bright bar at its own place, plus noise."""
    images = rng.integers(0, 40, size=(len(labels), 28, 28), dtype=np.uint8)
    for index, label in enumerate(labels):
        row = 3 + 2 * int(label)
        images[index, row : row + 2, 4:24] = 255
    return images


def write_tiny_dataset(directory: Path, *, n_train: int = 640, n_test: int = 200, seed: int = 0) -> Path:
    """Write four tiny, learnable IDX files into `directory` and return it.

    640 images leave 576 for training after the default 10% validation split: 18 whole
    batches of 32, so a training compiles its steps once, with no remainder batch (tests
    about the remainder ask for 600).
    """
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    train_labels = rng.integers(0, 10, size=n_train, dtype=np.uint8)
    test_labels = rng.integers(0, 10, size=n_test, dtype=np.uint8)
    write_idx(directory / TRAIN_IMAGES, make_learnable_images(train_labels, rng))
    write_idx(directory / TRAIN_LABELS, train_labels)
    write_idx(directory / TEST_IMAGES, make_learnable_images(test_labels, rng))
    write_idx(directory / TEST_LABELS, test_labels)
    return directory


def bar_digit(label: int) -> np.ndarray:
    """A clean digit of the tiny data set (a bar at row 3 + 2 * label): 28x28, light on black, as preprocessing keeps it."""
    image = np.zeros((28, 28), np.uint8)
    image[3 + 2 * label : 5 + 2 * label, 4:24] = 255
    return image


# Run directories made by hand ----------------------------------------------------------------


def history_entry(epoch: int, val_accuracy: float | None, seconds: float = 10.0) -> dict[str, Any]:
    """One epoch of a history.json as the trainer writes it."""
    return {
        "epoch": epoch,
        "train_loss": 0.5 / epoch,
        "train_accuracy": 0.8,
        "val_loss": 0.4,
        "val_accuracy": val_accuracy,
        "lr": 0.01,
        "seconds": seconds,
        "samples": 50_000,
        "samples_per_second": 5000.0,
    }


def make_run(
    root: Path,
    name: str,
    *,
    config: TrainConfig | None = None,
    val: list[float | None] | None = None,
    test_accuracy: float | None = None,
    started: str | None = None,
    mtime: float | None = None,
) -> Path:
    """A run directory as the trainer writes it: config, history per epoch, result when finished."""
    from mnist_cli.runs.layout import HISTORY_FILE, RESULT_FILE
    run_dir = root / name
    run_dir.mkdir(parents=True)
    (config or TrainConfig()).save(run_dir)
    if val is not None:
        history = [history_entry(i + 1, v) for i, v in enumerate(val)]
        (run_dir / HISTORY_FILE).write_text(json.dumps(history))
    if test_accuracy is not None:
        best = max(v for v in val or [0.0] if v is not None)
        result = {
            "run_dir": str(run_dir), "dataset": "mnist", "model": "mlp", "epochs": len(val or []),
            "train_loss": 0.1, "train_accuracy": 0.97, "val_accuracy": (val or [None])[-1], "val_loss": 0.1,
            "test_accuracy": test_accuracy, "test_loss": 0.1, "best_checkpoint": str(run_dir / "best"),
            "best_epoch": 1, "best_val_accuracy": best, "seconds": 123.0, "samples_per_second": 5000.0,
            "started": started or "2025-03-01T12:00:00+00:00", "finished": "2025-03-01T12:02:03+00:00",
        }  # fmt: skip
        (run_dir / RESULT_FILE).write_text(json.dumps(result))
    if mtime is not None:
        os.utime(run_dir / CONFIG_FILE, (mtime, mtime))
    return run_dir



# Running `mnist` -------------------------------------------------------------------------------


def invoke(*args: str, input: bytes | None = None, env: dict[str, str | None] | None = None) -> Any:  # noqa: A002 - click's name
    """Run `mnist ARGS` in this process (click's Result); assert no traceback escaped."""
    from typer.testing import CliRunner

    from mnist_cli.cli import app

    result = CliRunner().invoke(app, list(args), input=input, env=env)
    # A clean exit is SystemExit (or nothing); anything else escaped as a traceback.
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result


def train_cli(data_dir: Path, run_dir: Path, *options: str) -> Path:
    """Train `run_dir` on the real MNIST of `data_dir` through the CLI, quietly; assert it finished."""
    trained = invoke("train", "--data-dir", str(data_dir), "--run-dir", str(run_dir), *options, "--quiet")
    assert trained.exit_code == 0, trained.stderr
    return run_dir


def outcome(*args: str, env: dict[str, str | None] | None = None) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `mnist ARGS` run in this process, with no traceback."""
    result = invoke(*args, env=env)
    return result.exit_code, result.stdout, result.stderr


def one_error_line(stderr: str, *, hint: bool = True) -> str:
    """The single `error:` line (followed by a `hint:`), asserting there is no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    if hint:
        assert any(line.startswith("hint:") for line in stderr.splitlines()), stderr
    return lines[0]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a `mnist` subprocess: no proxies or mirror and data settings from outside."""
    drop = {"MNIST_MIRROR", "MNIST_DATA_DIR", "MNIST_RUNS_DIR", "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"}
    env = {key: value for key, value in os.environ.items() if key not in drop}
    env.update(extra)
    return env


def mnist_command() -> list[str]:
    """`python -m mnist_cli`, as a user runs it."""
    return [sys.executable, "-m", "mnist_cli"]


# The `mnist` entry point with the data-set registry's "mnist" entry replaced by a tiny one
# read from a JSON file, so a subprocess can download the test's own files (by their digests).
_LAUNCH = """
import json, os, signal, sys
from mnist_cli import data
files = json.loads(open(sys.argv[1]).read())
data.DATASETS["mnist"] = data.DatasetSpec("mnist", tuple(data.FileSpec(**f) for f in files), (), tuple("0123456789"))
kill_at = os.environ.get("MNIST_TEST_KILL_AT_REPLACE")
if kill_at:
    # SIGKILL itself just before the rename that would give a file this name: the riskiest moment.
    real_replace = os.replace
    def replace(src, dst, *args, **kwargs):
        if os.fspath(dst).endswith(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst, *args, **kwargs)
    os.replace = replace
sys.argv = ["mnist", *sys.argv[2:]]
from mnist_cli.cli import main
main()
"""


def tiny_registry_command(spec: data.DatasetSpec, folder: Path) -> list[str]:
    """A command line prefix running `mnist` with `spec` registered as the "mnist" data set."""
    path = folder / f"spec-{uuid.uuid4().hex[:8]}.json"
    files = [{"name": f.name, "size": f.size, "sha256": f.sha256, "decoded_sha256": f.decoded_sha256} for f in spec.files]
    path.write_text(json.dumps(files))
    return [sys.executable, "-c", _LAUNCH, str(path)]


# The commands' options, read from the click commands themselves ---------------------------------


@functools.cache
def command_options(command: str) -> dict[str, list[str]]:
    """Each option of a command: its long name and its other spellings."""
    from typer.main import get_command

    from mnist_cli.cli import app

    group = get_command(app)
    # Through get_command, which a lazy group answers by loading the command's module.
    loaded = group.get_command(group.make_context("mnist", ["--help"], resilient_parsing=True), command)  # type: ignore[attr-defined]
    found: dict[str, list[str]] = {}
    for param in loaded.params:
        names = [*param.opts, *getattr(param, "secondary_opts", [])]
        longs = [name for name in names if name.startswith("--")]
        if longs:
            found[longs[0]] = names
    return found


def option_names(command: str) -> set[str]:
    """Every spelling of every option of `command` (`--augment`, `--no-augment`, `-q`, ...)."""
    return {name for names in command_options(command).values() for name in names}


# The network and the disk -----------------------------------------------------------------------


def dead_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dead_url() -> str:
    """An http:// mirror URL on a loopback port nothing listens on."""
    return f"http://127.0.0.1:{dead_port()}/"


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small real filesystem at `path` (root only), so a full disk is a real ENOSPC; skips where it cannot mount."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(filesystem: Path) -> Path:
    """Fill a filesystem to the last byte with one file; return it (delete it to free the space)."""
    filler = filesystem / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for size in (1 << 16, 4096, 1):  # big blocks, then the last partial ones
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler
