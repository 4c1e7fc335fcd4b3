"""tf.distribute strategies: mirrored over two logical CPUs, and two workers on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_cli.core.config import TrainConfig
from mnist_cli.core.errors import UsageError


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_cli", "train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _weights(run_dir: Path) -> list[np.ndarray]:
    from mnist_cli.model import weights
    from mnist_cli.model.network import build_model

    model = build_model(TrainConfig.load(run_dir))
    weights.restore_weights(model, weights.latest_in(run_dir / "checkpoints"))
    return [variable.numpy() for variable in model.variables]


COMMON = ("--epochs", "2", "--batch-size", "32", "--log-every", "5", "--json", "--quiet")


@pytest.mark.slow
def test_mirrored_on_two_devices_matches_one_device(tmp_path: Path, tiny_data_dir: Path) -> None:
    one = _cli("--data-dir", str(tiny_data_dir), "--run-dir", str(tmp_path / "one"), "--strategy", "one", *COMMON)
    two = _cli(
        "--data-dir", str(tiny_data_dir), "--run-dir", str(tmp_path / "two"), "--strategy", "mirrored", *COMMON,
        env={"MNIST_CPU_DEVICES": "2"},
    )
    (one_out, one_err), (two_out, two_err) = one.communicate(timeout=300), two.communicate(timeout=300)
    assert one.returncode == 0, one_err
    assert two.returncode == 0, two_err
    # The same global batch split over two replicas: the summed gradients are the same
    # up to float rounding of the order of additions.
    for single, mirrored in zip(_weights(tmp_path / "one"), _weights(tmp_path / "two")):
        np.testing.assert_allclose(single, mirrored, rtol=1e-4, atol=1e-5)
    assert abs(json.loads(one_out)["test_accuracy"] - json.loads(two_out)["test_accuracy"]) <= 0.01


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for item in sockets:
        item.bind(("127.0.0.1", 0))
    ports = [item.getsockname()[1] for item in sockets]
    for item in sockets:
        item.close()
    return ports


@pytest.mark.slow
def test_two_workers_on_loopback_train_and_only_the_chief_writes(tmp_path: Path, tiny_data_dir: Path) -> None:
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    run = tmp_path / "run"
    processes = [
        _cli(
            "--data-dir", str(tiny_data_dir), "--run-dir", str(run), "--strategy", "multi-worker", *COMMON,
            env={"TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})},
        )
        for index in range(2)
    ]
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err
    chief, other = (json.loads(out) for out, _ in outputs)
    assert chief["test_accuracy"] == other["test_accuracy"]
    assert chief["epochs"] == 2
    assert sorted(path.name for path in (run / "checkpoints").iterdir() if path.suffix == ".index") == ["ckpt-18.index", "ckpt-36.index"]
    assert len(list(run.glob("events.out.tfevents.*"))) == 1  # summaries from the chief only
    assert (run / "result.json").is_file() and (run / "model.keras").is_file()


def test_multi_worker_without_tf_config_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from mnist_cli.training.distribute import make_placement

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UsageError, match="needs TF_CONFIG"):
        make_placement("multi-worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(UsageError, match="TF_CONFIG is not valid JSON"):
        make_placement("auto")
    monkeypatch.delenv("TF_CONFIG")
    assert make_placement("auto").name == "one"
