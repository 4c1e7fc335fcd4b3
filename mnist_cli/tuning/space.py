"""Search spaces for `mnist tune`: the defaults per model, and the `--space` TOML file, checked.

A space maps TrainConfig field names to a range (`{low, high, log}`) or a list of
choices. Every bound and choice is validated by building a TrainConfig with it,
so a space never proposes a trial that `mnist train` would refuse.

    # space.toml
    lr = { low = 1e-4, high = 1e-2, log = true }
    epochs = { low = 3, high = 12 }
    optimizer = ["adam", "adamw"]
    hidden = ["256", "512,256"]
    augment = [false, true]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_cli.core.config import TrainConfig, coerce_field, format_hidden, parse_hidden
from mnist_cli.core.errors import MnistError, UsageError

# What a trial may vary. The data set, model, validation split and seed define the
# comparison itself, and the logging/checkpoint cadence does not change the result.
TUNABLE = ("hidden", "loss", "optimizer", "lr", "momentum", "weight_decay", "schedule", "epochs", "batch_size", "precision", "augment")
MAX_SPACE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter: a numeric range or a list of choices."""

    name: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    def to_dict(self) -> Any:
        """Plain JSON types in the `--space` file's own form, as the space is stored in the study."""
        if self.choices is not None:
            return list(self.choices)
        return {"low": self.low, "high": self.high, "log": self.log}

    def suggest(self, trial: Any) -> Any:
        """Ask an Optuna trial for a value, converted to the TrainConfig field's type."""
        if self.choices is not None:
            value = trial.suggest_categorical(self.name, list(self.choices))
            return parse_hidden(value) if self.name == "hidden" else value
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(self.name, self.low, self.high, log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)


