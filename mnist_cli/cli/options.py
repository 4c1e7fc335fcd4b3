"""Options more than one command takes: each declared once, its default from the config.

Environment variables are read here, by Typer (`envvar=`), and nowhere in the library: the
library takes explicit values (a runs folder, a data folder), so what a command uses is
what its `--help` says.
"""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from mnist_cli.core import config
from mnist_cli.core.config import TrainConfig
from mnist_cli.runs.runs import DEFAULT_RUNS_ROOT, RUNS_DIR_ENV

DATA_DIR_ENV = "MNIST_DATA_DIR"


def choices_enum(name: str, values: tuple[str, ...]) -> Any:
    """An Enum of a config choice list: Typer shows and validates Enum values."""
    return enum.Enum(name, {value.replace("-", "_"): value for value in values}, type=str)


Dataset = choices_enum("Dataset", config.DATASET_NAMES)
Model = choices_enum("Model", config.MODELS)
Loss = choices_enum("Loss", config.LOSSES)
Optimizer = choices_enum("Optimizer", config.OPTIMIZERS)
Schedule = choices_enum("Schedule", config.SCHEDULES)
Precision = choices_enum("Precision", config.PRECISIONS)
Recipe = choices_enum("Recipe", tuple(config.RECIPES))
Strategy = choices_enum("Strategy", config.STRATEGIES)

DatasetOption = Annotated[
    Dataset, typer.Option("--dataset", "-d", help="Which data set.", envvar="MNIST_DATASET")
]
DataDirOption = Annotated[
    Optional[Path],
    typer.Option(
        "--data-dir",
        help="Folder holding <dataset>/ with the four IDX files \\[default: the user cache directory].",
        envvar=DATA_DIR_ENV,
        file_okay=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on standard output, nothing else.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print no progress, only results and errors.")]

# The folder of runs: one option for every command that makes or finds runs (`--root` was `mnist runs`' name).
RunsRootOption = Annotated[
    Optional[Path],
    typer.Option(
        "--runs-root",
        "--root",
        help=f"Folder holding the run directories \\[default: ./{DEFAULT_RUNS_ROOT}].",
        envvar=RUNS_DIR_ENV,
        file_okay=False,
        show_default=False,
    ),
]
TargetArgument = Annotated[
    Optional[Path],
    typer.Argument(
        help="A run directory, checkpoint directory, checkpoint prefix (runs/x/checkpoints/ckpt-7) or model.keras "
        "\\[default: the most recent run].",
        show_default=False,
        metavar="TARGET",
    ),
]

# "0.01 for sgd and momentum; 0.001 for adam and adamw", from the config's one table of defaults.
_LR_DEFAULTS = "; ".join(
    f"{rate:g} for {' and '.join(name for name, value in config.DEFAULT_LR.items() if value == rate)}"
    for rate in dict.fromkeys(config.DEFAULT_LR.values())
)

# The hyperparameters: `mnist train` takes them, and `mnist tune` takes the same ones to fix a field.
EpochsOption = Annotated[int, typer.Option(help="Passes over the training split.", min=1, envvar="MNIST_EPOCHS")]
LrOption = Annotated[
    Optional[float],
    typer.Option("--lr", envvar="MNIST_LR", help=f"Peak learning rate \\[default: {_LR_DEFAULTS}].", show_default=False),
]
BatchSizeOption = Annotated[int, typer.Option(help="Images per step.", min=1, envvar="MNIST_BATCH_SIZE")]
ModelOption = Annotated[Model, typer.Option(envvar="MNIST_MODEL", help="Network: the walk-through's MLP or a small convnet.")]
HiddenOption = Annotated[str, typer.Option(help="MLP hidden layer sizes, comma-separated.")]
LossOption = Annotated[Loss, typer.Option(help="mse: the walk-through's squared error on logits; xent: cross-entropy.")]
OptimizerOption = Annotated[Optimizer, typer.Option(help="Plain SGD, SGD with Nesterov momentum, Adam or AdamW.")]
ScheduleOption = Annotated[Schedule, typer.Option(help="Learning-rate schedule.")]
MomentumOption = Annotated[float, typer.Option(help="Momentum for --optimizer momentum.")]
WeightDecayOption = Annotated[float, typer.Option(help="Decoupled weight decay for --optimizer adamw.")]
ValSplitOption = Annotated[float, typer.Option(help="Share of the training split held out for validation (0 for none).")]
SeedOption = Annotated[int, typer.Option(envvar="MNIST_SEED", help="Seed for weights, shuffling, validation split and augmentation.")]
PrecisionOption = Annotated[
    Precision,
    typer.Option(
        envvar="MNIST_PRECISION",
        help="Compute precision; mixed-bf16 speeds the convnet up on CPUs with AVX512-BF16 or AMX "
        "(the small MLP is faster in float32), mixed-fp16 is for GPUs.",
    ),
]
AugmentOption = Annotated[bool, typer.Option("--augment/--no-augment", help="Random shifts, rotations and zooms (and flips for fashion-mnist).")]
LogEveryOption = Annotated[int, typer.Option(help="Steps between log lines (and compiled calls).")]
CheckpointEveryOption = Annotated[int, typer.Option(help="Also checkpoint every N steps (0: once per epoch).")]
KeepCheckpointsOption = Annotated[int, typer.Option(help="How many recent checkpoints to keep.")]


# Every hyperparameter can be given on the command line; the names come from the config itself.
_GIVEN = tuple(field.name for field in dataclasses.fields(TrainConfig))


def given_hyperparameters(ctx: typer.Context, values: dict[str, Any]) -> dict[str, Any]:
    """The TrainConfig fields given on the command line (or in the environment), as config values."""
    given = {}
    for name in _GIVEN:
        if name in values and _was_given(ctx, name):
            value = values[name]
            given[name] = config.parse_hidden(value) if name == "hidden" else getattr(value, "value", value)
    return given


def _was_given(ctx: typer.Context, name: str) -> bool:
    # Typer bundles its own click; its ParameterSource enum is compared by name.
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")
