"""Checkpoints of a run: the latest few and the best, and loading weights from any target.

A checkpoint holds the model's variables, the optimizer's (slots and step counter)
and the loop's own position, so a resumed run continues bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnist_cli.errors import ModelError
from mnist_cli.fileio import io_error
from mnist_cli.runs import BEST_DIR, CHECKPOINTS_DIR
from mnist_cli.tf_setup import import_tensorflow

tf = import_tensorflow()


class LoopState:
    """Where the training loop stands, as variables so they are saved with the weights."""

    def __init__(self) -> None:
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")  # epochs completed
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
        self.loss_sum = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="loss_sum")
        self.correct = tf.Variable(0, dtype=tf.int64, trainable=False, name="correct")
        self.seen = tf.Variable(0, dtype=tf.int64, trainable=False, name="seen")
        self.best_val_accuracy = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_val_accuracy")
        self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="best_epoch")

    def variables(self) -> dict[str, Any]:
        """The variables by name, for tf.train.Checkpoint."""
        return dict(vars(self))


def _checkpoint(model: Any, optimizer: Any | None = None, state: LoopState | None = None) -> Any:
    # Keras 3 models are not tracked as tf.train.Checkpoint children, so their
    # variables are listed explicitly (the order is fixed by the architecture).
    parts: dict[str, Any] = {"model": list(model.variables)}
    if optimizer is not None:
        parts["optimizer"] = list(optimizer.variables)
    if state is not None:
        parts.update(state.variables())
    return tf.train.Checkpoint(**parts)


class RunCheckpoints:
    """The `checkpoints/` (latest few) and `best/` (best validation accuracy) of one run."""

    def __init__(
        self, run_dir: Path, *, model: Any, optimizer: Any, state: LoopState, keep: int, restore_dir: Path | None = None
    ) -> None:
        self.checkpoint = _checkpoint(model, optimizer, state)
        # A multi-worker run's other workers write a scratch copy but resume from the chief's run.
        self.restore_dir = Path(restore_dir or run_dir)
        self.latest = tf.train.CheckpointManager(self.checkpoint, str(Path(run_dir) / CHECKPOINTS_DIR), max_to_keep=keep)
        self.best = tf.train.CheckpointManager(self.checkpoint, str(Path(run_dir) / BEST_DIR), max_to_keep=1)

    def save(self, *, step: int, best: bool = False) -> str:
        """Save the current state as checkpoint number `step` (into best/ too when `best`)."""
        manager = self.best if best else self.latest
        try:
            return manager.save(checkpoint_number=step)
        except (OSError, tf.errors.OpError) as exc:
            # TF raises its own error types for a full disk; the previous checkpoint stays intact.
            message = getattr(exc, "message", str(exc))
            if isinstance(exc, OSError):
                raise io_error(exc, f"saving a checkpoint in {manager.directory}") from None
            raise ModelError(f"could not save a checkpoint in {manager.directory}: {message}", "check free disk space; the previous checkpoint is intact") from None

    def restore_latest(self) -> str | None:
        """Restore the newest complete checkpoint; None when there is none."""
        path = latest_in(self.restore_dir / CHECKPOINTS_DIR)
        if path:
            _read(self.checkpoint, path).assert_existing_objects_matched()
        return path

    def restore_best(self) -> str | None:
        """Restore the best checkpoint (or leave the weights as they are when there is none)."""
        path = self.best.latest_checkpoint
        if path:
            _read(self.checkpoint, path).assert_existing_objects_matched()
        return path


def _read(checkpoint: Any, path: str) -> Any:
    try:
        return checkpoint.read(path)
    # A truncated .data file surfaces as an IndexError ("Read less bytes than requested").
    except (tf.errors.OpError, ValueError, AssertionError, IndexError) as exc:
        message = getattr(exc, "message", str(exc)).splitlines()[0]
        raise ModelError(f"checkpoint {path} cannot be read: {message}", "it may be partial or corrupt; use another checkpoint or train again") from None


def restore_weights(model: Any, path: str) -> None:
    """Load only the model's weights from a checkpoint prefix, checking that every one matches."""
    try:
        stored = dict(tf.train.list_variables(path))
    except (tf.errors.OpError, ValueError) as exc:
        message = getattr(exc, "message", str(exc)).splitlines()[0]
        raise ModelError(f"checkpoint {path} cannot be read: {message}", "it may be partial or corrupt; use another checkpoint or train again") from None
    for index, variable in enumerate(model.variables):
        key = f"model/{index}/.ATTRIBUTES/VARIABLE_VALUE"
        if key not in stored or list(stored[key]) != list(variable.shape):
            raise ModelError(
                f"checkpoint {path} does not fit the model in its config.json (variable {index}: {variable.path})",
                "the checkpoint and config.json come from different runs",
            )
    _read(_checkpoint(model), path).expect_partial()


def latest_in(directory: Path) -> str | None:
    """The newest checkpoint prefix recorded in a checkpoint directory, if any."""
    try:
        return tf.train.latest_checkpoint(str(directory))
    except (tf.errors.OpError, ValueError):
        return None
