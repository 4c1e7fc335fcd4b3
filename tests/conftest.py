"""Shared fixtures: tiny data sets made in the test, runs trained once, the tiny download set, and the real data CI provides.

Plain helpers are in helpers.py (and mirror.py for the loopback download mirror).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from helpers import IN_CI, invoke, write_tiny_dataset

# Rich fixes a console's width for good when COLUMNS is set as the console is made, and
# pytest-xdist's workers start with COLUMNS=80. The commands' consoles are made here without it,
# so that each test's COLUMNS (or none) is read when the command prints, as in a real process.
_terminal = {name: os.environ.pop(name) for name in ("COLUMNS", "LINES") if name in os.environ}
import mnist_cli.cli.common  # noqa: E402,F401

os.environ.update(_terminal)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "tiny_data(**sizes): the sizes write_tiny_dataset gives `tiny_data_dir` and `data_dir` in this module or test")


@pytest.fixture
def tiny_data_dir(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A --data-dir whose mnist/ holds a tiny learnable data set (sizes from a `tiny_data` mark, if any)."""
    mark = request.node.get_closest_marker("tiny_data")
    write_tiny_dataset(tmp_path / "data" / "mnist", **(mark.kwargs if mark else {}))
    return tmp_path / "data"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A --data-dir with a tiny data set shared by a module's tests (sizes from the module's `tiny_data` mark)."""
    mark = request.node.get_closest_marker("tiny_data")
    return write_tiny_dataset(tmp_path_factory.mktemp("data") / "mnist", **(mark.kwargs if mark else {})).parent


def _train_once(root: Path, *options: str, **sizes: int) -> tuple[Path, Path]:
    """(a run made by `mnist train OPTIONS` on a tiny data set of `sizes` written under `root`, its --data-dir)."""
    data_dir, run_dir = root / "data", root / "run"
    write_tiny_dataset(data_dir / "mnist", **sizes)
    result = invoke("train", "--data-dir", str(data_dir), "--run-dir", str(run_dir), *options, "--quiet")
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


@pytest.fixture(scope="module")
def finished_run(finished_run_once: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a module's own copy of a run with checkpoints/ and best/, its --data-dir): tests damage runs."""
    run, data_dir = finished_run_once
    return Path(shutil.copytree(run, tmp_path_factory.mktemp("escape") / "run")), data_dir


@pytest.fixture
def run_to_damage(finished_run: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """(this test's own copy of the finished run, at tmp_path/run, its --data-dir): the test may break it."""
    source, data_dir = finished_run
    return Path(shutil.copytree(source, tmp_path / "run")), data_dir


@pytest.fixture
def download_settings():  # noqa: ANN201 - mnist_cli.data.download.Settings, imported only where downloads are tested
    """The download settings of a test (quick retries, no backoff); a module may override this fixture."""
    from mirror import FAST

    return FAST


@pytest.fixture
def isolated_download(monkeypatch: pytest.MonkeyPatch, download_settings) -> None:  # noqa: ANN001
    """No mirror, data or proxy settings from the machine; `download_settings` for every download."""
    from mirror import isolate_download

    isolate_download(monkeypatch, download_settings)


@pytest.fixture
def tiny(isolated_download: None, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201 - mirror.Tiny
    """The tiny download set registered as `mnist`, whose built-in mirror is a dead loopback port."""
    from mirror import register_tiny

    return register_tiny(monkeypatch)


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
def real_data_dir(real_mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --data-dir whose mnist/ is the real MNIST of MNIST_TEST_DATA."""
    data_dir = tmp_path_factory.mktemp("real-data")
    (data_dir / "mnist").symlink_to(real_mnist_dir, target_is_directory=True)
    return data_dir


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    """The complete Fashion-MNIST from Debian's dataset-fashion-mnist package."""
    root = os.environ.get("MNIST_FASHION_DIR", "/usr/share/datasets/fashion-mnist")
    return _required_dir(Path(root), "Fashion-MNIST (apt-get install dataset-fashion-mnist)")
