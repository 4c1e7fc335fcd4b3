"""Run directories: the most recent run, a training's run directory and lock, and reading run files.

The names inside a run are layout.py's; `listing.py` summarises every run under a root for
`mnist runs`; `checkpoint_state.py` reads the state files of checkpoint folders.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mnist_cli.core.config import TrainConfig
from mnist_cli.core.errors import BusyError, LocalIOError, ModelError, UsageError
from mnist_cli.core.fileio import atomic_write_text
from mnist_cli.core.safeio import UnsafeFile, read_json
from mnist_cli.runs.layout import CONFIG_FILE, HISTORY_FILE, LOCK_FILE, RESULT_FILE

# Where the runs are, not what is in one (that is layout.py's): the root's default and its variable.
DEFAULT_RUNS_ROOT = "runs"
RUNS_DIR_ENV = "MNIST_RUNS_DIR"

__all__ = [
    "DEFAULT_RUNS_ROOT",
    "RUNS_DIR_ENV",
    "BrokenRunFile",
    "count_or_none",
    "latest_run",
    "load_history",
    "new_run_dir",
    "read_run_file",
    "resolve_run",
    "run_lock",
    "run_started",
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
        result = read_run_file(run_dir / RESULT_FILE, dict)
    except BrokenRunFile:
        return None
    return count_or_none(result.get("epochs")) if result else None


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
            raise BrokenRunFile(f"{where} is not an object")
        for name, integer, nullable in _HISTORY_FIELDS:
            value = entry.get(name)
            if value is None and nullable and name in entry:
                continue
            if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)) or value < 0:
                raise BrokenRunFile(f"{where}: {name!r} must be a non-negative {'integer' if integer else 'number'}, got {value!r}")
        if entry["epoch"] != index + 1:
            raise BrokenRunFile(f"{where} is for epoch {entry['epoch']}, expected {index + 1}")
    return history


def load_history(run_dir: Path) -> list[dict[str, Any]]:
    """A run's history.json, checked entry by entry ([] when there is none); ModelError when damaged."""
    run_dir = Path(run_dir)
    try:
        history = read_run_file(run_dir / HISTORY_FILE, list)
        return [] if history is None else _check_history(history)
    except BrokenRunFile as exc:
        raise ModelError(
            f"{run_dir}{os.sep}{exc}",  # the reason starts with the file's name
            "restore it from a backup, or move it away to resume without the per-epoch log",
        ) from None


def write_json(path: Path, payload: Any) -> None:
    """Write a run file atomically; NaN has no place in JSON, so it is refused rather than written."""
    atomic_write_text(path, json.dumps(payload, indent=2, allow_nan=False, default=str) + "\n")


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


def runs_root(root: Path | None = None) -> Path:
    """The folder holding run directories: `root`, else ./runs (the CLI reads $MNIST_RUNS_DIR into `root`)."""
    return Path(root or DEFAULT_RUNS_ROOT)


def record_resumed_config(run_dir: Path, config: TrainConfig) -> None:
    """Rewrite a resumed run's config.json where the resume changed it (only --epochs can), keeping its start time."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        if TrainConfig.load(run_dir) == config:
            return
        times = path.stat()
    except (OSError, ModelError):
        times = None
    config.save(run_dir)
    if times is not None:  # config.json's time is the run's start until result.json says it
        os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))


class BrokenRunFile(Exception):
    """A run-dir file that cannot be read; the message says which and why."""


def count_or_none(value: Any) -> int | None:
    """`value` when it is a non-negative integer (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def read_run_file(path: Path, what: type) -> Any:
    """A JSON object or list from a run directory (None when absent); BrokenRunFile when unreadable or of another type."""
    try:
        value = _read_json(path)
    except FileNotFoundError:
        return None
    except UnsafeFile as exc:
        raise BrokenRunFile(f"{path.name} {exc}") from None
    except OSError as exc:
        raise BrokenRunFile(f"{path.name} cannot be read: {exc.strerror or exc}") from None
    if not isinstance(value, what):
        raise BrokenRunFile(f"{path.name} is not a JSON {'object' if what is dict else 'list'}")
    return value
