"""Run directories: their file names, the most recent run, and a summary of each run under a root."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mnist_cli.core.config import CONFIG_FILE, TrainConfig
from mnist_cli.core.errors import BusyError, LocalIOError, MnistError, ModelError, UsageError
from mnist_cli.core.fileio import atomic_write_text
from mnist_cli.core.safeio import UnsafeFile, read_json

HISTORY_FILE = "history.json"
RESULT_FILE = "result.json"
LOCK_FILE = ".lock"
CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"
MODEL_FILE = "model.keras"
# Written by `mnist tune`: a trial run stopped early by the pruner, and the folder holding a study's trials.
STATUS_FILE = "status.json"
STUDY_FILE = "study.json"
DEFAULT_RUNS_ROOT = "runs"
RUNS_DIR_ENV = "MNIST_RUNS_DIR"

__all__ = [
    "BEST_DIR",
    "BROKEN",
    "CHECKPOINT_STATE",
    "CheckpointState",
    "FINISHED",
    "INTERRUPTED",
    "PRUNED",
    "RUNNING",
    "CHECKPOINTS_DIR",
    "CONFIG_FILE",
    "DEFAULT_RUNS_ROOT",
    "HISTORY_FILE",
    "LOCK_FILE",
    "MODEL_FILE",
    "RESULT_FILE",
    "RUNS_DIR_ENV",
    "STATUS_FILE",
    "STUDY_FILE",
    "RunSummary",
    "SORT_KEYS",
    "checkpoints_in",
    "latest_run",
    "list_runs",
    "load_history",
    "new_run_dir",
    "read_checkpoint_state",
    "resolve_run",
    "run_lock",
    "run_subdir",
    "runs_root",
    "write_json",
]


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    # Naive stamps are taken as local time so they compare with mtimes.
    return moment if moment.tzinfo else moment.astimezone()


def _read_json(path: Path) -> Any:
    # Regular files only, size- and depth-capped: a run directory is untrusted input.
    return read_json(path)


def run_started(run_dir: Path) -> datetime | None:
    """When a run started: result.json's "started", else config.json's mtime; None without a config."""
    run_dir = Path(run_dir)
    try:
        started = _parse_time(_read_json(run_dir / RESULT_FILE).get("started"))
    except (OSError, ValueError, AttributeError):  # UnsafeFile is a ValueError
        started = None
    if started is not None:
        return started
    try:
        return datetime.fromtimestamp((run_dir / CONFIG_FILE).stat().st_mtime, tz=timezone.utc).astimezone()
    except OSError:
        return None


def latest_run(root: Path) -> Path:
    """The most recent run directory under `root` that has a config.json."""
    root = Path(root)
    dated: list[tuple[datetime, str, Path]] = []
    try:
        children = list(root.iterdir()) if root.is_dir() else []
    except OSError:
        children = []
    for child in children:
        if child.is_dir() and not child.name.startswith(".") and (child / CONFIG_FILE).is_file():
            started = run_started(child)
            if started is not None:
                dated.append((started, child.name, child))
    if not dated:
        raise ModelError(f"no runs in {root}", "train one with `mnist train`, or pass the run directory")
    return max(dated, key=lambda item: (item[0], item[1]))[2]


# --------------------------------------------------------------------------- a training's run directory


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
    if run_dir is not None:
        # A run being written is busy (exit 9) before anything else is said about it.
        _refuse_if_busy(Path(run_dir))
    if not resume:
        if run_dir is None:
            return new_run_dir(config, root), config
        if (Path(run_dir) / CONFIG_FILE).exists():
            raise UsageError(f"{run_dir} already holds a run", "add --resume to continue it, or choose another --run-dir")
        return Path(run_dir), config
    target = Path(run_dir) if run_dir is not None else latest_run(root)
    if not (target / CONFIG_FILE).is_file():
        raise ModelError(f"{target} holds no run to resume (no {CONFIG_FILE})", "check --run-dir, or start a new run without --resume")
    if run_dir is None:
        _refuse_if_busy(target)
    saved = TrainConfig.load(target)
    changes = dict(overrides or {})
    epochs = changes.pop("epochs", None)
    conflicts = [f"--{name.replace('_', '-')}" for name, value in changes.items() if getattr(saved, name) != value]
    if conflicts:
        raise UsageError(
            f"--resume continues {target} with its saved config; {', '.join(conflicts)} differ from it",
            "only --epochs can change on resume; start a new run to change the others",
        )
    done = _finished_epochs(target)
    if done is not None and done >= (epochs if epochs is not None else saved.epochs):
        raise UsageError(
            f"{target} is finished: it trained all {done} of its epochs",
            f"to train on, give more epochs: mnist train --run-dir {target} --resume --epochs {2 * done}",
        )
    return target, saved.replace(epochs=epochs) if epochs is not None else saved


def _refuse_if_busy(run_dir: Path) -> None:
    # Only a lock file that exists can be held; probing must not create one.
    if (run_dir / LOCK_FILE).is_file():
        with run_lock(run_dir):
            pass


def _finished_epochs(run_dir: Path) -> int | None:
    """The epochs a finished run trained (from result.json), or None when it has not finished."""
    try:
        result = _load_object_file(run_dir / RESULT_FILE, dict)
    except _Broken:
        return None
    return _count(result.get("epochs")) if result else None


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run's lock file while training writes it; a second writer gets a BusyError."""
    import filelock

    from mnist_cli.core.fileio import io_error
    from mnist_cli.core.safeio import kind_of

    lock_path = Path(run_dir) / LOCK_FILE
    # Only a regular file (or none) is a lock: opening a directory fails, a symlink loop
    # never resolves, and a link elsewhere would have the lock created outside the run.
    try:
        mode = os.lstat(lock_path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise io_error(exc, f"checking the lock file {lock_path}") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise LocalIOError(
            f"{lock_path} is {kind_of(mode)}, not a lock file; refusing to use it",
            "no `mnist train` makes it; remove it, then run the command again",
        )
    lock = filelock.FileLock(str(lock_path))
    try:
        lock.acquire(timeout=1)  # `mnist runs` may hold it for an instant to see whether a run is live
    except filelock.Timeout:
        raise BusyError(f"another `mnist train` is writing to {run_dir}", "wait for it to finish, or choose another --run-dir") from None
    except OSError as exc:  # a read-only run directory, or no permission on the lock file
        raise io_error(exc, f"locking {run_dir}") from None
    try:
        yield
    finally:
        lock.release()


# history.json's fields: (name, integer?, may be null). Every entry the trainer writes has them all.
_HISTORY_FIELDS = (
    ("epoch", True, False),
    ("train_loss", False, False),
    ("train_accuracy", False, False),
    ("val_loss", False, True),
    ("val_accuracy", False, True),
    ("lr", False, False),
    ("seconds", False, False),
    ("samples", True, False),
    ("samples_per_second", False, False),
)


def _check_history(history: list[Any]) -> list[dict[str, Any]]:
    for index, entry in enumerate(history):
        where = f"{HISTORY_FILE} entry {index + 1}"
        if not isinstance(entry, dict):
            raise _Broken(f"{where} is not an object")
        for name, integer, nullable in _HISTORY_FIELDS:
            value = entry.get(name)
            if value is None and nullable and name in entry:
                continue
            if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)) or value < 0:
                raise _Broken(f"{where}: {name!r} must be a non-negative {'integer' if integer else 'number'}, got {value!r}")
        if entry["epoch"] != index + 1:
            raise _Broken(f"{where} is for epoch {entry['epoch']}, expected {index + 1}")
    return history


