"""The training loop: Python around compiled chunks of steps.

The loop owns progress events, TensorBoard summaries, checkpoints, Ctrl-C and
NaN handling; `steps.py` owns the math. Data stays uint8 in memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import filelock
import numpy as np

from mnist_cli.core import runs
from mnist_cli.core.config import CONFIG_FILE, TrainConfig
from mnist_cli.data.idx import Splits
from mnist_cli.core.errors import BusyError, DivergedError, Interrupted, ModelError, UsageError
from mnist_cli.core.fileio import atomic_write_text, io_error
from mnist_cli.core.tf_setup import import_tensorflow

tf = import_tensorflow()

from mnist_cli.training import checkpoints, distribute, scoring, network, steps, summaries  # noqa: E402

EVAL_BATCH = 1000


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

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return asdict(self)


OnEvent = Callable[[Any], None]


def new_run_dir(config: TrainConfig, root: Path) -> Path:
    """A fresh `runs/<dataset>-<model>-<time>` directory name that does not exist yet."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{config.dataset}-{config.model}-{stamp}"
    candidate, counter = base, 2
    while candidate.exists():
        candidate = base.with_name(f"{base.name}-{counter}")
        counter += 1
    return candidate


def resolve_run(
    config: TrainConfig,
    *,
    run_dir: Path | None,
    resume: bool,
    root: Path,
    overrides: dict[str, Any] | None = None,
) -> tuple[Path, TrainConfig]:
    """Decide the run directory and the config: a new run, or the saved config of a resumed one."""
    if not resume:
        if run_dir is None:
            return new_run_dir(config, root), config
        if (Path(run_dir) / CONFIG_FILE).exists():
            raise UsageError(f"{run_dir} already holds a run", "add --resume to continue it, or choose another --run-dir")
        return Path(run_dir), config
    target = Path(run_dir) if run_dir is not None else runs.latest_run(root)
    if not (target / CONFIG_FILE).is_file():
        raise ModelError(f"{target} holds no run to resume (no {CONFIG_FILE})", "check --run-dir, or start a new run without --resume")
    saved = TrainConfig.load(target)
    changes = dict(overrides or {})
    epochs = changes.pop("epochs", None)
    conflicts = [f"--{name.replace('_', '-')}" for name, value in changes.items() if getattr(saved, name) != value]
    if conflicts:
        raise UsageError(
            f"--resume continues {target} with its saved config; {', '.join(conflicts)} differ from it",
            "only --epochs can change on resume; start a new run to change the others",
        )
    return target, saved.replace(epochs=epochs) if epochs is not None else saved


@contextlib.contextmanager
def _run_lock(run_dir: Path) -> Iterator[None]:
    lock = filelock.FileLock(str(Path(run_dir) / runs.LOCK_FILE))
    try:
        lock.acquire(timeout=1)  # `mnist runs` may hold it for an instant to see whether a run is live
    except filelock.Timeout:
        raise BusyError(f"another `mnist train` is writing to {run_dir}", "wait for it to finish, or choose another --run-dir") from None
    try:
        yield
    finally:
        lock.release()


class _StopRequest:
    """Turns the first Ctrl-C (or SIGTERM) into a request the loop honours between chunks."""

    def __init__(self) -> None:
        self.requested = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def epoch_order(seed: int, epoch: int, count: int) -> np.ndarray:
    """The shuffled order of training examples in an epoch, recomputable on resume."""
    return np.random.default_rng([seed, epoch]).permutation(count).astype(np.int32)


