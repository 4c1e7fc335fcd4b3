"""`mnist tune` on Optuna: one study in a database, trials trained by `trainer.fit`, shared by any number of workers.

A worker loops: under a study-wide lock it counts the trials that are finished,
running or queued, and if fewer than requested it queues one (an Optuna WAITING
trial, which `study.optimize` then pops atomically); so several workers, on one
machine or many, run exactly the requested number of trials, none twice. Trials
a killed worker leaves RUNNING stop sending heartbeats; after the grace period
Optuna marks them FAIL and they no longer count, so the study goes on.

Only `run_worker` (and the objective) imports TensorFlow; the parent process that
shows the table and reports the result does not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mnist_cli.runs import listing, runs
from mnist_cli.core.config import TrainConfig
from mnist_cli.core.errors import DivergedError, StorageError, StudyMismatchError, UsageError
from mnist_cli.core.fileio import atomic_write_text
from mnist_cli.tuning.space import Space, parse_space

HEARTBEAT_ENV = "MNIST_TUNE_HEARTBEAT"  # seconds between heartbeats; tests shorten it
DEFAULT_HEARTBEAT = 10
GRACE_FACTOR = 3  # a trial is stale after this many missed heartbeats
POLL_SECONDS = 1.0
BEST_CONFIG_FILE = "best-config.json"
WORKERS_DIR = ".workers"
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_ATTR = "mnist_tune"  # the study's user attribute holding what defines it


@dataclass(frozen=True)
class TuneSettings:
    """Everything a worker needs; sent to worker processes as JSON on their standard input."""

    study: str
    storage: str
    trials: int
    space: Space
    fixed: dict[str, Any]
    data_path: str
    runs_root: str
    timeout: float | None = None
    jobs: int = 1
    deadline: float | None = None  # wall-clock time after which no new trial starts

    def __post_init__(self) -> None:
        if not _STUDY_NAME.match(self.study):
            raise UsageError(
                f"--study must be a plain name (letters, digits, '.', '_', '-'), got {self.study!r}",
                "it names the study in the database and its folder under the runs root",
            )
        if self.trials < 1:
            raise UsageError(f"--trials must be >= 1, got {self.trials}")
        if self.jobs < 1:
            raise UsageError(f"--jobs must be >= 1, got {self.jobs}")
        if self.timeout is not None and not self.timeout > 0:
            raise UsageError(f"--timeout must be > 0 seconds, got {self.timeout}")
        if self.base.val_split <= 0:
            raise UsageError("mnist tune chooses on validation accuracy, so --val-split must be > 0", "for example --val-split 0.1")

    @property
    def base(self) -> TrainConfig:
        """The config every trial starts from: defaults plus the fixed options."""
        return TrainConfig.from_dict(self.fixed)

    @property
    def study_dir(self) -> Path:
        """Where the trials' run directories go."""
        return Path(self.runs_root) / self.study

    def definition(self) -> dict[str, Any]:
        """What makes two invocations the same study: the space, the fixed options."""
        return {"space": self.space.to_dict(), "fixed": self.fixed}

    def to_json(self) -> str:
        """For a worker's standard input (not its command line, which `ps` shows)."""
        data = asdict(self)
        data["space"] = self.space.to_dict()
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> TuneSettings:
        """Read what `to_json` wrote."""
        data = json.loads(text)
        data["space"] = parse_space(data["space"], source="the worker's space")
        return cls(**data)


def default_storage(runs_root: Path, study: str) -> str:
    """The SQLite file in the runs root that holds a study by default."""
    return f"sqlite:///{(Path(runs_root) / f'{study}.db').resolve()}"