def load_history(run_dir: Path) -> list[dict[str, Any]]:
    """A run's history.json, checked entry by entry ([] when there is none); ModelError when damaged."""
    run_dir = Path(run_dir)
    try:
        history = _load_object_file(run_dir / HISTORY_FILE, list)
        return [] if history is None else _check_history(history)
    except _Broken as exc:
        raise ModelError(
            f"{run_dir}{os.sep}{exc}",  # the reason starts with the file's name
            "restore it from a backup, or move it away to resume without the per-epoch log",
        ) from None


def write_json(path: Path, payload: Any) -> None:
    """Write a run file atomically; NaN has no place in JSON, so it is refused rather than written."""
    atomic_write_text(path, json.dumps(payload, indent=2, allow_nan=False, default=str) + "\n")


# --------------------------------------------------------------------------- listing

SORT_KEYS = ("date", "test", "val", "name")
FINISHED = "finished"
INTERRUPTED = "interrupted"
RUNNING = "running"
BROKEN = "broken"
PRUNED = "pruned"  # a `mnist tune` trial its pruner stopped; consistent, resumable like an interrupted run


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


def run_subdir(run_dir: Path, name: str) -> Path:
    """`run_dir/name`, refused when it is a symbolic link: the tool writes and prunes only inside the run."""
    path = Path(run_dir) / name
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return path
    except OSError as exc:
        from mnist_cli.core.fileio import io_error

        raise io_error(exc, f"checking {path}") from None
    if stat.S_ISLNK(info.st_mode):
        # A checkpoints/ linked to another run's folder would have that run's checkpoints pruned.
        try:
            where = os.readlink(path)
        except OSError:
            where = "elsewhere"
        raise LocalIOError(
            f"{path} is a symbolic link (to {where}); refusing to write or delete through it",
            f"replace it with a real folder (or remove it) inside {run_dir}",
        )
    if not stat.S_ISDIR(info.st_mode):
        raise LocalIOError(f"a file is in the way: {path} should be a folder", "move the file away")
    return path


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def runs_root(root: Path | None = None) -> Path:
    """The folder holding run directories: `root`, else $MNIST_RUNS_DIR, else ./runs."""
    return Path(root or os.environ.get(RUNS_DIR_ENV) or DEFAULT_RUNS_ROOT)


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


