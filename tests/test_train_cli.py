"""`mnist train` as a user runs it: options, output, JSON, errors and real accuracy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mnist_cli.cli import app

runner = CliRunner()


def _train(tmp_path: Path, data_dir: Path, *args: str):
    return runner.invoke(
        app,
        ["train", "--data-dir", str(data_dir), "--runs-root", str(tmp_path / "runs"), *args],
        catch_exceptions=False,
    )


def test_json_output_is_the_only_thing_on_stdout(tmp_path: Path, tiny_data_dir: Path) -> None:
    result = _train(tmp_path, tiny_data_dir, "--epochs", "2", "--json", "--log-every", "5")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    for key in (
        "run_dir",
        "epochs",
        "train_loss",
        "train_accuracy",
        "val_accuracy",
        "test_accuracy",
        "test_loss",
        "best_checkpoint",
        "seconds",
        "samples_per_second",
    ):
        assert key in payload, key
    run = Path(payload["run_dir"])
    assert run.parent == tmp_path / "runs" and run.name.startswith("mnist-mlp-")
    # The figures printed are the ones the run keeps, and they are a learned model's, not chance's (10%).
    assert payload == json.loads((run / "result.json").read_text())
    assert payload["epochs"] == 2 and payload["best_epoch"] in (1, 2)
    assert payload["test_accuracy"] > 0.5 and payload["val_accuracy"] > 0.5
    # Progress went to stderr as plain lines (no terminal here), the walk-through's log format.
    assert "epoch 1 step 5/18 loss" in result.stderr and "epoch 2/2  train loss" in result.stderr


def test_quiet_prints_only_the_summary(tmp_path: Path, tiny_data_dir: Path) -> None:
    result = _train(tmp_path, tiny_data_dir, "--epochs", "2", "--quiet")
    assert result.exit_code == 0
    assert result.stderr == ""
    (run,) = (tmp_path / "runs").iterdir()
    saved = json.loads((run / "result.json").read_text())
    # The summary shows the run's own test accuracy, as result.json records it, and where the model is.
    test_row = next(line for line in result.stdout.splitlines() if line.strip("│ ").startswith("test"))
    assert f"accuracy {saved['test_accuracy']:.2%}" in test_row
    assert "model.keras" in result.stdout and "mnist evaluate" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "epochs"),
        (["--lr", "-1"], "--lr must be > 0"),
        (["--batch-size", "0"], "batch-size"),
        (["--val-split", "1.5"], "--val-split must be"),
        (["--model", "resnet"], "resnet"),
        (["--hidden", "256,abc"], "--hidden must be comma-separated integers"),
    ],
)
def test_nonsense_options_exit_2_with_one_line(tmp_path: Path, tiny_data_dir: Path, args: list[str], message: str) -> None:
    result = _train(tmp_path, tiny_data_dir, *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_existing_run_dir_needs_resume_and_resume_continues(tmp_path: Path, tiny_data_dir: Path) -> None:
    run = tmp_path / "myrun"
    first = _train(tmp_path, tiny_data_dir, "--epochs", "1", "--run-dir", str(run), "--json")
    assert first.exit_code == 0
    again = _train(tmp_path, tiny_data_dir, "--epochs", "1", "--run-dir", str(run))
    assert again.exit_code == 2 and "already holds a run" in again.stderr
    changed = _train(tmp_path, tiny_data_dir, "--run-dir", str(run), "--resume", "--lr", "0.5")
    assert changed.exit_code == 2 and "--lr" in changed.stderr
    resumed = _train(tmp_path, tiny_data_dir, "--run-dir", str(run), "--resume", "--epochs", "2", "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["epochs"] == 2
    assert "resuming" in resumed.stderr and "ckpt-18" in resumed.stderr


def test_missing_data_without_mirror_fails_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_MIRROR", str(tmp_path / "empty-mirror"))
    (tmp_path / "empty-mirror").mkdir()
    result = _train(tmp_path, tmp_path / "nodata", "--epochs", "1")
    assert result.exit_code == 4
    assert "Traceback" not in result.output


def test_help_imports_neither_tensorflow_nor_numpy() -> None:
    # `mnist --help` starts in about 0.1 s because commands import their libraries lazily.
    code = "import sys; from mnist_cli.cli import app; print([m for m in ('tensorflow', 'numpy', 'PIL') if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


@pytest.mark.slow  # a real `mnist train` process
def test_tensorflow_start_up_noise_does_not_reach_the_terminal(tmp_path: Path, tiny_data_dir: Path) -> None:
    env = {**os.environ, "MNIST_RUNS_DIR": str(tmp_path / "runs")}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    done = subprocess.run(
        [sys.executable, "-m", "mnist_cli", "train", "--data-dir", str(tiny_data_dir), "--epochs", "1", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    for noise in ("oneDNN", "cuda", "absl", "cpu_feature_guard"):
        assert noise not in done.stdout


@pytest.fixture
def real_data_dir(tmp_path: Path, real_mnist_dir: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "mnist").symlink_to(real_mnist_dir)
    return data


@pytest.mark.slow
def test_walkthrough_recipe_reaches_93_percent_on_real_mnist(tmp_path: Path, real_data_dir: Path) -> None:
    result = _train(tmp_path, real_data_dir, "--json")  # the defaults: MLP, squared error, SGD 0.01, batch 32, 10 epochs
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["epochs"] == 10
    assert payload["test_accuracy"] >= 0.93, payload


@pytest.mark.slow
def test_convnet_with_adam_reaches_97_5_percent_on_real_mnist(tmp_path: Path, real_data_dir: Path) -> None:
    # The command: 10 epochs, batch 32, Adam at its usual 0.001.
    result = _train(tmp_path, real_data_dir, "--model", "cnn", "--loss", "xent", "--optimizer", "adam", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["test_accuracy"] >= 0.975


@pytest.mark.slow  # two trainings
def test_config_file_then_options_override_it(tmp_path: Path, tiny_data_dir: Path) -> None:
    toml = tmp_path / "small.toml"
    toml.write_text('epochs = 1\nbatch-size = 64\nhidden = [32, 16]\noptimizer = "adam"\n')
    result = _train(tmp_path, tiny_data_dir, "--config", str(toml), "--batch-size", "16", "--json")
    assert result.exit_code == 0, result.output
    run = Path(json.loads(result.stdout)["run_dir"])
    saved = json.loads((run / "config.json").read_text())
    assert (saved["epochs"], saved["batch_size"], saved["hidden"], saved["optimizer"], saved["lr"]) == (1, 16, [32, 16], "adam", 0.001)
    # A run's config.json repeats the run exactly.
    again = _train(tmp_path, tiny_data_dir, "--config", str(run / "config.json"), "--json")
    assert again.exit_code == 0
    assert json.loads((Path(json.loads(again.stdout)["run_dir"]) / "config.json").read_text()) == saved


@pytest.mark.parametrize(
    ("text", "message"),
    [("epochs = 0\n", "--epochs must be >= 1"), ("colour = 'red'\n", "unknown config field"), ("epochs = [\n", "cannot be parsed")],
)
def test_bad_config_file_is_a_usage_error(tmp_path: Path, tiny_data_dir: Path, text: str, message: str) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text(text)
    result = _train(tmp_path, tiny_data_dir, "--config", str(toml))
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output


@pytest.mark.slow  # a training, for what Typer's envvar does
def test_environment_variables_set_common_options(tmp_path: Path, tiny_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_EPOCHS", "1")
    monkeypatch.setenv("MNIST_BATCH_SIZE", "64")
    result = _train(tmp_path, tiny_data_dir, "--json")
    assert result.exit_code == 0, result.output
    saved = json.loads((Path(json.loads(result.stdout)["run_dir"]) / "config.json").read_text())
    assert (saved["epochs"], saved["batch_size"]) == (1, 64)


@pytest.mark.slow  # a convnet training
def test_recipe_sets_hyperparameters_and_options_override_it(tmp_path: Path, tiny_data_dir: Path) -> None:
    result = _train(tmp_path, tiny_data_dir, "--recipe", "accurate", "--epochs", "1", "--json")
    assert result.exit_code == 0, result.output
    saved = json.loads((Path(json.loads(result.stdout)["run_dir"]) / "config.json").read_text())
    assert (saved["model"], saved["optimizer"], saved["schedule"], saved["batch_size"], saved["epochs"]) == ("cnn", "adamw", "onecycle", 128, 1)