def redact(url: str) -> str:
    """The storage URL with its password hidden, for messages and output."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL: show its scheme only, it may hold a password
        return url.split("://", 1)[0] + "://***" if "://" in url else "***"


def _password(url: str) -> str | None:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).password
    except Exception:
        return None


def _quiet_optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def heartbeat_interval() -> int:
    """Seconds between a running trial's heartbeats ($MNIST_TUNE_HEARTBEAT, default 10)."""
    value = os.environ.get(HEARTBEAT_ENV, "")
    return int(value) if value.isdigit() and int(value) >= 1 else DEFAULT_HEARTBEAT


def open_storage(url: str, *, heartbeat: bool = True) -> Any:
    """An Optuna RDB storage for `url`; a failure to reach or open it is a StorageError."""
    optuna = _quiet_optuna()
    kwargs: dict[str, Any] = {}
    scheme = url.split(":", 1)[0].lower()
    if scheme.startswith("sqlite"):
        # Several processes write one SQLite file; wait for each other's locks instead of failing.
        kwargs["connect_args"] = {"timeout": 60}
    elif scheme.startswith("postgres"):
        kwargs["connect_args"] = {"connect_timeout": 10}
    elif scheme.startswith("mysql"):
        kwargs["connect_args"] = {"connect_timeout": 10}
    interval = heartbeat_interval()
    for attempt in range(3):
        try:
            with _creation_lock(url):
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=kwargs,
                    heartbeat_interval=interval if heartbeat else None,
                    grace_period=GRACE_FACTOR * interval if heartbeat else None,
                )
        except Exception as exc:  # drivers raise their own types; every one means "cannot use this storage"
            # Two processes creating a new database's tables at once: one loses the race, and retries.
            if attempt < 2 and type(exc).__name__ in ("IntegrityError", "ProgrammingError"):
                time.sleep(1.0 + attempt)
                continue
            raise _storage_error(url, exc) from None
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _creation_lock(url: str) -> Iterator[None]:
    # An SQLite file's tables are created under the same lock file as the study's counting.
    match = re.match(r"^sqlite(\+\w+)?:///(.+)$", url)
    if match is None or match.group(2) == ":memory:" or not Path(match.group(2)).parent.is_dir():
        yield
        return
    import filelock

    with filelock.FileLock(f"{match.group(2)}.lock"):
        yield


def _storage_error(url: str, exc: BaseException) -> StorageError:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    reason = re.sub(r"\(Background on this error at: .*\)", "", reason).strip()
    password = _password(url)
    if password:
        reason = reason.replace(password, "***")
    hint = "check the --storage URL, that the database server is up and reachable, and its user and password"
    if isinstance(exc, ModuleNotFoundError) or "DB access module" in reason:
        # SQLAlchemy 2.1 uses psycopg 3 for postgresql:// (postgresql+psycopg2:// asks for psycopg2).
        hint = "install the database's Python driver: pip install \"psycopg[binary]\" for PostgreSQL, pymysql for mysql+pymysql://"
    return StorageError(f"cannot open the study storage {redact(url)}: {reason}", hint)


def open_study(settings: TuneSettings, *, heartbeat: bool = True, create: bool = True, storage: Any = None) -> Any:
    """Create or load the study, and refuse one that was created with another space or fixed options."""
    optuna = _quiet_optuna()
    storage = storage or open_storage(settings.storage, heartbeat=heartbeat)
    try:
        if create:
            study = optuna.create_study(study_name=settings.study, storage=storage, direction="maximize", load_if_exists=True)
        else:
            study = optuna.load_study(study_name=settings.study, storage=storage)
        defined = study.user_attrs.get(_ATTR)
        wanted = json.loads(json.dumps(settings.definition()))
        if defined is None:
            study.set_user_attr(_ATTR, wanted)
        elif defined != wanted:
            raise StudyMismatchError(
                f"study {settings.study!r} in {redact(settings.storage)} was created with another "
                f"{_difference(defined, wanted)}; it was left as it is",
                "give the same --space and fixed options as when it was created, or choose another --study",
            )
    except StudyMismatchError:
        raise
    except Exception as exc:
        if isinstance(exc, optuna.exceptions.OptunaError) and "direction" in str(exc):
            raise StudyMismatchError(f"study {settings.study!r} was not made by mnist tune", "choose another --study") from None
        raise _storage_error(settings.storage, exc) from None
    return study