def _chunk_ends(position: int, steps_per_epoch: int, *, global_step: int, config: TrainConfig) -> int:
    # A compiled call ends at the next log line, step checkpoint or the epoch's end.
    # Log lines count steps within the epoch (as the walk-through does), so every
    # epoch repeats the same few chunk lengths and XLA compiles each length once.
    end = min(steps_per_epoch, position + config.log_every - (position % config.log_every))
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
) -> TrainResult:
    """Train (or resume) the run in `run_dir` and score it on the full test split."""
    emit = on_event or (lambda event: None)
    run_dir = Path(run_dir)
    placement = placement or distribute.make_placement("one")
    if not placement.is_chief:
        # Every worker must take part in each checkpoint save, but only the chief
        # writes the run: the others save into a scratch directory, removed at the end.
        with tempfile.TemporaryDirectory(prefix="mnist-worker-") as scratch:
            result = _fit_locked(
                config, data, run_dir=Path(scratch), restore_dir=run_dir, emit=emit, deterministic=deterministic, placement=placement
            )
        return dataclasses.replace(result, run_dir=str(run_dir), best_checkpoint=None, model_file=str(run_dir / runs.MODEL_FILE))
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise io_error(exc, f"creating {run_dir}") from None
    with _run_lock(run_dir):
        return _fit_locked(config, data, run_dir=run_dir, restore_dir=run_dir, emit=emit, deterministic=deterministic, placement=placement)


