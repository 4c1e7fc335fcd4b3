"""`mnist tune`'s study: what defines it (TuneSettings), and opening it in its storage, refusing another's.

One study lives in a database and is shared by any number of workers (worker.py),
on one machine (pool.py) or many; each trial is an ordinary run directory under
`<runs-root>/<study>/` (objective.py), and results.py sums the study up. Nothing
here imports TensorFlow; Optuna is imported only when a study is opened.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mnist_cli.core.config import TrainConfig
from mnist_cli.core.errors import StudyMismatchError, UsageError
from mnist_cli.core.fileio import atomic_write_text
from mnist_cli.core.safeio import loads_json
from mnist_cli.runs import layout
from mnist_cli.tuning.space import Space, parse_space
from mnist_cli.tuning.storage import open_storage, quiet_optuna, redact, storage_error

POLL_SECONDS = 1.0
FINISHED_STATES = ("COMPLETE", "PRUNED")  # the Optuna trial states that count towards --trials
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
        data = loads_json(text)
        data["space"] = parse_space(data["space"], source="the worker's space")
        return cls(**data)


def open_study(settings: TuneSettings, *, heartbeat: bool = True, create: bool = True, storage: Any = None) -> Any:
    """Create or load the study, and refuse one that was created with another space or fixed options."""
    optuna = quiet_optuna()
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
        raise storage_error(settings.storage, exc) from None
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
            settings.study_dir / layout.STUDY_FILE,
            json.dumps({"study": settings.study, "storage": redact(settings.storage), **settings.definition()}, indent=2) + "\n",
        )
    except OSError as exc:
        from mnist_cli.core.fileio import io_error

        raise io_error(exc, f"creating {settings.study_dir}") from None
    return study


def state_counts(trials: list[Any]) -> dict[str, int]:
    """How many trials are in each Optuna state ("COMPLETE", "RUNNING", ...)."""
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def finished_count(trials: list[Any]) -> int:
    """The trials that count towards --trials: complete or pruned."""
    return sum(1 for trial in trials if trial.state.name in FINISHED_STATES)
