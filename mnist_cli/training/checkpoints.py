"""Checkpoints of a run being trained: the latest few and the best, with the loop's position.

A checkpoint holds the model's variables, the optimizer's (slots and step counter)
and the loop's own position, so a resumed run continues bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnist_cli.core.errors import LocalIOError, ModelError
from mnist_cli.runs import runs
from mnist_cli.core.fileio import io_error
from mnist_cli.runs.layout import BEST_DIR, CHECKPOINTS_DIR
from mnist_cli.core.tf_setup import import_tensorflow
from mnist_cli.model import weights

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

    def add_chunk(self, *, loss_sum: float, correct: int, samples: int, step_in_epoch: int) -> None:
        """Count a finished chunk of steps into the epoch's running totals."""
        self.loss_sum.assign_add(loss_sum)
        self.correct.assign_add(correct)
        self.seen.assign_add(samples)
        self.step_in_epoch.assign(step_in_epoch)

    def epoch_totals(self, seconds: float) -> dict[str, float]:
        """The epoch's training loss, accuracy, examples and speed so far."""
        seen = int(self.seen.numpy())
        return {
            "loss": float(self.loss_sum.numpy()) / max(seen, 1),
            "accuracy": int(self.correct.numpy()) / max(seen, 1),
            "samples": seen,
            "samples_per_second": seen / max(seconds, 1e-9),
        }

    def end_epoch(self, epochs_done: int, *, best_val_accuracy: float | None) -> None:
        """Move to the next epoch, recording a new best validation accuracy when there is one."""
        self.epoch.assign(epochs_done)
        self.step_in_epoch.assign(0)
        self.loss_sum.assign(0.0)
        self.correct.assign(0)
        self.seen.assign(0)
        if best_val_accuracy is not None:
            self.best_val_accuracy.assign(best_val_accuracy)
            self.best_epoch.assign(epochs_done)


class RunCheckpoints:
    """The `checkpoints/` (latest few) and `best/` (best validation accuracy) of one run."""

    def __init__(
        self, run_dir: Path, *, model: Any, optimizer: Any, state: LoopState, keep: int, restore_dir: Path | None = None
    ) -> None:
        self.checkpoint = weights.checkpoint_of(model, optimizer, state)
        self.state = state
        # A multi-worker run's other workers write a scratch copy but resume from the chief's run.
        self.restore_dir = Path(restore_dir or run_dir)
        # A CheckpointManager reads the state file's paths and later deletes the old ones,
        # so a state file naming files outside its directory must be refused first.
        # Nor may checkpoints/ or best/ be links: saving prunes old checkpoints in them.
        for name in (CHECKPOINTS_DIR, BEST_DIR):
            runs.run_subdir(run_dir, name)
        for directory in (Path(run_dir) / CHECKPOINTS_DIR, Path(run_dir) / BEST_DIR, self.restore_dir / CHECKPOINTS_DIR):
            weights.check_state(directory)
        self.latest = tf.train.CheckpointManager(self.checkpoint, str(Path(run_dir) / CHECKPOINTS_DIR), max_to_keep=keep)
        self.best = tf.train.CheckpointManager(self.checkpoint, str(Path(run_dir) / BEST_DIR), max_to_keep=1)

    def save(self, *, step: int, best: bool = False) -> str:
        """Save the current state as checkpoint number `step` (into best/ too when `best`)."""
        manager = self.best if best else self.latest
        try:
            return manager.save(checkpoint_number=step)
        except (OSError, tf.errors.OpError) as exc:
            # The state file still names the previous checkpoint, which stays intact; the
            # half-written one is removed so that a full disk gets its space back.
            _remove_unrecorded(Path(manager.directory), step)
            run_dir = Path(manager.directory).parent
            resume = f"then resume with: mnist train --run-dir {run_dir} --resume"
            if isinstance(exc, OSError):
                raise io_error(exc, f"saving a checkpoint in {manager.directory}") from None
            # TF reports the OS error inside its own error types; its message says which.
            message = getattr(exc, "message", str(exc))
            if "No space left on device" in message or isinstance(exc, tf.errors.ResourceExhaustedError):
                raise LocalIOError(f"no space left on the device while saving a checkpoint in {manager.directory}", f"free some disk space, {resume}") from None
            if "Permission denied" in message or "Read-only file system" in message:
                raise LocalIOError(f"permission denied while saving a checkpoint in {manager.directory}", f"check the directory's permissions, {resume}") from None
            first = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
            raise ModelError(f"could not save a checkpoint in {manager.directory}: {first}", f"the previous checkpoint is intact; {resume}") from None

    def restore_latest(self) -> str | None:
        """Restore the newest complete checkpoint; None when there is none."""
        path = weights.latest_in(self.restore_dir / CHECKPOINTS_DIR)
        if path:
            weights.restore(self.checkpoint, path)
            self._reconcile_best(path)
        return path

    def _reconcile_best(self, latest: str) -> None:
        """Make the loop's record of the best epoch agree with what best/ really holds.

        An epoch is saved to checkpoints/ and then, if it is the best so far, to best/. A
        full disk or a kill between the two leaves a latest checkpoint that records the
        new best epoch while best/ still holds the previous one; the finished run would
        then claim one epoch and score another.
        """
        state = self.state
        recorded = int(state.best_epoch.numpy())
        best_path = weights.latest_in(self.restore_dir / BEST_DIR)
        held = (weights.stored_number(best_path, "best_epoch") or 0) if best_path else 0
        if recorded == held:
            return
        at_end_of_best = recorded == int(state.epoch.numpy()) and int(state.step_in_epoch.numpy()) == 0
        if recorded and at_end_of_best:
            # The weights just restored are the best epoch's: finish the save that did not happen.
            self.save(step=int(latest.rsplit("-", 1)[1]), best=True)
            return
        # best/ is what gets scored, so the record follows it.
        state.best_epoch.assign(int(held))
        accuracy = weights.stored_number(best_path, "best_val_accuracy") if best_path else None
        state.best_val_accuracy.assign(-1.0 if accuracy is None else float(accuracy))

    def restore_best(self) -> str | None:
        """Restore the best checkpoint (or leave the weights as they are when there is none)."""
        path = weights.latest_in(Path(self.best.directory))
        if path:
            weights.restore(self.checkpoint, path)
        return path


def _remove_unrecorded(directory: Path, step: int) -> None:
    """Delete what a failed save of checkpoint `step` left behind, unless the state file records it."""
    prefix = directory / f"ckpt-{step}"
    try:
        if tf.train.latest_checkpoint(str(directory)) == str(prefix):
            return
        for leftover in tf.io.gfile.glob(f"{prefix}_temp*"):
            tf.io.gfile.rmtree(leftover) if tf.io.gfile.isdir(leftover) else tf.io.gfile.remove(leftover)
        for leftover in tf.io.gfile.glob(f"{prefix}.*"):
            tf.io.gfile.remove(leftover)
    except (tf.errors.OpError, ValueError, OSError):
        pass  # best effort: the error being reported matters more