class _Broken(Exception):
    """A run-dir file that cannot be read; the message says which and why."""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _load_object_file(path: Path, what: type) -> Any:
    try:
        value = _read_json(path)
    except FileNotFoundError:
        return None
    except UnsafeFile as exc:
        raise _Broken(f"{path.name} {exc}") from None
    except OSError as exc:
        raise _Broken(f"{path.name} cannot be read: {exc.strerror or exc}") from None
    if not isinstance(value, what):
        raise _Broken(f"{path.name} is not a JSON {'object' if what is dict else 'list'}")
    return value


def summarize_run(run_dir: Path) -> RunSummary:
    """Read one run directory; never raises for bad contents, which give status "broken" and a reason."""
    run_dir = Path(run_dir)
    running = is_running(run_dir)
    status = RUNNING if running else INTERRUPTED
    started = run_started(run_dir)
    try:
        config = TrainConfig.load(run_dir)
    except MnistError as exc:
        if running:  # a training that has not written its config yet
            return RunSummary(run_dir.name, run_dir, RUNNING, started=started)
        reason = exc.message.replace(str(run_dir) + os.sep, "")  # "config.json is missing", not the whole path
        return RunSummary(run_dir.name, run_dir, BROKEN, reason=reason, started=started)
    try:
        history = load_history(run_dir)
        result = None if running else _load_object_file(run_dir / RESULT_FILE, dict)
    except ModelError as exc:
        reason = exc.message.replace(str(run_dir) + os.sep, "")
        return RunSummary(run_dir.name, run_dir, BROKEN, reason=reason, started=started, config=config)
    except _Broken as exc:
        return RunSummary(run_dir.name, run_dir, BROKEN, reason=str(exc), started=started, config=config)
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
        FINISHED,
        started=started,
        config=config,
        epochs_done=epochs_done,
        best_val_accuracy=best_val if best_val is not None else summary.best_val_accuracy,
        test_accuracy=_number(result.get("test_accuracy")),
        seconds=seconds_total if seconds_total is not None else summary.seconds,
        params=_count(result.get("params")),
    )


