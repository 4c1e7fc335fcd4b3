"""The training loop: Python around compiled chunks of steps.

It reads top to bottom as three parts: set up (model, optimizer, checkpoints,
compiled steps), loop over epochs and the chunks within them, finish (score the
test split with the best weights, export the model, write the result). The loop
owns progress events, summaries, checkpoints, Ctrl-C and NaN handling; steps.py
owns the math. Data stays uint8 in memory.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mnist_cli.runs import layout, rundata, runs
from mnist_cli.core.config import TrainConfig, format_hidden
from mnist_cli.core.errors import DivergedError, Interrupted, LocalIOError, UsageError
from mnist_cli.core.fileio import io_error
from mnist_cli.core.tf_setup import import_tensorflow
from mnist_cli.data.idx import Splits
from mnist_cli.training.events import (
    EpochDone,
    EpochStarted,
    OnEvent,
    StepsDone,
    Testing,
    TrainEvent,
    TrainResult,
    TrainStarted,
)
from mnist_cli.training.stopping import StopRequest

tf = import_tensorflow()

from mnist_cli.training import checkpoints, distribute, summaries  # noqa: E402
from mnist_cli.model import network, scoring, steps, weights  # noqa: E402

__all__ = [
    "EpochDone",
    "EpochStarted",
    "OnEvent",
    "StepsDone",
    "Testing",
    "TrainEvent",
    "TrainResult",
    "TrainStarted",
    "epoch_order",
    "fit",
]


def epoch_order(seed: int, epoch: int, count: int) -> np.ndarray:
    """The shuffled order of training examples in an epoch, recomputable on resume."""
    return np.random.default_rng([seed, epoch]).permutation(count).astype(np.int32)


def _chunk_ends(position: int, full_steps: int, *, global_step: int, config: TrainConfig) -> int:
    # A compiled call ends at the next log line, step checkpoint or the last full batch.
    # Log lines count steps within the epoch (as the walk-through does), so every
    # epoch repeats the same few chunk lengths and XLA compiles each length once.
    end = min(full_steps, position + config.log_every - (position % config.log_every))
    if config.checkpoint_every:
        end = min(end, position + config.checkpoint_every - (global_step % config.checkpoint_every))
    return end


def fit(
    config: TrainConfig,
    data: Splits,
    *,
    run_dir: Path,
    on_event: OnEvent | None = None,
    deterministic: bool = True,
    placement: distribute.Placement | None = None,
    data_directory: Path | None = None,
) -> TrainResult:
    """Train (or resume) the run in `run_dir` and score it on the full test split.

    `data_directory`, the folder the data was read from, is recorded in the run's
    `data.json`, so `evaluate` and `--resume` find the same data.
    """
    emit = on_event or (lambda event: None)
    try:
        return _fit(config, data, run_dir=Path(run_dir), emit=emit, deterministic=deterministic, placement=placement, data_directory=data_directory)
    except (tf.errors.ResourceExhaustedError, MemoryError):
        # Checkpoint saves turn a full disk into their own error first; what is left is memory.
        raise LocalIOError(
            f"out of memory while training {config.model} (batch {config.batch_size}, layers {format_hidden(config.hidden)})",
            f"lower --batch-size or --hidden, or close what else uses the memory; then resume with: mnist train --run-dir {run_dir} --resume",
        ) from None


def _fit(
    config: TrainConfig,
    data: Splits,
    *,
    run_dir: Path,
    emit: OnEvent,
    deterministic: bool,
    placement: distribute.Placement | None,
    data_directory: Path | None,
) -> TrainResult:
    placement = placement or distribute.make_placement("one")
    if not placement.is_chief:
        # Every worker must take part in each checkpoint save, but only the chief
        # writes the run: the others save into a scratch directory, removed at the end.
        with tempfile.TemporaryDirectory(prefix="mnist-worker-") as scratch:
            loop = _Loop(config, data, run_dir=Path(scratch), restore_dir=run_dir, emit=emit, placement=placement, data_directory=None)
            result = loop.run(deterministic=deterministic)
        return dataclasses.replace(result, run_dir=str(run_dir), best_checkpoint=None, model_file=str(run_dir / layout.MODEL_FILE))
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise io_error(exc, f"creating {run_dir}") from None
    with runs.run_lock(run_dir):
        loop = _Loop(config, data, run_dir=run_dir, restore_dir=run_dir, emit=emit, placement=placement, data_directory=data_directory)
        return loop.run(deterministic=deterministic)


class _Loop:
    """One run's training, in the order it happens: set up, train, finish."""

    def __init__(
        self,
        config: TrainConfig,
        data: Splits,
        *,
        run_dir: Path,
        restore_dir: Path,
        emit: OnEvent,
        placement: distribute.Placement,
        data_directory: Path | None,
    ) -> None:
        self.config, self.data, self.run_dir, self.restore_dir = config, data, run_dir, restore_dir
        self.data_directory = data_directory
        self.emit, self.placement = emit, placement
        self.train_count = len(data.train_labels)
        if self.train_count == 0:
            raise UsageError("the training split is empty", "lower --val-split or use a data set with training images")
        self.full_steps, remainder = divmod(self.train_count, config.batch_size)
        self.steps_per_epoch = self.full_steps + (1 if remainder else 0)  # the last, smaller batch counts too
        self.stop = StopRequest()

    # ------------------------------------------------------------------ set up

    def run(self, *, deterministic: bool) -> TrainResult:
        """Set up, train the remaining epochs, score the test split, write the result."""
        import keras

        started = time.perf_counter()
        started_at = datetime.now(timezone.utc).astimezone()
        if deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(self.config.seed)
        self._build()
        try:
            with self.stop.installed():
                self._train()
            test, best_checkpoint = self._test()
        finally:
            self.writer.close()
        model_path = self.run_dir / layout.MODEL_FILE
        weights.save_keras_model(self.model, model_path)
        result = self._result(test, best_checkpoint, model_path=model_path, started=started, started_at=started_at)
        runs.write_json(self.run_dir / layout.RESULT_FILE, result.to_dict())
        return result

    def _build(self) -> None:
        config, data = self.config, self.data
        with self.placement.strategy.scope():
            self.model = network.build_model(config)
            self.optimizer = network.build_optimizer(config, steps_per_epoch=self.steps_per_epoch)
            self.optimizer.build(self.model.trainable_variables)  # before the first step, so no variable is created in a trace
        self.emit(network.describe(self.model))
        self.state = checkpoints.LoopState()
        self.saver = checkpoints.RunCheckpoints(
            self.run_dir, model=self.model, optimizer=self.optimizer, state=self.state, keep=config.keep_checkpoints, restore_dir=self.restore_dir
        )
        resumed_from = self.saver.restore_latest()
        # Read (and check) the history before anything is written: a damaged one refuses the resume.
        # Entries past the checkpoint (a crash between the two writes) are dropped.
        self.history = runs.load_history(self.restore_dir)[: self._epochs_done()] if resumed_from else []
        if resumed_from is None:
            config.save(self.run_dir)
        else:  # `--resume --epochs N` changes the plan: config.json says so
            runs.record_resumed_config(self.run_dir, config)
        if self.data_directory is not None:  # the latest data used, so a resume with --data-dir updates it
            rundata.record(self.run_dir, dataset=config.dataset, directory=self.data_directory)
        self.train_chunk = steps.make_train_chunk(self.model, self.optimizer, config, self.placement.strategy)
        self.eval_step = steps.make_eval_step(self.model, config)
        self.images = tf.constant(data.train_images)
        self.labels = tf.constant(data.train_labels)
        self.writer = summaries.RunSummaries(self.run_dir, config, data.class_names)
        self.emit(
            TrainStarted(
                run_dir=self.run_dir,
                config=config,
                resumed_from=resumed_from,
                start_epoch=self._epochs_done(),
                steps_per_epoch=self.steps_per_epoch,
                train_count=self.train_count,
                val_count=len(data.val_labels),
                test_count=len(data.test_labels),
                strategy=self.placement.name,
                replicas=self.placement.replicas,
            )
        )
        self.writer.start(sample_images=data.train_images[:30], sample_labels=data.train_labels[:30], resumed=resumed_from is not None)

    def _epochs_done(self) -> int:
        return int(self.state.epoch.numpy())

    def _global_step(self) -> int:
        return int(self.optimizer.iterations.numpy())

    # ------------------------------------------------------------------ train

    def _train(self) -> None:
        for epoch in range(self._epochs_done(), self.config.epochs):
            seconds = self._train_epoch(epoch)
            self._finish_epoch(epoch, seconds)
            if self.stop.requested and epoch + 1 < self.config.epochs:
                self._interrupted(f"interrupted after epoch {epoch + 1}; saved {self.saver.latest.latest_checkpoint}")

    def _train_epoch(self, epoch: int) -> float:
        """Run the epoch's remaining chunks; returns the seconds spent in them."""
        batches, tail = self._epoch_batches(epoch)
        position = int(self.state.step_in_epoch.numpy())
        self.emit(EpochStarted(epoch=epoch + 1, epochs=self.config.epochs, step=position, steps=self.steps_per_epoch))
        seconds = 0.0
        global_step = self._global_step()  # then read once after each chunk
        while position < self.steps_per_epoch:
            if position < self.full_steps:
                end = _chunk_ends(position, self.full_steps, global_step=global_step, config=self.config)
                chunk = batches[position:end]
            else:  # the last, smaller batch: every example is trained on each epoch
                end, chunk = self.steps_per_epoch, tail
            began = time.perf_counter()
            loss_sum, correct = self.train_chunk(self.images, self.labels, chunk)
            loss_sum, correct = float(loss_sum.numpy()), int(correct.numpy())
            chunk_seconds = time.perf_counter() - began
            seconds += chunk_seconds
            global_step = self._global_step()
            self._record_chunk(
                epoch, end=end, steps=end - position, samples=int(chunk.size), loss_sum=loss_sum, correct=correct,
                seconds=chunk_seconds, global_step=global_step,
            )  # fmt: skip
            position = end
            if position < self.steps_per_epoch:
                if self.config.checkpoint_every and global_step % self.config.checkpoint_every == 0:
                    self.saver.save(step=global_step)
                if self.stop.requested:
                    path = self.saver.save(step=global_step)
                    self._interrupted(f"interrupted in epoch {epoch + 1} at step {position}/{self.steps_per_epoch}; saved {path}")
        return seconds

    def _epoch_batches(self, epoch: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The epoch's full batches as rows of example indices, and the smaller last batch (if any)."""
        order = epoch_order(self.config.seed, epoch, self.train_count)
        size = self.config.batch_size
        batches = order[: self.full_steps * size].reshape(self.full_steps, size)
        tail = order[self.full_steps * size :][None, :] if self.steps_per_epoch > self.full_steps else None
        return batches, tail

    def _record_chunk(
        self, epoch: int, *, end: int, steps: int, samples: int, loss_sum: float, correct: int, seconds: float, global_step: int
    ) -> None:
        if not math.isfinite(loss_sum):
            last = self.saver.latest.latest_checkpoint
            raise DivergedError(
                f"the loss became {loss_sum / samples} in epoch {epoch + 1}, step {end}: training diverged"
                + (f"; the last good checkpoint is {last}" if last else ""),
                "lower --lr (or use --optimizer adam), then start a new run",
            )
        self.state.add_chunk(loss_sum=loss_sum, correct=correct, samples=samples, step_in_epoch=end)
        rate = samples / max(seconds, 1e-9)
        learning_rate = network.current_learning_rate(self.optimizer)
        loss, accuracy = loss_sum / samples, correct / samples
        self.emit(
            StepsDone(
                epoch=epoch + 1,
                epochs=self.config.epochs,
                step=end,
                steps=self.steps_per_epoch,
                global_step=global_step,
                loss=loss,
                accuracy=accuracy,
                samples_per_second=rate,
                learning_rate=learning_rate,
            )
        )
        self.writer.steps(step=global_step, steps=steps, loss=loss, accuracy=accuracy, learning_rate=learning_rate, samples_per_second=rate)

    def _finish_epoch(self, epoch: int, seconds: float) -> None:
        """Validate, record the epoch (history first, then checkpoints), write summaries, report."""
        data = self.data
        train = self.state.epoch_totals(seconds)
        val_scores = scoring.score(self.eval_step, data.val_images, data.val_labels) if len(data.val_labels) else None
        is_best = val_scores is not None and val_scores.accuracy > float(self.state.best_val_accuracy.numpy())
        self.state.end_epoch(epoch + 1, best_val_accuracy=val_scores.accuracy if is_best else None)
        learning_rate = network.current_learning_rate(self.optimizer)
        entry = {
            "epoch": epoch + 1,
            "train_loss": train["loss"],
            "train_accuracy": train["accuracy"],
            "val_loss": val_scores.loss if val_scores else None,
            "val_accuracy": val_scores.accuracy if val_scores else None,
            "lr": learning_rate,
            "seconds": seconds,
            "samples": train["samples"],
            "samples_per_second": train["samples_per_second"],
        }
        self.history.append(entry)
        # History first, checkpoint second: a kill between the two leaves an extra entry,
        # which resume drops (it keeps one entry per epoch of the checkpoint), never a gap.
        runs.write_json(self.run_dir / layout.HISTORY_FILE, self.history)
        step = self._global_step()
        checkpoint = self.saver.save(step=step)
        if is_best:
            self.saver.save(step=step, best=True)
        self.writer.epoch(
            epoch=epoch + 1,
            train=train,
            val={"loss": val_scores.loss, "accuracy": val_scores.accuracy} if val_scores else None,
            model=self.model,
            val_images=data.val_images,
            val_labels=data.val_labels,
            val_predictions=val_scores.predictions if val_scores is not None else None,
        )
        self.emit(
            EpochDone(
                epoch=epoch + 1,
                epochs=self.config.epochs,
                train_loss=train["loss"],
                train_accuracy=train["accuracy"],
                val_loss=entry["val_loss"],
                val_accuracy=entry["val_accuracy"],
                learning_rate=learning_rate,
                seconds=seconds,
                samples_per_second=train["samples_per_second"],
                best=is_best,
                checkpoint=checkpoint,
            )
        )

    def _interrupted(self, reason: str) -> None:
        raise Interrupted(reason, f"resume with: mnist train --run-dir {self.run_dir} --resume")

    # ------------------------------------------------------------------ finish

    def _test(self) -> tuple[scoring.Scores, str | None]:
        """Score the test split with the best weights (the last ones without a validation split)."""
        # Restoring best/ rewinds the loop state too, so keep the final figures first.
        self.completed = self._epochs_done()
        self.best_epoch = int(self.state.best_epoch.numpy()) or None
        self.best_val_accuracy = float(self.state.best_val_accuracy.numpy())
        best_checkpoint = self.saver.restore_best()
        self.emit(Testing(count=len(self.data.test_labels), checkpoint=best_checkpoint or self.saver.latest.latest_checkpoint))
        test = scoring.score(self.eval_step, self.data.test_images, self.data.test_labels)
        self.writer.test(epoch=self.completed, accuracy=test.accuracy, loss=test.loss)
        return test, best_checkpoint

    def _result(self, test: scoring.Scores, best_checkpoint: str | None, *, model_path: Path, started: float, started_at: datetime) -> TrainResult:
        last: dict[str, Any] = self.history[-1] if self.history else {}
        train_seconds = sum(entry["seconds"] for entry in self.history) or 1e-9
        return TrainResult(
            run_dir=str(self.run_dir),
            dataset=self.config.dataset,
            model=self.config.model,
            epochs=self.completed,
            train_loss=last.get("train_loss", math.nan),
            train_accuracy=last.get("train_accuracy", math.nan),
            val_loss=last.get("val_loss"),
            val_accuracy=last.get("val_accuracy"),
            test_loss=test.loss,
            test_accuracy=test.accuracy,
            best_checkpoint=best_checkpoint,
            best_epoch=self.best_epoch if best_checkpoint else None,
            best_val_accuracy=self.best_val_accuracy if best_checkpoint else None,
            model_file=str(model_path),
            params=int(self.model.count_params()),
            seconds=time.perf_counter() - started,
            samples_per_second=sum(entry["samples"] for entry in self.history) / train_seconds,
            started=started_at.isoformat(timespec="seconds"),
            finished=datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        )
