"""`mnist train`: parse options into one TrainConfig, run the trainer, render its progress."""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from mnist_cli.core import config as cfg
from mnist_cli.runs import runs as run_dirs
from mnist_cli.cli import app, common
from mnist_cli.cli.download import DownloadReporter
from mnist_cli.core.config import TrainConfig
from mnist_cli.serving.config import ServeConfig
from mnist_cli.training.events import (
    EpochDone,
    EpochStarted,
    NetworkBuilt,
    StepsDone,
    Testing,
    TrainEvent,
    TrainResult,
    TrainStarted,
)

D = TrainConfig()  # every default comes from the config dataclass
# "0.01 for sgd and momentum; 0.001 for adam and adamw", from the config's one table of defaults.
_LR_DEFAULTS = "; ".join(
    f"{rate:g} for {' and '.join(name for name, value in cfg.DEFAULT_LR.items() if value == rate)}"
    for rate in dict.fromkeys(cfg.DEFAULT_LR.values())
)


class _TrainReporter(common.Reporter):
    """Live Rich bars per epoch on a terminal; the walk-through's plain log lines elsewhere."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.task: TaskID | None = None
        self.log_every = D.log_every

    def columns(self) -> tuple[Any, ...]:
        """A bar per epoch: steps done, the chunk's loss, accuracy and speed, time left."""
        return (
            TextColumn("[bold]epoch {task.fields[epoch]}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  acc {task.fields[accuracy]}  {task.fields[speed]} img/s"),
            TimeRemainingColumn(),
        )

    def say(self, text: str) -> None:
        """A line above the bars, or on its own when plain."""
        # Plain lines stay whole for logs and grep; on a terminal Rich wraps between words
        # (the terminal itself would cut an epoch line mid-word) and folds long paths.
        console = self.progress.console if self.progress else self.console
        if self.plain:
            console.print(text, highlight=False, soft_wrap=True)
        else:
            console.print(text, highlight=False, overflow="fold")

    def __call__(self, event: TrainEvent) -> None:
        if isinstance(event, NetworkBuilt):
            (self.progress.console if self.progress else self.console).print(network_table(event))
        elif isinstance(event, TrainStarted):
            self.log_every = event.config.log_every
            what = f"resuming {common.safe(str(event.run_dir))} from {common.safe(event.resumed_from)}" if event.resumed_from else f"run {common.safe(str(event.run_dir))}"
            if event.replicas > 1:
                what += f" ({event.strategy}, {event.replicas} replicas)"
            self.say(
                f"{what}: {event.config.model} on {event.config.dataset}, {event.train_count:,} train / "
                f"{event.val_count:,} val / {event.test_count:,} test images, {event.steps_per_epoch:,} steps per epoch"
            )
        elif isinstance(event, EpochStarted) and self.progress is not None:
            fields = {"epoch": f"{event.epoch}/{event.epochs}", "loss": "-", "accuracy": "-", "speed": "-"}
            self.task = self.progress.add_task("train", total=event.steps, completed=event.step, **fields)
        elif isinstance(event, StepsDone):
            self._steps(event)
        elif isinstance(event, EpochDone):
            self._epoch(event)
        elif isinstance(event, Testing):
            source = f" with {common.safe(event.checkpoint)}" if event.checkpoint else ""
            self.say(f"scoring the {event.count:,} test images{source}")

    def _steps(self, event: StepsDone) -> None:
        fields = {
            "epoch": f"{event.epoch}/{event.epochs}",
            "loss": f"{event.loss:.4f}",
            "accuracy": f"{event.accuracy:.2%}",
            "speed": f"{event.samples_per_second:,.0f}",
        }
        if self.progress is not None:
            if self.task is None:
                self.task = self.progress.add_task("train", total=event.steps, completed=event.step, **fields)
            else:
                self.progress.update(self.task, total=event.steps, completed=event.step, **fields)
        elif event.step % self.log_every == 0:
            self.say(
                f"epoch {event.epoch} step {event.step}/{event.steps} loss {event.loss:.4f} "
                f"accuracy {event.accuracy:.4f} ({event.samples_per_second:,.0f} img/s)"
            )

    def _epoch(self, event: EpochDone) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
        val = (
            f"  val loss {event.val_loss:.4f} acc {event.val_accuracy:.2%}" if event.val_accuracy is not None else ""
        )
        best = "  [green]best[/]" if event.best and not self.plain else ("  best" if event.best else "")
        self.say(
            f"epoch {event.epoch}/{event.epochs}  train loss {event.train_loss:.4f} acc {event.train_accuracy:.2%}"
            f"{val}  lr {event.learning_rate:.3g}  {event.samples_per_second:,.0f} img/s  {event.seconds:.1f} s{best}"
        )


