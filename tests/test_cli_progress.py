"""What the commands print while they work and when they finish: bars, epoch lines, pasteable commands."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console

from mnist_cli.cli.train import _TrainReporter, eta
from mnist_cli.core.config import TrainConfig
from mnist_cli.training.events import EpochDone, EpochStarted, StepsDone, TrainStarted

EPOCH = EpochDone(
    epoch=10, epochs=10, train_loss=0.1634, train_accuracy=0.9538, val_loss=0.1775, val_accuracy=0.951,
    learning_rate=0.01, seconds=0.1, samples_per_second=136077.0, best=True, checkpoint="ckpt",
)  # fmt: skip
LINE = "epoch 10/10  train loss 0.1634 acc 95.38%  val loss 0.1775 acc 95.10%  lr 0.01  136,077 img/s  0.1 s  best"


def _terminal(width: int) -> Console:
    return Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)


@pytest.mark.parametrize("width", [60, 80, 100])
def test_an_epoch_line_too_wide_folds_before_its_speed_so_best_never_stands_alone(width: int) -> None:
    console = _terminal(width)
    _TrainReporter(console)(EPOCH)
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert all(len(line) <= width for line in lines)
    assert " ".join(lines).split() == LINE.split()
    assert lines[-1].strip() != "best"
    assert any(line.strip().startswith("136,077 img/s") for line in lines)


def test_an_epoch_line_that_fits_stays_one_line() -> None:
    console = _terminal(120)
    _TrainReporter(console)(EPOCH)
    assert console.file.getvalue().splitlines() == [LINE]  # type: ignore[attr-defined]


def test_eta_comes_from_the_chunk_speed() -> None:
    assert eta(82, 32, 2624.0) == "0:00:01"
    assert eta(10_000, 32, 100.0) == "0:53:20"
    assert eta(10, 32, 0.0) == "-:--:--"


def test_the_live_bar_shows_a_time_left_after_the_first_chunk() -> None:
    console = _terminal(120)
    reporter = _TrainReporter(console)
    config = TrainConfig(batch_size=32)
    with reporter.live():
        reporter(
            TrainStarted(
                run_dir="runs/x", config=config, resumed_from=None, start_epoch=0, steps_per_epoch=282,
                train_count=9000, val_count=1000, test_count=10000,
            )  # fmt: skip
        )
        reporter(EpochStarted(epoch=1, epochs=10, step=0, steps=282))
        reporter(
            StepsDone(
                epoch=1, epochs=10, step=200, steps=282, global_step=200, loss=0.5, accuracy=0.8,
                samples_per_second=2624.0, learning_rate=0.01,
            )  # fmt: skip
        )
        assert reporter.progress is not None
        (task,) = reporter.progress.tasks
        assert task.fields["eta"] == "0:00:01"  # 82 steps of 32 images at 2,624 images/s


def test_tune_prints_the_best_config_command_outside_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    from mnist_cli.cli import common, tune

    path = "runs/a-very-long-study-name-that-would-wrap-in-a-table-cell/best-config-of-the-study.json"
    result = SimpleNamespace(
        study="s", storage="sqlite:///runs/s.db", counts={"complete": 2}, best_trial=1, best_run_dir="runs/s/trial-1",
        best_params={"lr": 0.01}, best_val_accuracy=0.9, best_test_accuracy=0.89, best_config_file=path, importances={},
        importance_method="",
    )  # fmt: skip
    console = Console(file=io.StringIO(), width=60, color_system=None)
    monkeypatch.setattr(common, "out", console)
    tune._print_result(result)
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert lines[-1] == f"next: mnist train --config {path}"
