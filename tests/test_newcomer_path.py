"""The path a new user walks, with no seams between commands: the data travels with the run,
`next:` lines work when pasted, exit codes are as documented, and nothing is cut at any width."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import filelock
import pytest
from rich.console import Console
from typer.testing import CliRunner

from mnist_cli.core import config as cfg
from mnist_cli.runs import layout, rundata
from mnist_cli.core.errors import BUSY, USAGE
from mnist_cli.model.network import Layer, NetworkBuilt
from mnist_cli.training.events import TrainResult
from helpers import dead_url, invoke, write_tiny_dataset

runner = CliRunner()


def _offline_env(tmp_path: Path) -> dict[str, str]:
    # The usual data location is empty and every mirror is dead: using it would fail (exit 4).
    return {"MNIST_DATA_DIR": str(tmp_path / "usual"), "MNIST_MIRROR": dead_url(), "MNIST_RUNS_DIR": None}


def _invoke(tmp_path: Path, *args: str, env: dict[str, str | None] | None = None):
    return invoke(*args, env={**_offline_env(tmp_path), **(env or {})})


@pytest.mark.slow  # train, then every command its next: lines name
def test_a_run_carries_its_data_recipe_and_network_to_the_commands_after_it(tmp_path: Path) -> None:
    data = tmp_path / "my data"
    write_tiny_dataset(data / "mnist")
    run = tmp_path / "runs" / "first"
    trained = _invoke(
        tmp_path, "train", "--data-dir", str(data), "--run-dir", str(run), "--recipe", "fast", "--epochs", "1", "--batch-size", "32"
    )
    assert trained.exit_code == 0, trained.output
    # The network, as the walk-through's summary() shows it, before the first step.
    # The fast recipe's MLP: 784 inputs, its hidden layers, 10 outputs, each layer with its biases.
    sizes = (784, *cfg.recipe("fast")["hidden"], 10)
    params = sum((inputs + 1) * outputs for inputs, outputs in zip(sizes, sizes[1:]))
    assert "network mlp" in trained.stderr and "dense_1" in trained.stderr and f"{params:,}" in trained.stderr
    assert trained.stderr.index("network mlp") < trained.stderr.index("epoch 1/1")
    result = json.loads((run / layout.RESULT_FILE).read_text())
    assert result["params"] == params
    assert json.loads((run / "config.json").read_text())["recipe"] == "fast"
    recorded = rundata.read(run)
    assert recorded is not None and recorded.dataset == "mnist" and recorded.data_dir == data.absolute()
    nexts = [line.removeprefix("next: ") for line in trained.stdout.splitlines() if line.startswith("next: ")]
    assert nexts[0] == f"mnist evaluate {shlex.quote(str(run))}"

    # evaluate, with no --data-dir, reads the run's own data (the usual location would fail offline).
    evaluated = _invoke(tmp_path, *shlex.split(nexts[0])[1:], "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["accuracy"] == pytest.approx(result["test_accuracy"])

    # --resume too, and a finished run says so instead of re-scoring it.
    finished = _invoke(tmp_path, "train", "--run-dir", str(run), "--resume")
    assert finished.exit_code == USAGE
    assert "is finished: it trained all 1 of its epochs" in finished.stderr and "--epochs 2" in finished.stderr
    resumed = _invoke(tmp_path, "train", "--run-dir", str(run), "--resume", "--epochs", "2", "--json", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["epochs"] == 2 and json.loads(resumed.stdout)["params"] == params

    # mnist runs shows the recipe, --augment and the parameter count.
    listed = _invoke(tmp_path, "runs", "--root", str(run.parent), "--json")
    (entry,) = json.loads(listed.stdout)
    augment = cfg.recipe("fast").get("augment", False)
    assert (entry["recipe"], entry["augment"], entry["params"]) == ("fast", augment, params)
    table = _invoke(tmp_path, "runs", "--root", str(run.parent), env={"COLUMNS": "200"})  # wide enough for every column
    assert re.search(rf"first .* fast .* {'yes' if augment else 'no'} +{params:,}", table.stdout), table.stdout

    # A second training on the run while one holds it: busy (9), before "already holds a run" (2).
    with filelock.FileLock(str(run / layout.LOCK_FILE)):
        busy = _invoke(tmp_path, "train", "--data-dir", str(data), "--run-dir", str(run))
        busy_resume = _invoke(tmp_path, "train", "--run-dir", str(run), "--resume", "--epochs", "3")
    assert busy.exit_code == BUSY and "another `mnist train` is writing to" in busy.stderr
    assert busy_resume.exit_code == BUSY

    # A run copied to another machine: the recorded folder is gone, the usual location is used, one line says so.
    shutil.copytree(data / "mnist", tmp_path / "usual" / "mnist")
    shutil.rmtree(data)
    moved = _invoke(tmp_path, "evaluate", str(run), "--json")
    assert moved.exit_code == 0, moved.output
    notes = [line for line in moved.stderr.splitlines() if "is gone" in line]
    assert notes == [f"the run's data folder {data / 'mnist'} is gone; using the usual data location"]

    # An explicit --data-dir still wins.
    wrong = _invoke(tmp_path, "evaluate", str(run), "--data-dir", str(tmp_path / "nowhere"))
    assert wrong.exit_code == 4 and not (tmp_path / "nowhere").exists()


def _rendered(renderable: object, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def _cell_text(text: str) -> str:
    """The table's text with borders and line breaks taken out, to find folded values whole."""
    return re.sub(r"[\s│┃|]+", "", text)