def _difference(defined: Any, wanted: dict[str, Any]) -> str:
    if not isinstance(defined, dict):
        return "definition"
    if defined.get("space") != wanted["space"]:
        return f"search space ({', '.join(sorted(defined.get('space') or {}))})"
    old, new = defined.get("fixed") or {}, wanted["fixed"]
    changed = sorted(name for name in set(old) | set(new) if old.get(name) != new.get(name))
    return "fixed options (" + ", ".join(f"--{name.replace('_', '-')} {old.get(name, 'unset')}" for name in changed) + ")"


def prepare(settings: TuneSettings) -> Any:
    """Open (or create) the study and its folder under the runs root, before any worker starts."""
    study = open_study(settings)
    try:
        settings.study_dir.mkdir(parents=True, exist_ok=True)
        # Marks the folder as a study, so `mnist runs` lists its trials beside the other runs.
        atomic_write_text(
            settings.study_dir / runs.STUDY_FILE,
            json.dumps({"study": settings.study, "storage": redact(settings.storage), **settings.definition()}, indent=2) + "\n",
        )
    except OSError as exc:
        from mnist_cli.core.fileio import io_error

        raise io_error(exc, f"creating {settings.study_dir}") from None
    return study


@contextlib.contextmanager
def _study_lock(storage: Any, study: str) -> Iterator[None]:
    """Mutual exclusion between workers of a study, for the instant they count and queue a trial."""
    engine = storage.engine
    dialect = engine.dialect.name
    if dialect == "sqlite":
        import filelock

        database = engine.url.database
        if database and database != ":memory:":
            with filelock.FileLock(f"{database}.lock"):
                yield
            return
        yield
        return
    from sqlalchemy import text

    key = int.from_bytes(hashlib.sha256(f"mnist-tune:{study}".encode()).digest()[:8], "big", signed=True)
    if dialect == "postgresql":
        acquire, release = "SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"
    elif dialect in ("mysql", "mariadb"):
        acquire, release = "SELECT GET_LOCK(CAST(:key AS CHAR), 600)", "SELECT RELEASE_LOCK(CAST(:key AS CHAR))"
    else:  # no cross-process lock known for this database: workers may overshoot by one trial each
        yield
        return
    with engine.connect() as connection:
        connection.execute(text(acquire), {"key": key})
        try:
            yield
        finally:
            connection.execute(text(release), {"key": key})
            connection.commit()


FINISHED_STATES = ("COMPLETE", "PRUNED")


