"""The one place every hyperparameter lives, with its default.

`TrainConfig` is frozen, validated on construction, saved as `config.json` in
each run directory, and enough on its own to rebuild the model.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_cli.core.errors import UsageError

# The --dataset choices; data/registry.py holds each one's files and mirrors (DATASETS).
DATASET_NAMES = ("mnist", "fashion-mnist")
MODELS = ("mlp", "cnn")
LOSSES = ("mse", "xent")
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle")
PRECISIONS = ("float32", "mixed-bf16", "mixed-fp16")
STRATEGIES = ("auto", "one", "mirrored", "multi-worker")  # how training is placed on devices (training/distribute.py)
# How `mnist predict` runs a network: the cached LiteRT model when it can serve, else TensorFlow.
ENGINES = ("auto", "litert", "tensorflow")

CONFIG_FILE = "config.json"
# Ranges the framework can take, checked before anything is written. A layer of 10^8
# units asks TensorFlow for 300 GB; Keras seeds must be below 2**32; a batch is held
# in memory at once; step counts are int64 variables and chunk lengths int32.
MAX_LAYERS = 32
MAX_LAYER_SIZE = 16_384
# With the optimizer's slots that is about 2.4 GB of float32, far past what MNIST needs.
MAX_WEIGHTS = 200_000_000
MAX_SEED = 2**32 - 1
MAX_BATCH_SIZE = 65_536
MAX_EPOCHS = 100_000
MAX_STEPS = 2**31 - 1
MAX_KEEP_CHECKPOINTS = 1_000
MAX_LR = 100.0
MAX_WEIGHT_DECAY = 100.0
_INT_RANGES = (
    ("epochs", 1, MAX_EPOCHS),
    ("batch_size", 1, MAX_BATCH_SIZE),
    ("seed", 0, MAX_SEED),
    ("log_every", 1, MAX_STEPS),
    ("checkpoint_every", 0, MAX_STEPS),
    ("keep_checkpoints", 1, MAX_KEEP_CHECKPOINTS),
)
# Training scores validation and test in batches of this size, and `mnist evaluate` does too by
# default: the same batches give bit-identical logits, so its figures agree with result.json.
EVAL_BATCH = 1000
DEFAULT_LR = {"sgd": 0.01, "momentum": 0.01, "adam": 0.001, "adamw": 0.001}


class OptimizerDefaultRate(float):
    """A learning rate nobody gave: the optimizer's usual one, which follows a change of optimizer.

    `dataclasses.replace` passes every field on, so a copy cannot tell a rate that was
    filled in from one that was asked for; this type carries the difference. It is an
    ordinary float everywhere else (arithmetic, JSON, comparisons).
    """


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run; the defaults are the walk-through's recipe."""

    dataset: str = "mnist"
    model: str = "mlp"
    hidden: tuple[int, ...] = (256, 256, 256)
    loss: str = "mse"
    optimizer: str = "sgd"
    # None means the optimizer's usual rate: the walk-through's 0.01 for SGD, Keras' 0.001 for Adam.
    # After construction it is always a number; `lr_is_default` says whether it was filled in.
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "constant"
    epochs: int = 10
    batch_size: int = 32
    val_split: float = 0.1
    seed: int = 0
    precision: str = "float32"  # the precision the run computes in
    # The recipe's mixed precision this machine does not compute natively, replaced by float32
    # (core/precision.py); None when `precision` is what was asked for.
    precision_downgraded_from: str | None = None
    augment: bool = False
    log_every: int = 200
    checkpoint_every: int = 0
    keep_checkpoints: int = 3
    # The --recipe the run started from (None: none). A label only: the recipe's values are
    # in the fields above, so two runs of different recipes never look the same in `mnist runs`.
    recipe: str | None = None

    def __post_init__(self) -> None:
        if (self.lr is None or self.lr_is_default) and self.optimizer in DEFAULT_LR:
            # Also on a copy with another optimizer: a filled-in rate is re-chosen, a given one stays.
            object.__setattr__(self, "lr", OptimizerDefaultRate(DEFAULT_LR[self.optimizer]))
        _check_choice("dataset", self.dataset, DATASET_NAMES)
        _check_choice("model", self.model, MODELS)
        _check_choice("loss", self.loss, LOSSES)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("precision", self.precision, PRECISIONS)
        if self.precision_downgraded_from is not None:
            _check_choice("precision-downgraded-from", self.precision_downgraded_from, PRECISIONS)
        if self.recipe is not None:
            _check_choice("recipe", self.recipe, tuple(RECIPES))
        if (
            not self.hidden
            or len(self.hidden) > MAX_LAYERS
            or any(isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_LAYER_SIZE for n in self.hidden)
        ):
            raise UsageError(
                f"--hidden must be positive layer sizes (at most {MAX_LAYERS} layers of at most {MAX_LAYER_SIZE:,} units), got {format_hidden(self.hidden)!r}",
                "for example --hidden 256,256,256",
            )
        weights = sum(a * b for a, b in zip((784, *self.hidden), (*self.hidden, 10)))
        if self.model == "mlp" and weights > MAX_WEIGHTS:
            raise UsageError(
                f"--hidden {format_hidden(self.hidden)} makes {weights:,} weights, more than the {MAX_WEIGHTS:,} allowed",
                "use smaller layers, for example --hidden 1024,1024",
            )
        for name, low, high in _INT_RANGES:
            _check_number(name.replace("_", "-"), getattr(self, name), minimum=low, maximum=high, integer=True)
        _check_number("lr", self.lr, minimum=0.0, exclusive=True, maximum=MAX_LR)
        _check_number("momentum", self.momentum, minimum=0.0, below=1.0)
        _check_number("weight-decay", self.weight_decay, minimum=0.0, maximum=MAX_WEIGHT_DECAY)
        _check_number("val-split", self.val_split, minimum=0.0, below=1.0)

    @property
    def lr_is_default(self) -> bool:
        """Whether the learning rate is the optimizer's usual one, filled in rather than given."""
        return isinstance(self.lr, OptimizerDefaultRate)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON types."""
        data = dataclasses.asdict(self)
        data["hidden"] = list(self.hidden)
        data["lr"] = float(self.lr) if self.lr is not None else None  # a plain float, whoever chose it
        return data

    @classmethod
    def from_dict(cls, data: Any) -> TrainConfig:
        """Build from untrusted JSON data: known fields only, each of the right type."""
        if not isinstance(data, dict):
            raise UsageError("a config must be a JSON object of hyperparameters")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise UsageError(
                f"unknown config field(s): {', '.join(unknown)}",
                f"known fields are: {', '.join(fields)}",
            )
        return cls(**{name: coerce_field(name, value) for name, value in data.items()})

    def save(self, run_dir: Path) -> Path:
        """Write `config.json` into a run directory (atomically)."""
        from mnist_cli.core.fileio import atomic_write_text

        path = Path(run_dir) / CONFIG_FILE
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, run_dir: Path) -> TrainConfig:
        """Read and validate `config.json` from a run directory."""
        from mnist_cli.core.errors import ModelError

        from mnist_cli.core.fileio import io_error
        from mnist_cli.core.safeio import UnsafeFile, read_json

        path = Path(run_dir) / CONFIG_FILE
        try:
            data = read_json(path)
        except FileNotFoundError:
            raise ModelError(f"{path} is missing", "a run directory made by `mnist train` has one") from None
        except UnsafeFile as exc:
            raise ModelError(f"{path} {exc}", "restore it or train the run again") from None
        except PermissionError as exc:
            raise io_error(exc, f"reading {path}") from None
        except OSError as exc:
            raise ModelError(f"{path} cannot be read: {exc.strerror or exc}", "restore it or train the run again") from None
        try:
            return cls.from_dict(data)
        except UsageError as exc:
            raise ModelError(f"{path}: {exc.message}", "restore it or train the run again") from None


# Named starting points for `mnist train --recipe`; measured in benchmarks/RESULTS.md.
_CONVNET = {
    "model": "cnn",
    "loss": "xent",
    "optimizer": "adamw",
    "lr": 0.003,
    "schedule": "onecycle",
    "batch_size": 128,
    "precision": "mixed-bf16",
}
RECIPES: dict[str, dict[str, Any]] = {
    # The walk-through itself: MLP, squared error, SGD 0.01, batch 32, 10 epochs.
    "walkthrough": {},
    # Found by `mnist tune` (benchmarks/RESULTS.md, study fast-mlp): one wide layer, cross-entropy,
    # Adam with a cosine decay, augmented. MNIST-10k validation 98.4%, test 97.3%, against the
    # previous recipe's (256-256-256, 1cycle, batch 128, 20 epochs, no augment) 96.6% and 96.3%,
    # for the same CPU time.
    "fast": {
        "hidden": (1024,),
        "loss": "xent",
        "optimizer": "adam",
        "lr": 0.0047,
        "schedule": "cosine",
        "batch_size": 256,
        "epochs": 15,
        "augment": True,
    },
    # The convnet: Fashion-MNIST 92.1% in 36-44 s of wall time on a 2-core CPU.
    "accurate": {**_CONVNET, "epochs": 6},
    # The convnet, augmented, for 40 epochs: MNIST-10k 99.1-99.2% on the official test set.
    "best": {**_CONVNET, "epochs": 40, "augment": True},
}


def recipe(name: str) -> dict[str, Any]:
    """The hyperparameters a named recipe sets."""
    try:
        return dict(RECIPES[name])
    except KeyError:
        raise UsageError(f"unknown recipe {name!r}", f"choose one of {', '.join(RECIPES)}") from None


def read_config_file(path: Path) -> dict[str, Any]:
    """Read hyperparameters from a TOML file or a run's config.json; only known fields, checked."""
    from mnist_cli.core.safeio import JSON_LIMIT, UnsafeFile, loads_json, read_text

    path = Path(path)
    try:
        text = read_text(path, limit=JSON_LIMIT)
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror or exc}", "check the path given to --config") from None
    except UnsafeFile as exc:
        raise UsageError(f"config file {path} {exc}", "pass a TOML file or a run's config.json") from None
    try:
        if path.suffix.lower() == ".json":
            data = loads_json(text)
        else:
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            data = tomllib.loads(text)
    except UnsafeFile as exc:
        raise UsageError(f"config file {path} {exc}", "fix its syntax") from None
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError is a ValueError; tomllib recurses on nesting
        raise UsageError(f"config file {path} cannot be parsed: {exc}", "fix its syntax") from None
    if isinstance(data, dict) and isinstance(data.get("train"), dict):
        data = data["train"]  # a [train] table is accepted too
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must hold a table of hyperparameters")
    data = {str(key).replace("-", "_"): value for key, value in data.items()}
    try:
        checked = TrainConfig.from_dict(data)  # validates each given field; the others keep defaults
    except UsageError as exc:
        raise UsageError(f"config file {path}: {exc.message}", exc.hint or "fix or remove that field") from None
    return {name: getattr(checked, name) for name in data}


