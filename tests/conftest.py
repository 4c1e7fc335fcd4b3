"""Shared fixtures: tiny data sets made in the test, and the real data CI provides."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from mnist_cli.data import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS, write_idx

IN_CI = os.environ.get("CI", "").lower() == "true"


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


@pytest.fixture
def tiny_data_dir(tmp_path: Path) -> Path:
    """A --data-dir whose mnist/ holds a tiny learnable data set."""
    write_tiny_dataset(tmp_path / "data" / "mnist")
    return tmp_path / "data"


def _train_once(root: Path, *options: str, **sizes: int) -> tuple[Path, Path]:
    """(a run made by `mnist train OPTIONS` on a tiny data set of `sizes` written under `root`, its --data-dir)."""
    from typer.testing import CliRunner

    from mnist_cli.cli import app

    data_dir, run_dir = root / "data", root / "run"
    write_tiny_dataset(data_dir / "mnist", **sizes)
    result = CliRunner().invoke(app, ["train", "--data-dir", str(data_dir), "--run-dir", str(run_dir), *options, "--quiet"])
    assert result.exit_code == 0, result.output
    return run_dir, data_dir


@pytest.fixture(scope="session")
def tiny_run_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of `mnist train --epochs 2 --log-every 5` on the tiny data set, trained once per session; use `tiny_run`."""
    run_dir, _ = _train_once(tmp_path_factory.mktemp("tiny-run"), "--epochs", "2", "--log-every", "5")
    return run_dir


@pytest.fixture(scope="module")
def tiny_run(tiny_run_once: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A module's own copy of the session's tiny run (commands may cache files in a run)."""
    return Path(shutil.copytree(tiny_run_once, tmp_path_factory.mktemp("runs") / "tiny"))


@pytest.fixture(scope="session")
def finished_run_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a small run made by `mnist train` with checkpoints/ and best/, its --data-dir), once per session; use `finished_run`."""
    return _train_once(
        tmp_path_factory.mktemp("finished"),
        "--epochs", "1", "--batch-size", "10", "--hidden", "16", "--keep-checkpoints", "1", "--checkpoint-every", "3",
        n_train=100, n_test=50,
    )  # fmt: skip


def _required_dir(path: Path | None, what: str) -> Path:
    if path is not None and path.is_dir():
        return path
    if IN_CI:
        pytest.fail(f"{what} is missing in CI: .ci/run must provide it")
    pytest.skip(f"{what} is not available here")


@pytest.fixture(scope="session")
def real_mnist_dir() -> Path:
    """Real MNIST (first 10,000 training images, official test set), from MNIST_TEST_DATA."""
    root = os.environ.get("MNIST_TEST_DATA")
    return _required_dir(Path(root) / "mnist-10k" if root else None, "real MNIST (MNIST_TEST_DATA)")


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    """The complete Fashion-MNIST from Debian's dataset-fashion-mnist package."""
    root = os.environ.get("MNIST_FASHION_DIR", "/usr/share/datasets/fashion-mnist")
    return _required_dir(Path(root), "Fashion-MNIST (apt-get install dataset-fashion-mnist)")