def _fit_locked(
    config: TrainConfig,
    data: Splits,
    *,
    run_dir: Path,
    restore_dir: Path,
    emit: OnEvent,
    deterministic: bool,
    placement: distribute.Placement,
) -> TrainResult:
    import keras

    started = time.perf_counter()
    started_at = datetime.now(timezone.utc).astimezone()
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.seed)
    train_count, val_count = len(data.train_labels), len(data.val_labels)
    if train_count == 0:
        raise UsageError("the training split is empty", "lower --val-split or use a data set with training images")
    steps_per_epoch = -(-train_count // config.batch_size)  # the last, smaller batch counts too

    with placement.strategy.scope():
        model = network.build_model(config)
        optimizer = network.build_optimizer(config, steps_per_epoch=steps_per_epoch)
        optimizer.build(model.trainable_variables)  # before the first step, so no variable is created in a trace
    state = checkpoints.LoopState()
    saver = checkpoints.RunCheckpoints(
        run_dir, model=model, optimizer=optimizer, state=state, keep=config.keep_checkpoints, restore_dir=restore_dir
    )
    resumed_from = saver.restore_latest()
    if resumed_from is None:
        config.save(run_dir)
    train_chunk = steps.make_train_chunk(model, optimizer, config, placement.strategy)
    eval_step = steps.make_eval_step(model, config)

    images = tf.constant(data.train_images)
    labels = tf.constant(data.train_labels)
    writer = summaries.RunSummaries(run_dir, config, data.class_names)
    # Entries past the checkpoint (a crash between the two writes) are dropped.
    history = _load_history(run_dir)[: int(state.epoch.numpy())] if resumed_from else []
    emit(
        TrainStarted(
            run_dir=run_dir,
            config=config,
            resumed_from=resumed_from,
            start_epoch=int(state.epoch.numpy()),
            steps_per_epoch=steps_per_epoch,
            train_count=train_count,
            val_count=val_count,
            strategy=placement.name,
            replicas=placement.replicas,
            test_count=len(data.test_labels),
        )
    )
    writer.start(sample_images=data.train_images[:30], sample_labels=data.train_labels[:30], resumed=resumed_from is not None)
    stop = _StopRequest()
    try:
        with stop.installed():
            _train_epochs(
                config,
                data,
                run_dir=run_dir,
                emit=emit,
                stop=stop,
                parts=_Parts(model, optimizer, state, saver, train_chunk, eval_step, writer, images, labels),
                history=history,
            )
        # Restoring best/ rewinds the loop state too, so read the final figures first.
        completed = int(state.epoch.numpy())
        best_epoch = int(state.best_epoch.numpy()) or None
        best_val_accuracy = float(state.best_val_accuracy.numpy())
        best_checkpoint = saver.restore_best()
        checkpoint_used = best_checkpoint or saver.latest.latest_checkpoint
        emit(Testing(count=len(data.test_labels), checkpoint=checkpoint_used))
        test = scoring.score(eval_step, data.test_images, data.test_labels, batch_size=EVAL_BATCH)
        writer.test(epoch=completed, accuracy=test.accuracy, loss=test.loss)
    finally:
        writer.close()
    model_path = run_dir / runs.MODEL_FILE
    _export_keras(model, model_path)
    last = history[-1] if history else {}
    train_seconds = sum(entry["seconds"] for entry in history) or 1e-9
    result = TrainResult(
        run_dir=str(run_dir),
        dataset=config.dataset,
        model=config.model,
        epochs=completed,
        train_loss=last.get("train_loss", math.nan),
        train_accuracy=last.get("train_accuracy", math.nan),
        val_loss=last.get("val_loss"),
        val_accuracy=last.get("val_accuracy"),
        test_loss=test.loss,
        test_accuracy=test.accuracy,
        best_checkpoint=best_checkpoint,
        best_epoch=best_epoch if best_checkpoint else None,
        best_val_accuracy=best_val_accuracy if best_checkpoint else None,
        model_file=str(model_path),
        seconds=time.perf_counter() - started,
        samples_per_second=sum(entry["samples"] for entry in history) / train_seconds,
        started=started_at.isoformat(timespec="seconds"),
        finished=datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
    )
    atomic_write_text(run_dir / runs.RESULT_FILE, _dumps(result.to_dict()))
    return result


@dataclass
class _Parts:
    model: Any
    optimizer: Any
    state: checkpoints.LoopState
    saver: checkpoints.RunCheckpoints
    train_chunk: Any
    eval_step: Any
    writer: summaries.RunSummaries
    images: Any
    labels: Any


def _train_epochs(
    config: TrainConfig,
    data: Splits,
    *,
    run_dir: Path,
    emit: OnEvent,
    stop: _StopRequest,
    parts: _Parts,
    history: list[dict[str, Any]],
) -> None:
    state, saver = parts.state, parts.saver
    train_count = len(data.train_labels)
    full_steps = train_count // config.batch_size
    total_steps = full_steps + (1 if train_count % config.batch_size else 0)

    def global_step() -> int:
        return int(parts.optimizer.iterations.numpy())

    def save_and_stop(reason: str) -> None:
        path = saver.save(step=global_step())
        raise Interrupted(
            f"{reason}; saved {path}",
            f"resume with: mnist train --run-dir {run_dir} --resume",
        )

    for epoch in range(int(state.epoch.numpy()), config.epochs):
        order = epoch_order(config.seed, epoch, train_count)
        batches = order[: full_steps * config.batch_size].reshape(full_steps, config.batch_size)
        if total_steps > full_steps:
            tail = order[full_steps * config.batch_size :][None, :]
        epoch_seconds = 0.0
        position = int(state.step_in_epoch.numpy())
        emit(EpochStarted(epoch=epoch + 1, epochs=config.epochs, step=position, steps=total_steps))
        while position < total_steps:
            if position < full_steps:
                end = _chunk_ends(position, full_steps, global_step=global_step(), config=config)
                chunk = batches[position:end]
            else:  # the last, smaller batch: every example is trained on each epoch
                end, chunk = total_steps, tail
            began = time.perf_counter()
            loss_sum, correct = parts.train_chunk(parts.images, parts.labels, chunk)
            loss_sum, correct = float(loss_sum.numpy()), int(correct.numpy())
            seconds = time.perf_counter() - began
            epoch_seconds += seconds
            samples = int(chunk.size)
            if not math.isfinite(loss_sum):
                last = saver.latest.latest_checkpoint
                raise DivergedError(
                    f"the loss became {loss_sum / samples} in epoch {epoch + 1}, step {end}: training diverged"
                    + (f"; the last good checkpoint is {last}" if last else ""),
                    "lower --lr (or use --optimizer adam), then start a new run",
                )
            state.loss_sum.assign_add(loss_sum)
            state.correct.assign_add(correct)
            state.seen.assign_add(samples)
            state.step_in_epoch.assign(end)
            position = end
            rate = samples / max(seconds, 1e-9)
            learning_rate = network.current_learning_rate(parts.optimizer)
            step = global_step()  # one read of the optimizer's counter per chunk
            emit(
                StepsDone(
                    epoch=epoch + 1,
                    epochs=config.epochs,
                    step=position,
                    steps=total_steps,
                    global_step=step,
                    loss=loss_sum / samples,
                    accuracy=correct / samples,
                    samples_per_second=rate,
                    learning_rate=learning_rate,
                )
            )
            parts.writer.steps(
                step=step, loss=loss_sum / samples, accuracy=correct / samples, learning_rate=learning_rate, samples_per_second=rate
            )
            if position < total_steps:
                if config.checkpoint_every and step % config.checkpoint_every == 0:
                    saver.save(step=step)
                if stop.requested:
                    save_and_stop(f"interrupted in epoch {epoch + 1} at step {position}/{total_steps}")
        _finish_epoch(config, data, epoch=epoch, seconds=epoch_seconds, parts=parts, emit=emit, history=history, run_dir=run_dir)
        if stop.requested and epoch + 1 < config.epochs:
            raise Interrupted(
                f"interrupted after epoch {epoch + 1}; saved {saver.latest.latest_checkpoint}",
                f"resume with: mnist train --run-dir {run_dir} --resume",
            )


def _finish_epoch(
    config: TrainConfig,
    data: Splits,
    *,
    epoch: int,
    seconds: float,
    parts: _Parts,
    emit: OnEvent,
    history: list[dict[str, Any]],
    run_dir: Path,
) -> None:
    state = parts.state
    seen = int(state.seen.numpy())
    train = {
        "loss": float(state.loss_sum.numpy()) / max(seen, 1),
        "accuracy": int(state.correct.numpy()) / max(seen, 1),
        "samples_per_second": seen / max(seconds, 1e-9),
    }
    val = None
    val_scores = None
    if len(data.val_labels):
        val_scores = scoring.score(parts.eval_step, data.val_images, data.val_labels, batch_size=EVAL_BATCH)
        val = {"loss": val_scores.loss, "accuracy": val_scores.accuracy}
    is_best = val is not None and val["accuracy"] > float(state.best_val_accuracy.numpy())
    state.epoch.assign(epoch + 1)
    state.step_in_epoch.assign(0)
    state.loss_sum.assign(0.0)
    state.correct.assign(0)
    state.seen.assign(0)
    if is_best:
        state.best_val_accuracy.assign(val["accuracy"])
        state.best_epoch.assign(epoch + 1)
    learning_rate = network.current_learning_rate(parts.optimizer)
    entry = {
        "epoch": epoch + 1,
        "train_loss": train["loss"],
        "train_accuracy": train["accuracy"],
        "val_loss": val["loss"] if val else None,
        "val_accuracy": val["accuracy"] if val else None,
        "lr": learning_rate,
        "seconds": seconds,
        "samples": seen,
        "samples_per_second": train["samples_per_second"],
    }
    history.append(entry)
    # History first, checkpoint second: a kill between the two leaves an extra entry,
    # which resume drops (it keeps one entry per epoch of the checkpoint), never a gap.
    atomic_write_text(run_dir / runs.HISTORY_FILE, _dumps(history))
    step = int(parts.optimizer.iterations.numpy())
    checkpoint = parts.saver.save(step=step)
    if is_best:
        parts.saver.save(step=step, best=True)
    parts.writer.epoch(
        epoch=epoch + 1,
        train=train,
        val=val,
        model=parts.model,
        val_images=data.val_images,
        val_labels=data.val_labels,
        val_predictions=val_scores.predictions if val_scores is not None else None,
    )
    emit(
        EpochDone(
            epoch=epoch + 1,
            epochs=config.epochs,
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


def _export_keras(model: Any, path: Path) -> None:
    # Keras insists on the .keras suffix, so the temporary file keeps it.
    from mnist_cli.core.fileio import fsync_dir

    temporary = path.with_name(f".{path.stem}.tmp.keras")
    try:
        model.save(temporary)
        temporary.replace(path)
        fsync_dir(path.parent)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise io_error(exc, f"writing {path}") from None


def _load_history(run_dir: Path) -> list[dict[str, Any]]:
    import json

    try:
        entries = json.loads((run_dir / runs.HISTORY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return entries if isinstance(entries, list) else []


def _dumps(payload: Any) -> str:
    import json

    return json.dumps(payload, indent=2, allow_nan=False, default=str) + "\n"
