"""`mnist tune`: parse options into TuneSettings, run the study's workers, render the trials and the result."""

from __future__ import annotations

import contextlib
import re
import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from typer.core import TyperCommand

from mnist_cli.cli import common, options, progress
from mnist_cli.cli.lazy import command_app
from mnist_cli.core import config as cfg
from mnist_cli.core import precision as precision_choice
from mnist_cli.core.config import TrainConfig
from mnist_cli.core.errors import UsageError
from mnist_cli.runs import runs as run_dirs
from mnist_cli.tuning.space import DEFAULT_SPACES

D = TrainConfig()
app = command_app()
SEARCHED = "searched unless given"
_STATED_DEFAULT = re.compile(r"\s*\\?\[default: [^\]]*\]")
# Fields some built-in space searches: their train default is not what a trial uses.
_SEARCHED_FIELDS = frozenset(name for space in DEFAULT_SPACES.values() for name in space)


class _TuneCommand(TyperCommand):
    """`mnist tune`: its help says "searched unless given" where train's default would mislead."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if param.name in _SEARCHED_FIELDS:
                param.show_default = False
                param.help = f"{_STATED_DEFAULT.sub('', param.help or '')} \\[default: {SEARCHED}]"
_STATE_STYLE = {"complete": "green", "running": "cyan", "pruned": "magenta", "fail": "red", "waiting": "dim"}


def _format_param(name: str, value: Any) -> str:
    if isinstance(value, float):
        return f"{name}={value:.3g}"
    return f"{name}={value}"


def _params(row: Any) -> str:
    return " ".join(_format_param(name, value) for name, value in sorted(row.params.items()))


def _percent(value: float | None) -> str:
    return f"{value:.2%}" if value is not None else "-"


def _best(rows: list[Any]) -> Any:
    complete = [row for row in rows if row.state == "complete" and row.val_accuracy is not None]
    return max(complete, key=lambda row: (row.val_accuracy, -row.number)) if complete else None


class _TuneReporter:
    """A live Rich table of the trials on a terminal; one plain line per trial change elsewhere."""

    def __init__(self, console: Any, *, study: str, trials: int) -> None:
        self.console = console
        self.plain = progress.plain_progress(console)
        self.study = study
        self.trials = trials
        self.live: Live | None = None
        self.seen: dict[int, tuple[str, int]] = {}

    @contextlib.contextmanager
    def running(self) -> Iterator[_TuneReporter]:
        if self.plain:
            yield self
            return
        with Live(self._render([]), console=self.console, refresh_per_second=2, transient=False) as live:
            self.live = live
            yield self

    def __call__(self, rows: list[Any]) -> None:
        if self.live is not None:
            self.live.update(self._render(rows))
            return
        best = _best(rows)
        for row in rows:
            if row.state == "waiting" or (row.state == "running" and row.epochs is None):
                continue  # queued, or its parameters are still being drawn
            key = (row.state, row.epochs_done)
            if self.seen.get(row.number) == key:
                continue
            self.seen[row.number] = key
            epochs = f"epoch {row.epochs_done}/{row.epochs or '?'}"
            mark = "  best so far" if best is not None and best.number == row.number and row.state == "complete" else ""
            self.console.print(
                f"trial {row.number} {row.state}  {epochs}  val {_percent(row.val_accuracy)}  {escape(_params(row))}{mark}",
                highlight=False,
                soft_wrap=True,
            )

    def _render(self, rows: list[Any]) -> Group:
        table = Table(title=f"study {escape(self.study)}: {self.trials} trials", title_justify="left")
        for name in ("trial", "parameters", "epochs", "val acc", "state"):
            table.add_column(name, justify="right" if name in ("trial", "epochs", "val acc") else "left")
        for row in rows[-20:]:  # the most recent ones; the whole list is in --json and the study
            style = _STATE_STYLE.get(row.state, "")
            table.add_row(
                str(row.number),
                escape(_params(row)),
                f"{row.epochs_done}/{row.epochs or '?'}",
                _percent(row.val_accuracy),
                f"[{style}]{row.state}[/]" if style else row.state,
            )
        best = _best(rows)
        footer = f"best so far: trial {best.number}, val {_percent(best.val_accuracy)}  {escape(_params(best))}" if best else "best so far: -"
        return Group(table, footer)


def _summary(result: Any) -> Group:
    table = Table(title=f"study {escape(result.study)}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("storage", escape(result.storage))
    table.add_row("trials", ", ".join(f"{count} {state}" for state, count in result.counts.items()) or "none")
    if result.best_trial is not None:
        table.add_row("best trial", f"{result.best_trial}  {escape(result.best_run_dir or '')}")
        table.add_row("parameters", escape(" ".join(_format_param(k, v) for k, v in sorted(result.best_params.items()))))
        table.add_row("validation", f"accuracy {_percent(result.best_val_accuracy)}")
        table.add_row("test", f"[bold]accuracy {_percent(result.best_test_accuracy)}[/]  (the best trial only; trials were chosen on validation)")
        table.add_row("best config", escape(result.best_config_file or "-"))
    parts: list[Any] = [table]
    if result.importances:
        importances = Table(title=f"parameter importances ({result.importance_method})", title_justify="left")
        importances.add_column("parameter")
        importances.add_column("importance", justify="right")
        for name, value in result.importances.items():
            importances.add_row(escape(name), f"{value:.3f}")
        parts.append(importances)
    return Group(*parts)


@app.command(cls=_TuneCommand)
@common.handles_errors
def tune(
    ctx: typer.Context,
    model: options.ModelOption = options.Model(D.model),
    dataset: options.DatasetOption = options.Dataset(D.dataset),
    data_dir: options.DataDirOption = None,
    trials: Annotated[int, typer.Option(help="Finished trials the study should hold in all (over every worker and machine).", min=1)] = 20,
    timeout: Annotated[Optional[float], typer.Option(help="Start no new trial after this many seconds.", show_default=False)] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Trials at once on this machine, each in its own process with its share of the cores.", min=1)] = 1,
    study: Annotated[Optional[str], typer.Option(help="Study name: the same name (and --storage) continues or shares a study \\[default: <dataset>-<model>].", show_default=False)] = None,
    storage: Annotated[
        Optional[str],
        typer.Option(help="Optuna storage URL, e.g. postgresql://user:pass@host/db \\[default: sqlite:///<runs-root>/<study>.db].", envvar="MNIST_TUNE_STORAGE", show_default=False),
    ] = None,
    space_file: Annotated[Optional[Path], typer.Option("--space", help="Search space as a TOML file (see the README) \\[default: the model's built-in space].", dir_okay=False, show_default=False)] = None,
    runs_root: options.RunsRootOption = None,
    # Any `mnist train` hyperparameter fixes that field for every trial (and takes it out of the space).
    epochs: options.EpochsOption = D.epochs,
    lr: options.LrOption = None,
    batch_size: options.BatchSizeOption = D.batch_size,
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
    json_output: options.JsonOption = False,
    quiet: options.QuietOption = False,
) -> None:
    """Search hyperparameters with Optuna: each trial is an ordinary run under runs/<study>/, chosen on validation accuracy.

    --seed also seeds the sampler. Several `mnist tune` with the same --study and --storage share the study and together run exactly --trials trials.
    """
    given = options.given_hyperparameters(ctx, locals())
    _, notice = precision_choice.choose(given, explicit=True)  # a --precision given is kept, and said to be slow here
    if notice is not None and not quiet:
        progress.say_precision(common.err, notice)
    runs_root = run_dirs.runs_root(runs_root)
    space, fixed = _space_and_fixed(given, space_file, model.value)
    from mnist_cli.data.download import ensure_dataset
    from mnist_cli.tuning import pool, results, storage as stores, study as studies

    name = study or f"{dataset.value}-{model.value}"
    with progress.downloads(common.err, quiet=quiet) as downloads:
        directory = ensure_dataset(dataset.value, data_dir, on_event=downloads)
    settings = studies.TuneSettings(
        study=name,
        storage=storage or stores.default_storage(runs_root, name),
        trials=trials,
        space=space,
        fixed=fixed,
        data_path=str(Path(directory).resolve()),
        runs_root=str(runs_root.resolve()),
        timeout=timeout,
        jobs=jobs,
        deadline=time.time() + timeout if timeout else None,
    )
    if not storage:
        try:
            runs_root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from mnist_cli.core.fileio import io_error

            raise io_error(exc, f"creating {runs_root}") from None
    studies.prepare(settings)
    if not quiet:
        common.err.print(
            f"study {escape(name)} in {escape(stores.redact(settings.storage))}: {trials} trials, {jobs} at a time, "
            f"searching {escape(', '.join(space.names))}",
            highlight=False,
            soft_wrap=True,
        )
    reporter = None if quiet else _TuneReporter(common.err, study=name, trials=trials)
    started = time.perf_counter()
    with reporter.running() if reporter else contextlib.nullcontext():
        pool.run_pool(settings, on_progress=reporter)
    result = results.summarize(settings, seconds=time.perf_counter() - started)
    if json_output:
        common.print_json(result.to_dict())
    else:
        _print_result(result)


def _space_and_fixed(given: dict[str, Any], space_file: Path | None, model: str) -> tuple[Any, dict[str, Any]]:
    """The search space less the fields given, and the fixed values that define the study."""
    from mnist_cli.tuning import space as spaces

    space = spaces.read_space(space_file) if space_file else spaces.default_space(model)
    fixed = TrainConfig(**given).to_dict()
    # The study is defined by what is fixed: the data set, the model, the seed and the options given.
    fixed = {name: value for name, value in fixed.items() if name in given or name in ("dataset", "model", "seed")}
    space = space.without(set(given) - {"dataset", "model"})
    if not space.params:
        raise UsageError("every parameter of the search space is fixed by an option", "leave at least one to search")
    return space, fixed


def _print_result(result: Any) -> None:
    common.out.print(_summary(result))
    if result.best_config_file:
        # Outside the table, on one line, so it can be pasted as it is.
        command = f"mnist train --config {shlex.quote(result.best_config_file)}"
        common.out.print(f"next: {common.safe(command)}", highlight=False, soft_wrap=True)