@dataclass(frozen=True)
class Space:
    """A search space: the parameters searched, in a stable order."""

    params: tuple[Param, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The searched field names."""
        return tuple(param.name for param in self.params)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, sorted by name: two equal spaces give equal dicts."""
        return {param.name: param.to_dict() for param in sorted(self.params, key=lambda p: p.name)}

    def without(self, fixed: set[str]) -> Space:
        """The space less the parameters fixed on the command line."""
        return Space(tuple(param for param in self.params if param.name not in fixed))

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Every searched field's value for one trial."""
        return {param.name: param.suggest(trial) for param in self.params}


_COMMON = {
    "optimizer": ["adam", "adamw"],
    "schedule": ["constant", "cosine", "onecycle"],
    "batch_size": [64, 128, 256],
    "augment": [False, True],
}
DEFAULT_SPACES: dict[str, dict[str, Any]] = {
    "mlp": {
        **_COMMON,
        "lr": {"low": 3e-4, "high": 1e-2, "log": True},
        "loss": ["xent", "mse"],
        "epochs": {"low": 5, "high": 20},
        "hidden": ["256", "512", "256,256", "512,256", "256,256,256"],
    },
    "cnn": {
        **_COMMON,
        "lr": {"low": 5e-4, "high": 1e-2, "log": True},
        "loss": ["xent"],
        "epochs": {"low": 3, "high": 15},
    },
}


def default_space(model: str) -> Space:
    """The built-in space for a model."""
    return parse_space(DEFAULT_SPACES[model], source="the default space")


def read_space(path: Path) -> Space:
    """Read and check a `--space` TOML file (a top-level table, or a [space] table)."""
    from mnist_cli.core.safeio import UnsafeFile, read_text

    path = Path(path)
    try:
        text = read_text(path, limit=MAX_SPACE_BYTES)
    except UnsafeFile as exc:  # not a regular file, larger than the cap, or not UTF-8
        raise UsageError(f"space file {path} {exc}", "pass a TOML file of a few lines to --space") from None
    except OSError as exc:
        raise UsageError(f"cannot read space file {path}: {exc.strerror or exc}", "check the path given to --space") from None
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(text)
    except ValueError as exc:
        raise UsageError(f"space file {path} cannot be parsed: {exc}", "fix its TOML syntax") from None
    if isinstance(data.get("space"), dict) and len(data) == 1:
        data = data["space"]
    return parse_space(data, source=f"space file {path}")


def parse_space(data: Any, *, source: str) -> Space:
    """Check a space given as plain data; every error names the parameter."""
    if not isinstance(data, dict) or not data:
        raise UsageError(f"{source} is empty", "give at least one parameter, for example lr = { low = 1e-4, high = 1e-2, log = true }")
    params = []
    for raw_name, spec in data.items():
        name = str(raw_name).replace("-", "_")
        if name not in TUNABLE:
            raise UsageError(f"{source}: unknown parameter {raw_name!r}", f"parameters that can be searched: {', '.join(TUNABLE)}")
        params.append(_param(name, spec, source=source))
    return Space(tuple(params))


def _param(name: str, spec: Any, *, source: str) -> Param:
    where = f"{source}: {name}"
    if isinstance(spec, list):
        if not spec:
            raise UsageError(f"{where} has no choices", "list at least one value")
        choices = tuple(_choice(name, value, where=where) for value in spec)
        if len(set(choices)) != len(choices):
            raise UsageError(f"{where} lists a choice twice", "list each value once")
        return Param(name, choices=choices)
    if not isinstance(spec, dict):
        raise UsageError(f"{where} must be a list of choices or a table {{ low, high, log }}", "for example epochs = { low = 3, high = 12 }")
    unknown = sorted(set(spec) - {"low", "high", "log"})
    if unknown or "low" not in spec or "high" not in spec:
        raise UsageError(f"{where} needs exactly low and high (and optionally log)", "for example lr = { low = 1e-4, high = 1e-2, log = true }")
    low, high, log = spec["low"], spec["high"], spec.get("log", False)
    if name in ("hidden", "loss", "optimizer", "schedule", "precision", "augment"):
        raise UsageError(f"{where} takes a list of choices, not a range", f"for example {name} = {_example(name)}")
    if not isinstance(log, bool):
        raise UsageError(f"{where}: log must be true or false")
    integer = isinstance(TrainConfig.__dataclass_fields__[name].default, int) and name != "lr"
    for bound in (low, high):
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
            raise UsageError(f"{where}: low and high must be numbers, got {bound!r}")
        if integer and not isinstance(bound, int):
            raise UsageError(f"{where}: low and high must be integers, got {bound!r}")
    if not integer:
        low, high = float(low), float(high)
    if low > high:
        raise UsageError(f"{where}: the range is inverted (low {low} > high {high})", "swap low and high")
    if low == high and not integer:
        raise UsageError(f"{where}: the range is empty (low = high = {low})", "fix the value on the command line instead, or widen the range")
    if log and low <= 0:
        raise UsageError(f"{where}: a log range needs low > 0, got {low}")
    for bound in (low, high):
        _valid(name, bound, where=where)
    return Param(name, low=low, high=high, log=log)


def _choice(name: str, value: Any, *, where: str) -> Any:
    if name == "hidden":
        if isinstance(value, list) and all(isinstance(n, int) and not isinstance(n, bool) for n in value):
            value = format_hidden(tuple(value))
        if not isinstance(value, str):
            raise UsageError(f"{where}: each choice must be layer sizes such as \"256,256\", got {value!r}")
        try:
            value = format_hidden(parse_hidden(value))
        except MnistError as exc:
            raise UsageError(f"{where}: {exc.message}") from None
        _valid(name, parse_hidden(value), where=where)
        return value
    if isinstance(value, (dict, list)) or value is None:
        raise UsageError(f"{where}: choices must be plain values, got {value!r}")
    if isinstance(value, int) and not isinstance(value, bool) and name in ("lr", "momentum", "weight_decay"):
        value = float(value)
    _valid(name, value, where=where)
    return value


def _valid(name: str, value: Any, *, where: str) -> None:
    # TrainConfig is the one judge of what a value may be; its message names the option.
    try:
        TrainConfig(**{name: coerce_field(name, list(value) if name == "hidden" else value)})
    except UsageError as exc:
        raise UsageError(f"{where}: {exc.message}", exc.hint) from None


def _example(name: str) -> str:
    return {"hidden": '["256", "512,256"]', "augment": "[false, true]"}.get(name, '["adam", "adamw"]' if name == "optimizer" else "[...]")
