"""What the parent `mnist tune` shows: the trials as they run, and the study summed up at the end.

This reads the database and run files, never TensorFlow.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mnist_cli.core.config import TrainConfig
from mnist_cli.core.fileio import atomic_write_text
from mnist_cli.runs import layout
from mnist_cli.runs.runs import BrokenRunFile, read_run_file
from mnist_cli.tuning.storage import redact
from mnist_cli.tuning.study import TuneSettings, open_study, state_counts


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
    """Every trial of the study, as stored."""
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
    counts = state_counts(study.get_trials(deepcopy=False))
    complete = [trial for trial in study.get_trials(deepcopy=False) if trial.state.name == "COMPLETE"]
    best = max(complete, key=lambda trial: (trial.value, -trial.number)) if complete else None
    test_accuracy = config_file = None
    if best is not None:
        run_dir = Path(best.user_attrs.get("run_dir", ""))
        test_accuracy = _test_accuracy(run_dir)
        config_file = _write_best_config(settings, run_dir)
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
        importances=parameter_importances(study),
        importance_method="PED-ANOVA",
        seconds=seconds,
        trials=rows,
    )


def _test_accuracy(run_dir: Path) -> float | None:
    # The trainer scored the best trial's test split when it finished; no trial was chosen on it.
    try:
        result = read_run_file(run_dir / layout.RESULT_FILE, dict)  # size- and depth-capped: a run is untrusted
    except BrokenRunFile:
        return None
    value = result.get("test_accuracy") if result else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _write_best_config(settings: TuneSettings, run_dir: Path) -> Path | None:
    try:
        config = TrainConfig.load(run_dir)
    except Exception:
        return None
    path = settings.study_dir / layout.BEST_CONFIG_FILE
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