@pytest.mark.parametrize("width", [60, 80, 120])
def test_the_train_summary_and_network_never_cut_a_path(width: int) -> None:
    from mnist_cli.cli.train import _summary, network_table, next_commands

    run = "runs/a-rather-long-folder-name/mnist-mlp-20261129-052541-with-a-suffix"
    result = TrainResult(
        run_dir=run, dataset="mnist", model="mlp", epochs=10, train_loss=0.16, train_accuracy=0.95, val_loss=0.17,
        val_accuracy=0.951, test_loss=0.19, test_accuracy=0.9348, best_checkpoint=f"{run}/best/ckpt-2820", best_epoch=10,
        best_val_accuracy=0.951, model_file=f"{run}/model.keras", seconds=3.1, samples_per_second=41836.0,
        started="2026-11-29T05:25:41+00:00", finished="2026-11-29T05:25:44+00:00", params=335114,
    )
    text = _rendered(_summary(result), width)
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
    cells = _cell_text(text)
    for path in (f"{run}/best/ckpt-2820", f"{run}/model.keras"):
        assert _cell_text(path) in cells
    assert "335,114" in text
    assert next_commands(result) == [f"mnist evaluate {run}", "tensorboard --logdir runs/a-rather-long-folder-name"]

    network = NetworkBuilt("mlp", (Layer("dense_1", "Dense", (None, 256), 200960),), params=200960, trainable_params=200960)
    table = _rendered(network_table(network), width)
    assert "…" not in table and "200,960" in table and "dense_1" in table


@pytest.mark.parametrize("width", [60, 80, 120])
def test_the_predict_table_never_cuts_a_file_name(width: int) -> None:
    from mnist_cli.cli.predict import _print_table

    class Prediction:
        path = "pictures/a-photo-of-the-digit-seven-taken-on-a-phone.jpg"
        name = "7"
        probability = 0.99

        def top(self, k: int):
            return [(7, "7", 0.99), (1, "1", 0.005), (2, "2", 0.003)][:k]

    console = Console(file=io.StringIO(), width=width, color_system=None)
    _print_table(console, [Prediction()], top_k=3)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
    assert _cell_text(Prediction.path) in _cell_text(text)


@pytest.mark.parametrize("width", [60, 80, 120])
def test_plain_epoch_lines_stay_whole_at_any_width(width: int) -> None:
    from mnist_cli.cli.train import _TrainReporter
    from mnist_cli.training.events import EpochDone

    console = Console(file=io.StringIO(), width=width, color_system=None)
    reporter = _TrainReporter(console)
    assert reporter.plain
    reporter(
        EpochDone(
            epoch=10, epochs=10, train_loss=0.1634, train_accuracy=0.9538, val_loss=0.1775, val_accuracy=0.951,
            learning_rate=0.01, seconds=0.1, samples_per_second=136077.0, best=True, checkpoint="ckpt",
        )
    )
    (line,) = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert line.startswith("epoch 10/10  train loss 0.1634") and line.endswith("best")