def _pruned(run_dir: Path, summary: RunSummary) -> RunSummary:
    # A marker, not a missing result.json, tells a pruned trial from an interrupted run.
    try:
        marker = _load_object_file(run_dir / STATUS_FILE, dict)
    except _Broken:
        return summary
    if marker is None or marker.get("status") != PRUNED:
        return summary
    reason = marker.get("reason")
    return dataclasses.replace(summary, status=PRUNED, reason=reason if isinstance(reason, str) else None)


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


# --------------------------------------------------------------------------- checkpoint state files

CHECKPOINT_STATE = "checkpoint"  # the text file tf.train.CheckpointManager keeps in each checkpoint directory
_STATE_LIMIT = 1024 * 1024  # a state file lists a few checkpoints; a real one is a few hundred bytes
_STATE_LINE = re.compile(r'^\s*([a-z_]+)\s*:\s*(?:"((?:[^"\\\n]|\\.)*)"|([-+0-9.eE]+))\s*$')
_STATE_PATHS = ("model_checkpoint_path", "all_model_checkpoint_paths")
_STATE_NUMBERS = ("all_model_checkpoint_timestamps", "last_preserved_timestamp")
_CHECKPOINT_NAME = re.compile(r"^.+-(\d+)$")  # ckpt-N, or any prefix-N a user saved


@dataclass(frozen=True)
class CheckpointState:
    """A checkpoint directory's state file: the newest checkpoint and every one it records, as written."""

    latest: str
    paths: tuple[str, ...]


def checkpoints_in(directory: Path) -> list[str]:
    """The complete-looking checkpoints (name-N with an .index) in a directory, oldest first."""
    found = []
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    for name in names:
        match = _CHECKPOINT_NAME.match(name[: -len(".index")]) if name.endswith(".index") else None
        if match:
            found.append((int(match.group(1)), name[: -len(".index")]))
    return [name for _, name in sorted(found)]


def state_refused(state: Path, reason: str) -> ModelError:
    """The error for a checkpoint state file that cannot be used, saying which checkpoints are there."""
    present = checkpoints_in(state.parent)
    if present:
        hint = (
            f"checkpoints there: {', '.join(present)}; to use the newest, replace {state} "
            f"with the single line: model_checkpoint_path: \"{present[-1]}\""
        )
    else:
        hint = f"no checkpoint is left in {state.parent}; move the folder away and train again"
    return ModelError(f"{state} {reason}; refusing to use it", hint)


def read_checkpoint_state(directory: Path) -> CheckpointState | None:
    """Parse a checkpoint directory's state file strictly; None when there is none, ModelError when it is damaged."""
    state = Path(directory) / CHECKPOINT_STATE
    try:
        text = _read_small_text(state)
    except FileNotFoundError:
        return None
    except UnsafeFile as exc:
        raise state_refused(state, str(exc)) from None
    except OSError as exc:
        raise state_refused(state, f"cannot be read ({exc.strerror or exc})") from None
    latest: str | None = None
    paths: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _STATE_LINE.match(line)
        key = match.group(1) if match else None
        is_path = match is not None and match.group(2) is not None and key in _STATE_PATHS
        is_number = match is not None and match.group(3) is not None and key in _STATE_NUMBERS
        if not (is_path or is_number):
            raise state_refused(state, f"is damaged (line {number} is not a checkpoint record)")
        if is_path:
            value = match.group(2).replace("\\\\", "\\").replace('\\"', '"')
            paths.append(value)
            if key == "model_checkpoint_path":
                latest = value
    if latest is None:
        raise state_refused(state, "names no checkpoint")
    return CheckpointState(latest=latest, paths=tuple(paths))


def _read_small_text(path: Path) -> str:
    """A small UTF-8 text file from a run directory (regular file only, size-capped)."""
    from mnist_cli.core.safeio import read_text

    return read_text(path, limit=_STATE_LIMIT)