def _counts(trials: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def _sampler_seed(seed: int, ticket: int) -> int:
    import numpy as np

    # Each queued trial gets its own seed: workers on several machines never repeat each other's draws.
    return int(np.random.SeedSequence([seed, ticket]).generate_state(1)[0])


def run_worker(settings: TuneSettings, *, on_event: Callable[[Any], None] | None = None, parent_pid: int | None = None) -> int:
    """Run trials until the study holds `settings.trials` finished ones; return how many this worker ran."""
    optuna = _quiet_optuna()
    from mnist_cli.data.idx import load_splits

    storage = open_storage(settings.storage)
    study = open_study(settings, create=False, storage=storage)
    base = settings.base
    splits = load_splits(Path(settings.data_path), dataset=base.dataset, val_split=base.val_split, seed=base.seed)
    ran = 0
    while True:
        if parent_pid is not None and (os.getppid() != parent_pid or stop_file(settings, parent_pid).exists()):
            return ran  # the `mnist tune` that started this worker is gone, or was interrupted
        if settings.deadline is not None and time.time() >= settings.deadline:
            return ran
        with _study_lock(storage, settings.study):
            optuna.storages.fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            counts = _counts(trials)
            finished = sum(counts.get(state, 0) for state in FINISHED_STATES)
            if finished >= settings.trials:
                return ran
            busy = counts.get("RUNNING", 0) + counts.get("WAITING", 0)
            ticket = len(trials) if finished + busy < settings.trials else None
            if ticket is not None:
                study.enqueue_trial({})
        if ticket is None:
            # The remaining trials run elsewhere; wait, since one of them may be a dead worker's.
            time.sleep(POLL_SECONDS)
            continue
        study.sampler = optuna.samplers.TPESampler(
            seed=_sampler_seed(base.seed, ticket), n_startup_trials=min(10, max(3, settings.trials // 3)), multivariate=True
        )
        study.pruner = optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2)
        objective = _Objective(settings, splits, on_event=on_event)
        # A diverged trial is a failed trial, not a failed study; anything else stops this worker.
        study.optimize(objective, n_trials=1, catch=(DivergedError,))
        ran += 1


def stop_file(settings: TuneSettings, parent_pid: int) -> Path:
    """The file a `mnist tune` interrupted by Ctrl-C leaves for its workers: start no new trial."""
    # A signal cannot say it: during a trial the trainer's own Ctrl-C handler takes it.
    return settings.study_dir / WORKERS_DIR / f"stop-{parent_pid}"


class _Objective:
    """One trial: its config, its run directory, `trainer.fit`, and pruning on each epoch's validation accuracy."""

    def __init__(self, settings: TuneSettings, splits: Any, *, on_event: Callable[[Any], None] | None) -> None:
        self.settings = settings
        self.splits = splits
        self.on_event = on_event

    def __call__(self, trial: Any) -> float:
        import optuna

        from mnist_cli.training import trainer

        params = self.settings.space.suggest(trial)
        base = self.settings.base
        # Built afresh, not base.replace(): a learning rate left unset follows the trial's optimizer.
        config = TrainConfig(**{name: getattr(base, name) for name in self.settings.fixed}, **params)
        run_dir = self.settings.study_dir / f"trial-{trial.number:04d}"
        if (run_dir / runs.CONFIG_FILE).exists():
            raise UsageError(
                f"{run_dir} already holds a run, from an earlier study of the same name",
                "move that folder away, or choose another --study",
            )
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("epochs", config.epochs)
        trial.set_user_attr("worker", f"{os.uname().nodename}:{os.getpid()}")

        def on_event(event: Any) -> None:
            if self.on_event is not None:
                self.on_event(event)
            if isinstance(event, trainer.EpochDone) and event.val_accuracy is not None:
                trial.report(event.val_accuracy, event.epoch)
                if event.epoch < event.epochs and trial.should_prune():
                    mark_pruned(run_dir, epoch=event.epoch, val_accuracy=event.val_accuracy)
                    # Raised from the trainer's callback after the epoch's checkpoint: the run is consistent.
                    raise optuna.TrialPruned(f"pruned after epoch {event.epoch}")

        result = trainer.fit(config, self.splits, run_dir=run_dir, on_event=on_event)
        value = result.best_val_accuracy if result.best_val_accuracy is not None else result.val_accuracy
        if value is None or not math.isfinite(value):
            raise UsageError("a trial finished without a validation accuracy", "mnist tune needs --val-split > 0")
        return float(value)


def mark_pruned(run_dir: Path, *, epoch: int, val_accuracy: float) -> None:
    """Write the marker `mnist runs` reads to show a trial's run as pruned."""
    reason = f"pruned by mnist tune after epoch {epoch} (val accuracy {val_accuracy:.4f})"
    atomic_write_text(Path(run_dir) / runs.STATUS_FILE, json.dumps({"status": listing.PRUNED, "reason": reason}) + "\n")


# --------------------------------------------------------------------------- what the parent shows


@dataclass(frozen=True)
class TrialRow:
    """One trial as the live table shows it."""

    number: int
    state: str
    params: dict[str, Any]
    epochs_done: int
    epochs: int | None
    val_accuracy: float | None
    run_dir: str | None
    seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return asdict(self)


def trial_rows(study: Any) -> list[TrialRow]:
    """Every trial of the study, as stored (this reads the database, never TensorFlow)."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        intermediate = trial.intermediate_values
        value = trial.value if trial.value is not None else (max(intermediate.values()) if intermediate else None)
        seconds = trial.duration.total_seconds() if trial.duration is not None else None
        rows.append(
            TrialRow(
                number=trial.number,
                state=trial.state.name.lower(),
                params=dict(trial.params),
                epochs_done=max(intermediate) if intermediate else 0,
                epochs=trial.user_attrs.get("epochs"),
                val_accuracy=value,
                run_dir=trial.user_attrs.get("run_dir"),
                seconds=seconds,
            )
        )
    return rows


@dataclass(frozen=True)
class TuneResult:
    """What `mnist tune --json` prints at the end."""

    study: str
    storage: str
    trials_requested: int
    counts: dict[str, int]
    best_trial: int | None
    best_params: dict[str, Any]
    best_val_accuracy: float | None
    best_test_accuracy: float | None
    best_run_dir: str | None
    best_config_file: str | None
    importances: dict[str, float]
    importance_method: str
    seconds: float
    trials: list[TrialRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        data = asdict(self)
        data["trials"] = [row.to_dict() for row in self.trials]
        return data


def summarize(settings: TuneSettings, *, seconds: float) -> TuneResult:
    """The best trial, its test accuracy, the parameter importances, and the best config written to a file."""
    study = open_study(settings, heartbeat=False, create=False)
    rows = trial_rows(study)
    counts = _counts(study.get_trials(deepcopy=False))
    complete = [trial for trial in study.get_trials(deepcopy=False) if trial.state.name == "COMPLETE"]
    best = max(complete, key=lambda trial: (trial.value, -trial.number)) if complete else None
    test_accuracy = config_file = None
    if best is not None:
        run_dir = Path(best.user_attrs.get("run_dir", ""))
        test_accuracy = _test_accuracy(run_dir)
        config_file = _write_best_config(settings, run_dir)
    importances = parameter_importances(study)
    return TuneResult(
        study=settings.study,
        storage=redact(settings.storage),
        trials_requested=settings.trials,
        counts={state.lower(): count for state, count in sorted(counts.items())},
        best_trial=best.number if best else None,
        best_params=dict(best.params) if best else {},
        best_val_accuracy=best.value if best else None,
        best_test_accuracy=test_accuracy,
        best_run_dir=best.user_attrs.get("run_dir") if best else None,
        best_config_file=str(config_file) if config_file else None,
        importances=importances,
        importance_method="PED-ANOVA",
        seconds=seconds,
        trials=rows,
    )


def _test_accuracy(run_dir: Path) -> float | None:
    # The trainer scored the best trial's test split when it finished; no trial was chosen on it.
    try:
        value = json.loads((run_dir / runs.RESULT_FILE).read_text(encoding="utf-8")).get("test_accuracy")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _write_best_config(settings: TuneSettings, run_dir: Path) -> Path | None:
    try:
        config = TrainConfig.load(run_dir)
    except Exception:
        return None
    path = settings.study_dir / BEST_CONFIG_FILE
    # A run's config.json is what `mnist train --config` takes to repeat a run.
    atomic_write_text(path, json.dumps(config.to_dict(), indent=2) + "\n")
    return path


def parameter_importances(study: Any) -> dict[str, float]:
    """How much each parameter explains the validation accuracy (PED-ANOVA: no scikit-learn needed)."""
    import optuna

    complete = [trial for trial in study.get_trials(deepcopy=False) if trial.state.name == "COMPLETE"]
    if len(complete) < 2:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importances = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
            )
    except Exception:  # too few or too uniform trials: no importances rather than no result
        return {}
    return {name: float(value) for name, value in importances.items() if math.isfinite(value)}
