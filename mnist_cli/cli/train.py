"""`mnist train`: parse options into one TrainConfig, run the trainer, render its progress."""

from __future__ import annotations

import contextlib
import shlex
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn
from rich.table import Table

from mnist_cli.cli import common, options, progress
from mnist_cli.cli.lazy import command_app
from mnist_cli.core import config as cfg
from mnist_cli.core import precision as precision_choice
from mnist_cli.core.config import TrainConfig
from mnist_cli.runs import runs as run_dirs
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
app = command_app()


def eta(steps_left: int, batch_size: int, samples_per_second: float) -> str:
    """The time left in an epoch, as h:mm:ss, from the last chunk's speed; -:--:-- before there is one."""
    if samples_per_second <= 0:
        return "-:--:--"
    minutes, seconds = divmod(round(steps_left * batch_size / samples_per_second), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


class _TrainReporter(progress.Reporter):
    """Live Rich bars per epoch on a terminal; the walk-through's plain log lines elsewhere."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.task: TaskID | None = None
        self.log_every = D.log_every
        self.batch_size = D.batch_size

    def columns(self) -> tuple[Any, ...]:
        """A bar per epoch: steps done, the chunk's loss, accuracy and speed, time left."""
        return (
            TextColumn("[bold]epoch {task.fields[epoch]}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  acc {task.fields[accuracy]}  {task.fields[speed]} img/s"),
            # Rich's own estimate needs two updates within its window; an epoch may have only one chunk.
            TextColumn("[progress.remaining]{task.fields[eta]}"),
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
            self.batch_size = event.config.batch_size
            what = f"resuming {common.safe(str(event.run_dir))} from {common.safe(event.resumed_from)}" if event.resumed_from else f"run {common.safe(str(event.run_dir))}"
            if event.replicas > 1:
                what += f" ({event.strategy}, {event.replicas} replicas)"
            self.say(
                f"{what}: {event.config.model} on {event.config.dataset}, {event.train_count:,} train / "
                f"{event.val_count:,} val / {event.test_count:,} test images, {event.steps_per_epoch:,} steps per epoch"
            )
        elif isinstance(event, EpochStarted) and self.progress is not None:
            fields = {"epoch": f"{event.epoch}/{event.epochs}", "loss": "-", "accuracy": "-", "speed": "-", "eta": eta(0, 0, 0)}
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
            "eta": eta(event.steps - event.step, self.batch_size, event.samples_per_second),
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
        figures, timing = epoch_groups(event)
        if event.best:
            timing.append("[green]best[/]" if not self.plain else "best")
        console = self.progress.console if self.progress else self.console
        # "best" is one word whether marked up or not.
        width = len("  ".join([*figures, *timing]).replace("[green]best[/]", "best"))
        if self.plain or width <= console.width:
            self.say("  ".join([*figures, *timing]))
        else:  # folded cleanly: the figures on one line, speed, time and "best" on the next
            self.say("  ".join(figures))
            self.say("  " + "  ".join(timing))


def epoch_groups(event: EpochDone) -> tuple[list[str], list[str]]:
    """An epoch line's parts: (epoch, train and validation figures, rate), (speed, time)."""
    figures = [f"epoch {event.epoch}/{event.epochs}", f"train loss {event.train_loss:.4f} acc {event.train_accuracy:.2%}"]
    if event.val_accuracy is not None:
        figures.append(f"val loss {event.val_loss:.4f} acc {event.val_accuracy:.2%}")
    figures.append(f"lr {event.learning_rate:.3g}")
    return figures, [f"{event.samples_per_second:,.0f} img/s", f"{event.seconds:.1f} s"]


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


@app.command()
@common.handles_errors
def train(
    ctx: typer.Context,
    dataset: options.DatasetOption = options.Dataset(D.dataset),
    data_dir: options.DataDirOption = None,
    epochs: options.EpochsOption = D.epochs,
    lr: options.LrOption = None,
    batch_size: options.BatchSizeOption = D.batch_size,
    model: options.ModelOption = options.Model(D.model),
    hidden: options.HiddenOption = cfg.format_hidden(D.hidden),
    loss: options.LossOption = options.Loss(D.loss),
    optimizer: options.OptimizerOption = options.Optimizer(D.optimizer),
    schedule: options.ScheduleOption = options.Schedule(D.schedule),
    momentum: options.MomentumOption = D.momentum,
    weight_decay: options.WeightDecayOption = D.weight_decay,
    val_split: options.ValSplitOption = D.val_split,
    seed: options.SeedOption = D.seed,
    precision: options.PrecisionOption = options.Precision(D.precision),
    augment: options.AugmentOption = D.augment,
    log_every: options.LogEveryOption = D.log_every,
    checkpoint_every: options.CheckpointEveryOption = D.checkpoint_every,
    keep_checkpoints: options.KeepCheckpointsOption = D.keep_checkpoints,
    run_dir: Annotated[Optional[Path], typer.Option(help="This run's directory \\[default: a new runs/<dataset>-<model>-<time>].", file_okay=False)] = None,
    runs_root: options.RunsRootOption = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --run-dir (default: the most recent run) from its last checkpoint.")] = False,
    recipe: Annotated[
        Optional[options.Recipe],
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
        options.Strategy,
        typer.Option(help="tf.distribute strategy: auto, one device, mirrored over local devices, or multi-worker from TF_CONFIG."),
    ] = options.Strategy("auto"),
    devices: Annotated[
        Optional[str],
        typer.Option(help="Devices for --strategy mirrored, comma-separated (e.g. /gpu:0,/gpu:1) \\[default: all local GPUs].", show_default=False),
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve", help="Also serve the drawing page, following the run as it trains (`mnist serve RUN --follow`, in its own process).")
    ] = False,
    port: Annotated[int, typer.Option(help="The --serve page's port; 0 picks a free one.")] = ServeConfig().port,
    json_output: options.JsonOption = False,
    quiet: options.QuietOption = False,
) -> None:
    """Train a network on MNIST with a compiled GradientTape loop; defaults are the walk-through's recipe."""
    # Precedence: defaults < --recipe < --config file < options given (or set in the environment).
    chosen = {**(cfg.read_config_file(config_file) if config_file else {}), **options.given_hyperparameters(ctx, locals())}
    given = {**(cfg.recipe(recipe.value) | {"recipe": recipe.value} if recipe else {}), **chosen}
    # A recipe's mixed precision becomes float32 where this machine would only emulate it.
    given, notice = precision_choice.choose(given, explicit="precision" in chosen)
    if notice is not None and not quiet:
        progress.say_precision(common.err, notice)
    config = TrainConfig(**given)

    from mnist_cli.data.idx import load_splits
    from mnist_cli.data.download import ensure_dataset

    run_path, config = run_dirs.resolve_run(config, run_dir=run_dir, resume=resume, root=run_dirs.runs_root(runs_root), overrides=given)
    if resume:
        # A resumed run reads the data it was trained on, unless --data-dir says otherwise.
        from mnist_cli.runs import rundata

        recorded, note = rundata.data_dir_for(run_path, config.dataset, data_dir if common.on_command_line(ctx, "data_dir") else None)
        data_dir = recorded or data_dir  # else $MNIST_DATA_DIR (read by Typer into data_dir), else the user cache
        if note and not quiet:
            common.err.print(common.safe(note), highlight=False, soft_wrap=True)
    reporter = None if quiet else _TrainReporter(common.err)
    with progress.downloads(common.err, quiet=quiet) as downloads:
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
    from mnist_cli.serving.launch import FollowServer

    def listening(url: str) -> None:
        common.err.print(f"watch it learn at {common.safe(url)} (the page follows the run; it stops with the training)", highlight=False, soft_wrap=True)

    def stopped(code: int, lines: list[str]) -> None:
        last = next((line for line in reversed(lines) if line.strip()), "")
        common.err.print(f"[bold yellow]warning:[/] the page's server stopped (exit {code}){': ' + common.safe(last) if last else ''}; the training goes on", highlight=False, soft_wrap=True)

    page = FollowServer(run_path, port=port, on_address=listening, on_exit=stopped)
    page.start()
    common.err.print("the page's server starts; it listens once the first checkpoint is saved", highlight=False)
    return page
