"""What the training loop reports: its events (through `on_event`) and its final result.

Plain frozen dataclasses with no TensorFlow in them, so the CLI and the tuner can
import them without paying TensorFlow's start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Union

from mnist_cli.core.config import TrainConfig
from mnist_cli.model.network import NetworkBuilt


@dataclass(frozen=True)
class TrainStarted:
    """The run is set up and the first step is about to run."""

    run_dir: Path
    config: TrainConfig
    resumed_from: str | None
    start_epoch: int
    steps_per_epoch: int
    train_count: int
    val_count: int
    test_count: int
    strategy: str = "one"
    replicas: int = 1


@dataclass(frozen=True)
class EpochStarted:
    """An epoch begins (or continues, on resume, at `step`)."""

    epoch: int
    epochs: int
    step: int
    steps: int


@dataclass(frozen=True)
class StepsDone:
    """A compiled chunk of steps finished; figures are over that chunk."""

    epoch: int
    epochs: int
    step: int
    steps: int
    global_step: int
    loss: float
    accuracy: float
    samples_per_second: float
    learning_rate: float


@dataclass(frozen=True)
class EpochDone:
    """An epoch finished, was validated and checkpointed."""

    epoch: int
    epochs: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    learning_rate: float
    seconds: float
    samples_per_second: float
    best: bool
    checkpoint: str


@dataclass(frozen=True)
class Testing:
    """Training is over; the test split is being scored."""

    count: int
    checkpoint: str | None


@dataclass(frozen=True)
class TrainResult:
    """What `mnist train --json` prints, and what `result.json` holds."""

    run_dir: str
    dataset: str
    model: str
    epochs: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    test_loss: float
    test_accuracy: float
    best_checkpoint: str | None
    best_epoch: int | None
    best_val_accuracy: float | None
    model_file: str
    seconds: float
    samples_per_second: float
    started: str
    finished: str
    params: int | None = None  # the network's parameter count, as its summary's total

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return asdict(self)


TrainEvent = Union[NetworkBuilt, TrainStarted, EpochStarted, StepsDone, EpochDone, Testing]
OnEvent = Callable[[TrainEvent], None]