def parse_hidden(text: str) -> tuple[int, ...]:
    """Parse `--hidden 256,256,256` into layer sizes."""
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--hidden must be comma-separated integers, got {text!r}", "for example --hidden 256,256,256") from None
    if not sizes:
        raise UsageError("--hidden needs at least one layer size", "for example --hidden 256,256,256")
    return sizes


def format_hidden(hidden: tuple[int, ...]) -> str:
    """The `--hidden` spelling of layer sizes."""
    return ",".join(str(n) for n in hidden)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"--{name} must be one of {', '.join(choices)}, got {value!r}")


def _check_number(
    name: str,
    value: Any,
    *,
    minimum: float,
    integer: bool = False,
    exclusive: bool = False,
    below: float | None = None,
    maximum: float | None = None,
) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or (isinstance(value, float) and not math.isfinite(value)):
        raise UsageError(f"--{name} must be a{'n integer' if integer else ' finite number'}, got {value!r}")
    too_small = value <= minimum if exclusive else value < minimum
    too_big = (below is not None and value >= below) or (maximum is not None and value > maximum)
    if too_small or too_big:
        low = f"> {minimum}" if exclusive else f">= {minimum}"
        high = f" and < {below}" if below is not None else f" and <= {maximum}" if maximum is not None else ""
        raise UsageError(f"--{name} must be {low}{high}, got {value}")


def coerce_field(name: str, value: Any) -> Any:
    """A JSON value for TrainConfig field `name`, of the field's type (ints taken for floats); UsageError otherwise."""
    default = getattr(TrainConfig, name)
    if name == "hidden":
        if not isinstance(value, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in value):
            raise UsageError(f"config field 'hidden' must be a list of integers, got {value!r}")
        return tuple(value)
    if name == "recipe":
        if value is not None and not isinstance(value, str):
            raise UsageError(f"config field 'recipe' must be a recipe name or null, got {value!r}")
        return value
    if name == "precision_downgraded_from":
        if value is not None and not isinstance(value, str):
            raise UsageError(f"config field 'precision_downgraded_from' must be a precision or null, got {value!r}")
        return value
    if name == "lr":
        if value is None:  # the optimizer's usual rate, as when --lr is not given
            return None
        default = 0.0
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise UsageError(f"config field {name!r} must be true or false, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, type(default)) or isinstance(value, bool):
        raise UsageError(f"config field {name!r} must be a {type(default).__name__}, got {value!r}")
    return value
