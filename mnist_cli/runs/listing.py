"""`mnist runs`: a summary of every run directory under a root, a broken one included."""

from __future__ import annotations

import dataclasses
import math
import os
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mnist_cli.core.config import TrainConfig
from mnist_cli.core.errors import LocalIOError, MnistError, ModelError, UsageError
from mnist_cli.runs.layout import CONFIG_FILE, LOCK_FILE, RESULT_FILE, STATUS_FILE, STUDY_FILE
from mnist_cli.runs.runs import (
    BrokenRunFile,
    count_or_none,
    load_history,
    read_run_file,
    run_started,
)

SORT_KEYS = ("date", "test", "val", "name")
# A run's state as `mnist runs` shows it (core/errors.py's INTERRUPTED is an exit code, not this).
STATE_FINISHED = "finished"
STATE_INTERRUPTED = "interrupted"
STATE_RUNNING = "running"
STATE_BROKEN = "broken"
STATE_PRUNED = "pruned"  # a `mnist tune` trial its pruner stopped; consistent, resumable like an interrupted run


@dataclass(frozen=True)
class RunSummary:
    """One run directory as `mnist runs` lists it; fields a broken run lacks are None."""

    name: str
    path: Path
    status: str
    reason: str | None = None
    started: datetime | None = None
    config: TrainConfig | None = None
    epochs_done: int | None = None
    best_val_accuracy: float | None = None
    test_accuracy: float | None = None
    seconds: float | None = None
    params: int | None = None  # the network's parameter count, from result.json

    @property
    def epochs_planned(self) -> int | None:
        """The epochs the run was asked for."""
        return self.config.epochs if self.config else None

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain JSON types."""
        config = self.config
        return {
            "name": self.name,
            "path": str(self.path),
            "status": self.status,
            "reason": self.reason,
            "started": self.started.isoformat(timespec="seconds") if self.started else None,
            "dataset": config.dataset if config else None,
            "model": config.model if config else None,
            "optimizer": config.optimizer if config else None,
            "lr": config.lr if config else None,
            "batch_size": config.batch_size if config else None,
            "loss": config.loss if config else None,
            "schedule": config.schedule if config else None,
            "recipe": config.recipe if config else None,
            "augment": config.augment if config else None,
            "params": self.params,
            "epochs_done": self.epochs_done,
            "epochs_planned": self.epochs_planned,
            "best_val_accuracy": self.best_val_accuracy,
            "test_accuracy": self.test_accuracy,
            "seconds": self.seconds,
            "config": config.to_dict() if config else None,
        }


def is_running(run_dir: Path) -> bool:
    """Whether another process holds the run's lock file (a training writing it)."""
    from filelock import FileLock, Timeout

    lock_path = Path(run_dir) / LOCK_FILE
    # The trainer creates the lock file; without one nothing holds it, and probing would create it.
    # Only a regular file is probed (lstat: a symlink, FIFO or directory is nobody's lock).
    try:
        if not stat.S_ISREG(os.lstat(lock_path).st_mode):
            return False
    except OSError:
        return False
    lock = FileLock(lock_path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    except OSError:
        # A lock we may not open (another user's run) says nothing either way.
        return False
    lock.release()
    return False


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def summarize_run(run_dir: Path) -> RunSummary:
    """Read one run directory; never raises for bad contents, which give status "broken" and a reason."""
    run_dir = Path(run_dir)
    running = is_running(run_dir)
    status = STATE_RUNNING if running else STATE_INTERRUPTED
    started = run_started(run_dir)
    try:
        config = TrainConfig.load(run_dir)
    except MnistError as exc:
        if running:  # a training that has not written its config yet
            return RunSummary(run_dir.name, run_dir, STATE_RUNNING, started=started)
        reason = exc.message.replace(str(run_dir) + os.sep, "")  # "config.json is missing", not the whole path
        return RunSummary(run_dir.name, run_dir, STATE_BROKEN, reason=reason, started=started)
    try:
        history = load_history(run_dir)
        result = None if running else read_run_file(run_dir / RESULT_FILE, dict)
    except ModelError as exc:
        reason = exc.message.replace(str(run_dir) + os.sep, "")
        return RunSummary(run_dir.name, run_dir, STATE_BROKEN, reason=reason, started=started, config=config)
    except BrokenRunFile as exc:
        return RunSummary(run_dir.name, run_dir, STATE_BROKEN, reason=str(exc), started=started, config=config)
    val_accuracies = [v for v in (_number(epoch.get("val_accuracy")) for epoch in history) if v is not None]
    seconds = [v for v in (_number(epoch.get("seconds")) for epoch in history) if v is not None]
    summary = RunSummary(
        run_dir.name,
        run_dir,
        status,
        started=started,
        config=config,
        epochs_done=len(history),
        best_val_accuracy=max(val_accuracies) if val_accuracies else None,
        seconds=sum(seconds) if seconds else None,
    )
    if result is None:
        return _pruned(run_dir, summary) if not running else summary
    epochs = result.get("epochs")
    if not history and isinstance(epochs, int) and not isinstance(epochs, bool):
        epochs_done: int | None = epochs
    else:
        epochs_done = summary.epochs_done
    best_val = _number(result.get("best_val_accuracy"))
    seconds_total = _number(result.get("seconds"))
    return RunSummary(
        run_dir.name,
        run_dir,
        STATE_FINISHED,
        started=started,
        config=config,
        epochs_done=epochs_done,
        best_val_accuracy=best_val if best_val is not None else summary.best_val_accuracy,
        test_accuracy=_number(result.get("test_accuracy")),
        seconds=seconds_total if seconds_total is not None else summary.seconds,
        params=count_or_none(result.get("params")),
    )


def _pruned(run_dir: Path, summary: RunSummary) -> RunSummary:
    # A marker, not a missing result.json, tells a pruned trial from an interrupted run.
    try:
        marker = read_run_file(run_dir / STATUS_FILE, dict)
    except BrokenRunFile:
        return summary
    if marker is None or marker.get("status") != STATE_PRUNED:
        return summary
    reason = marker.get("reason")
    return dataclasses.replace(summary, status=STATE_PRUNED, reason=reason if isinstance(reason, str) else None)


def _sort_key(key: str) -> Any:
    def missing_last(value: float | None) -> tuple[bool, float]:
        return (value is None, -(value or 0.0))

    if key == "name":
        return lambda run: run.name
    if key == "test":
        return lambda run: (missing_last(run.test_accuracy), run.name)
    if key == "val":
        return lambda run: (missing_last(run.best_val_accuracy), run.name)
    return lambda run: (run.started is None, -(run.started.timestamp() if run.started else 0.0), run.name)


def _study_trials(study_dir: Path) -> list[RunSummary]:
    try:
        trials = sorted(path for path in study_dir.iterdir() if path.is_dir() and not path.name.startswith("."))
    except OSError:
        return []
    return [dataclasses.replace(summary, name=f"{study_dir.name}/{summary.name}") for summary in map(summarize_run, trials)]


def list_runs(root: Path, *, sort: str = "date") -> list[RunSummary]:
    """Every run directory under `root`, newest first by default ("test"/"val": best first, "name": A to Z)."""
    if sort not in SORT_KEYS:
        raise UsageError(f"--sort must be one of {', '.join(SORT_KEYS)}, got {sort!r}")
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise LocalIOError(f"{root} is not a directory", "pass --root with the folder that holds your runs")
    try:
        children = sorted(root.iterdir()) if root.is_dir() else []
    except OSError as exc:
        raise LocalIOError(f"cannot list {root}: {exc.strerror or exc}", "check the path and its permissions") from None
    # Hidden folders are not runs (editor and tool state, for example).
    runs: list[RunSummary] = []
    for child in children:
        if not child.is_dir() or child.name.startswith("."):
            continue
        if (child / STUDY_FILE).is_file() and not (child / CONFIG_FILE).exists():
            runs += _study_trials(child)  # a `mnist tune` study: its trials sit beside the other runs
        else:
            runs.append(summarize_run(child))
    return sorted(runs, key=_sort_key(sort))