# The walk-through on real data ------------------------------------------------------


@pytest.mark.slow
def test_every_next_line_after_a_real_train_works_when_pasted(tmp_path: Path, real_mnist_dir: Path) -> None:
    data = tmp_path / "data"
    (data / "mnist").mkdir(parents=True)
    for gz in real_mnist_dir.glob("*.gz"):
        shutil.copy(gz, data / "mnist" / gz.name)
    env = {key: value for key, value in os.environ.items() if key not in ("MNIST_DATA_DIR", "MNIST_RUNS_DIR", "MNIST_MIRROR")}
    # Offline and with an empty usual location: a pasted line that ignored the run's data would fail.
    env.update(MNIST_DATA_DIR=str(tmp_path / "usual"), MNIST_MIRROR=dead_url(), COLUMNS="80")
    work = tmp_path / "project"
    work.mkdir()
    mnist = [sys.executable, "-m", "mnist_cli"]
    trained = subprocess.run(
        [*mnist, "train", "--data-dir", str(data), "--epochs", "1"], cwd=work, env=env, capture_output=True, text=True, timeout=900
    )
    assert trained.returncode == 0, trained.stderr
    assert "network mlp" in trained.stderr and "335,114" in trained.stdout
    nexts = [line.removeprefix("next: ") for line in trained.stdout.splitlines() if line.startswith("next: ")]
    assert len(nexts) >= 2, trained.stdout
    ran = 0
    for line in nexts:
        words = shlex.split(line)
        if words[0] == "tensorboard":
            # Not run (it serves until stopped): the line must name a folder that holds the run.
            assert words[1] == "--logdir" and any((work / words[2]).iterdir())
            continue
        assert words[0] == "mnist", line
        done = subprocess.run([*mnist, *words[1:]], cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{line}\n{done.stderr}"
        ran += 1
    assert ran >= 1
    listed = subprocess.run([*mnist, "runs", "--json"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    (entry,) = json.loads(listed.stdout)
    assert entry["params"] == 335_114 and entry["status"] == "finished"


@pytest.mark.parametrize("width", [60, 80, 100])
def test_epoch_lines_on_a_terminal_wrap_between_words(width: int) -> None:
    from mnist_cli.cli.train import _TrainReporter
    from mnist_cli.training.events import EpochDone

    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    reporter = _TrainReporter(console)
    assert not reporter.plain
    reporter(
        EpochDone(
            epoch=10, epochs=10, train_loss=0.1634, train_accuracy=0.9538, val_loss=0.1775, val_accuracy=0.951,
            learning_rate=0.01, seconds=0.1, samples_per_second=136077.0, best=True, checkpoint="ckpt",
        )
    )
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert all(len(line) <= width for line in lines)
    expected = "epoch 10/10  train loss 0.1634 acc 95.38%  val loss 0.1775 acc 95.10%  lr 0.01  136,077 img/s  0.1 s  best"
    assert " ".join(lines).split() == expected.split()  # every word whole


@pytest.mark.parametrize(
    "content",
    [b"not json", b"[]", b'{"dataset": "mnist"}', b'{"dataset": 1, "data_dir": "/x"}', b'{"dataset": "mnist", "data_dir": ""}', b"\xff\xfe"],
)
def test_a_damaged_data_json_is_ignored(tmp_path: Path, content: bytes) -> None:
    (tmp_path / layout.DATA_FILE).write_bytes(content)
    assert rundata.read(tmp_path) is None
    assert rundata.data_dir_for(tmp_path, "mnist", None) == (None, None)


def test_data_json_is_a_regular_small_file_with_an_absolute_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "mnist").mkdir(parents=True)
    rundata.record(tmp_path, dataset="mnist", directory=Path("data") / "mnist")
    assert rundata.read(tmp_path) == rundata.DataSource("mnist", tmp_path / "data")
    assert rundata.data_dir_for(tmp_path, "mnist", Path("elsewhere")) == (Path("elsewhere"), None)  # an explicit one wins
    (tmp_path / layout.DATA_FILE).unlink()
    (tmp_path / layout.DATA_FILE).mkdir()
    assert rundata.read(tmp_path) is None