def network_table(event: NetworkBuilt) -> Table:
    """The network as the walk-through's `model.summary()` shows it: layers, output shapes, parameters."""
    table = Table(title=f"network {common.safe(event.name)}", title_justify="left", show_footer=True)
    table.add_column("layer", footer="total", overflow="fold")
    table.add_column("type", overflow="fold")
    table.add_column("output shape", overflow="fold")
    table.add_column("parameters", justify="right", footer=f"{event.params:,}")
    for layer in event.layers:
        shape = "(" + ", ".join("None" if size is None else str(size) for size in layer.output_shape) + ")"
        table.add_row(common.safe(layer.name), common.safe(layer.kind), shape, f"{layer.params:,}")
    return table


def next_commands(result: Any) -> list[str]:
    """What to run after training, quoted for a shell."""
    run = shlex.quote(result.run_dir)
    return [f"mnist evaluate {run}", f"tensorboard --logdir {shlex.quote(str(Path(result.run_dir).parent))}"]


def _summary(result: TrainResult) -> Table:
    table = Table(title=f"run {common.safe(result.run_dir)}", show_header=False, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")  # paths fold onto the next line, never cut
    table.add_row("epochs", str(result.epochs))
    table.add_row("train", f"loss {result.train_loss:.4f}  accuracy {result.train_accuracy:.2%}")
    if result.val_accuracy is not None:
        table.add_row("validation", f"loss {result.val_loss:.4f}  accuracy {result.val_accuracy:.2%}")
    if result.best_checkpoint:
        table.add_row("best", f"epoch {result.best_epoch} ({result.best_val_accuracy:.2%} val)  {common.safe(result.best_checkpoint)}")
    table.add_row("test", f"[bold]accuracy {result.test_accuracy:.2%}[/]  loss {result.test_loss:.4f}")
    table.add_row("speed", f"{result.samples_per_second:,.0f} img/s, {result.seconds:.1f} s in all")
    table.add_row("model", common.safe(result.model_file))
    if getattr(result, "params", None) is not None:
        table.add_row("parameters", f"{result.params:,}")
    return table


# One definition of each hyperparameter option: `mnist tune` takes the same ones to fix a hyperparameter.
EpochsOption = Annotated[int, typer.Option(help="Passes over the training split.", min=1, envvar="MNIST_EPOCHS")]
LrOption = Annotated[
    Optional[float],
    typer.Option("--lr", envvar="MNIST_LR", help=f"Peak learning rate \\[default: {_LR_DEFAULTS}].", show_default=False),
]
BatchSizeOption = Annotated[int, typer.Option(help="Images per step.", min=1, envvar="MNIST_BATCH_SIZE")]
ModelOption = Annotated[common.Model, typer.Option(envvar="MNIST_MODEL", help="Network: the walk-through's MLP or a small convnet.")]
HiddenOption = Annotated[str, typer.Option(help="MLP hidden layer sizes, comma-separated.")]
LossOption = Annotated[common.Loss, typer.Option(help="mse: the walk-through's squared error on logits; xent: cross-entropy.")]
OptimizerOption = Annotated[common.Optimizer, typer.Option(help="Plain SGD, SGD with Nesterov momentum, Adam or AdamW.")]
ScheduleOption = Annotated[common.Schedule, typer.Option(help="Learning-rate schedule.")]
MomentumOption = Annotated[float, typer.Option(help="Momentum for --optimizer momentum.")]
WeightDecayOption = Annotated[float, typer.Option(help="Decoupled weight decay for --optimizer adamw.")]
ValSplitOption = Annotated[float, typer.Option(help="Share of the training split held out for validation (0 for none).")]
SeedOption = Annotated[int, typer.Option(envvar="MNIST_SEED", help="Seed for weights, shuffling, validation split and augmentation.")]
PrecisionOption = Annotated[common.Precision, typer.Option(envvar="MNIST_PRECISION", help="Compute precision; mixed-bf16 speeds the convnet up on CPUs with AVX512-BF16 or AMX (the small MLP is faster in float32), mixed-fp16 is for GPUs.")]
AugmentOption = Annotated[bool, typer.Option("--augment/--no-augment", help="Random shifts, rotations and zooms (and flips for fashion-mnist).")]
LogEveryOption = Annotated[int, typer.Option(help="Steps between log lines (and compiled calls).")]
CheckpointEveryOption = Annotated[int, typer.Option(help="Also checkpoint every N steps (0: once per epoch).")]
KeepCheckpointsOption = Annotated[int, typer.Option(help="How many recent checkpoints to keep.")]

# Every hyperparameter can be given on the command line; the names come from the config itself.
_GIVEN = tuple(field.name for field in dataclasses.fields(TrainConfig))


def given_hyperparameters(ctx: typer.Context, options: dict[str, Any]) -> dict[str, Any]:
    """The TrainConfig fields given on the command line (or in the environment), as config values."""
    given = {}
    for name in _GIVEN:
        if name in options and _was_given(ctx, name):
            value = options[name]
            given[name] = cfg.parse_hidden(value) if name == "hidden" else getattr(value, "value", value)
    return given


@app.command()
@common.handles_errors
def train(
    ctx: typer.Context,
    dataset: common.DatasetOption = common.Dataset(D.dataset),
    data_dir: common.DataDirOption = None,
    epochs: EpochsOption = D.epochs,
    lr: LrOption = None,
    batch_size: BatchSizeOption = D.batch_size,
    model: ModelOption = common.Model(D.model),
    hidden: HiddenOption = cfg.format_hidden(D.hidden),
    loss: LossOption = common.Loss(D.loss),
    optimizer: OptimizerOption = common.Optimizer(D.optimizer),
    schedule: ScheduleOption = common.Schedule(D.schedule),
    momentum: MomentumOption = D.momentum,
    weight_decay: WeightDecayOption = D.weight_decay,
    val_split: ValSplitOption = D.val_split,
    seed: SeedOption = D.seed,
    precision: PrecisionOption = common.Precision(D.precision),
    augment: AugmentOption = D.augment,
    log_every: LogEveryOption = D.log_every,
    checkpoint_every: CheckpointEveryOption = D.checkpoint_every,
    keep_checkpoints: KeepCheckpointsOption = D.keep_checkpoints,
    run_dir: Annotated[Optional[Path], typer.Option(help="This run's directory \\[default: a new runs/<dataset>-<model>-<time>].", file_okay=False)] = None,
    runs_root: Annotated[Path, typer.Option(help="Where new runs are made.", envvar=run_dirs.RUNS_DIR_ENV, file_okay=False)] = Path(run_dirs.DEFAULT_RUNS_ROOT),
    resume: Annotated[bool, typer.Option(help="Continue the run in --run-dir (default: the most recent run) from its last checkpoint.")] = False,
    recipe: Annotated[
        Optional[common.Recipe],
        typer.Option(help="Start from a named recipe (see the README); options given here override it.", show_default=False),
    ] = None,
    config_file: Annotated[
        Optional[Path],
        typer.Option(
            "--config",
            help="Hyperparameters from a TOML file (or a run's config.json, to repeat it); options given here override it.",
            exists=False,
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    strategy: Annotated[
        common.Strategy,
        typer.Option(help="tf.distribute strategy: auto, one device, mirrored over local devices, or multi-worker from TF_CONFIG."),
    ] = common.Strategy("auto"),
    devices: Annotated[
        Optional[str],
        typer.Option(help="Devices for --strategy mirrored, comma-separated (e.g. /gpu:0,/gpu:1) \\[default: all local GPUs].", show_default=False),
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve", help="Also serve the drawing page, following the run as it trains (`mnist serve RUN --follow`, in its own process).")
    ] = False,
    port: Annotated[int, typer.Option(help="The --serve page's port; 0 picks a free one.")] = ServeConfig().port,
    json_output: common.JsonOption = False,
    quiet: common.QuietOption = False,
) -> None:
    """Train a network on MNIST with a compiled GradientTape loop; defaults are the walk-through's recipe."""
    # Precedence: defaults < --recipe < --config file < options given (or set in the environment).
    given = {
        **(cfg.recipe(recipe.value) | {"recipe": recipe.value} if recipe else {}),
        **(cfg.read_config_file(config_file) if config_file else {}),
        **given_hyperparameters(ctx, locals()),
    }
    config = TrainConfig(**given)

    from mnist_cli.data.idx import load_splits
    from mnist_cli.data.download import ensure_dataset

    run_path, config = run_dirs.resolve_run(config, run_dir=run_dir, resume=resume, root=runs_root, overrides=given)
    if resume:
        # A resumed run reads the data it was trained on, unless --data-dir says otherwise.
        from mnist_cli.runs import rundata

        data_dir, note = rundata.data_dir_for(run_path, config.dataset, data_dir if common.on_command_line(ctx, "data_dir") else None)
        if note and not quiet:
            common.err.print(common.safe(note), highlight=False, soft_wrap=True)
    reporter = None if quiet else _TrainReporter(common.err)
    downloads = None if quiet else DownloadReporter(common.err)
    with downloads.live() if downloads else contextlib.nullcontext():
        directory = ensure_dataset(config.dataset, data_dir, on_event=downloads)
    splits = load_splits(directory, dataset=config.dataset, val_split=config.val_split, seed=config.seed)
    # TensorFlow (2-3 s) only once the run and its data are in place: a wrong path fails at once.
    from mnist_cli.training import distribute, trainer
    placement = distribute.make_placement(strategy.value, devices=[d.strip() for d in devices.split(",") if d.strip()] if devices else None)
    page = _start_page(run_path, port) if serve else None
    try:
        with reporter.live() if reporter else contextlib.nullcontext():
            result = trainer.fit(config, splits, run_dir=run_path, on_event=reporter, placement=placement, data_directory=directory)
    finally:
        if page is not None:
            page.stop()  # the training ended, failed or was interrupted: the page's server goes with it
    if json_output:
        common.print_json(result.to_dict())
    else:
        common.out.print(_summary(result))
        # Plain lines, outside the table, so they can be pasted as they are.
        for command in next_commands(result):
            common.out.print(f"next: {common.safe(command)}", highlight=False, soft_wrap=True)


def _start_page(run_path: Path, port: int) -> Any:
    from mnist_cli.serving.follow import FollowServer

    def listening(url: str) -> None:
        common.err.print(f"watch it learn at {common.safe(url)} (the page follows the run; it stops with the training)", highlight=False, soft_wrap=True)

    def stopped(code: int, lines: list[str]) -> None:
        last = next((line for line in reversed(lines) if line.strip()), "")
        common.err.print(f"[bold yellow]warning:[/] the page's server stopped (exit {code}){': ' + common.safe(last) if last else ''}; the training goes on", highlight=False, soft_wrap=True)

    page = FollowServer(run_path, port=port, on_address=listening, on_exit=stopped)
    page.start()
    common.err.print("the page's server starts; it listens once the first checkpoint is saved", highlight=False)
    return page


def _was_given(ctx: typer.Context, name: str) -> bool:
    # Typer bundles its own click; its ParameterSource enum is compared by name.
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")
