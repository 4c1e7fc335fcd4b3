"""One trial of a study: its config, its run directory, `trainer.fit`, and pruning on each epoch's validation accuracy."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mnist_cli.core.errors import UsageError
from mnist_cli.core.fileio import atomic_write_text
from mnist_cli.runs import layout, listing
from mnist_cli.tuning.study import TuneSettings


class Objective:
    """What Optuna maximises: the validation accuracy of one trial's run (TensorFlow is imported on the first call)."""

    def __init__(self, settings: TuneSettings, splits: Any, *, on_event: Callable[[Any], None] | None) -> None:
        self.settings = settings
        self.splits = splits
        self.on_event = on_event

    def __call__(self, trial: Any) -> float:
        """Train the trial's run and return its best validation accuracy; raise TrialPruned when the pruner says so."""
        from mnist_cli.training import trainer

        # A learning rate the fixed options leave unset follows the trial's optimizer (TrainConfig.replace).
        config = self.settings.base.replace(**self.settings.space.suggest(trial))
        run_dir = layout.trial_dir(self.settings.study_dir, trial.number)
        if (run_dir / layout.CONFIG_FILE).exists():
            raise UsageError(
                f"{run_dir} already holds a run, from an earlier study of the same name",
                "move that folder away, or choose another --study",
            )
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("epochs", config.epochs)
        trial.set_user_attr("worker", f"{os.uname().nodename}:{os.getpid()}")
        result = trainer.fit(config, self.splits, run_dir=run_dir, on_event=self._reporter(trial, run_dir))
        value = result.best_val_accuracy if result.best_val_accuracy is not None else result.val_accuracy
        if value is None or not math.isfinite(value):
            raise UsageError("a trial finished without a validation accuracy", "mnist tune needs --val-split > 0")
        return float(value)

    def _reporter(self, trial: Any, run_dir: Path) -> Callable[[Any], None]:
        import optuna

        from mnist_cli.training import trainer

        def on_event(event: Any) -> None:
            if self.on_event is not None:
                self.on_event(event)
            if isinstance(event, trainer.EpochDone) and event.val_accuracy is not None:
                trial.report(event.val_accuracy, event.epoch)
                if event.epoch < event.epochs and trial.should_prune():
                    mark_pruned(run_dir, epoch=event.epoch, val_accuracy=event.val_accuracy)
                    # Raised from the trainer's callback after the epoch's checkpoint: the run is consistent.
                    raise optuna.TrialPruned(f"pruned after epoch {event.epoch}")

        return on_event


def mark_pruned(run_dir: Path, *, epoch: int, val_accuracy: float) -> None:
    """Write the marker `mnist runs` reads to show a trial's run as pruned."""
    reason = f"pruned by mnist tune after epoch {epoch} (val accuracy {val_accuracy:.4f})"
    atomic_write_text(Path(run_dir) / layout.STATUS_FILE, json.dumps({"status": listing.STATE_PRUNED, "reason": reason}) + "\n")
