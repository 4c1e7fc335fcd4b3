"""`mnist runs`: a table of the training runs under a folder."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from mnist_cli.runs import listing
from mnist_cli.runs import runs as run_dirs
from mnist_cli.cli import app, common
from mnist_cli.core.config import TrainConfig

Sort = enum.Enum("Sort", {name: name for name in listing.SORT_KEYS}, type=str)

RootOption = Annotated[
    Optional[Path],
    typer.Option(
        "--root",
        help=f"Folder holding the run directories \\[default: ./{run_dirs.DEFAULT_RUNS_ROOT}].",
        envvar=run_dirs.RUNS_DIR_ENV,
        file_okay=False,
        show_default=False,
    ),
]
SortOption = Annotated[
    Sort,
    typer.Option(
        "--sort", help="date: newest first; test, val: best accuracy first; name: A to Z."
    ),
]
_STATUS_STYLE = {
    listing.STATE_FINISHED: "green",
    listing.STATE_RUNNING: "cyan",
    listing.STATE_INTERRUPTED: "yellow",
    listing.STATE_PRUNED: "magenta",
    listing.STATE_BROKEN: "bold red",
}


def _percent(value: float | None) -> str:
    return f"{100 * value:.2f}%" if value is not None else "-"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _epochs(run: listing.RunSummary) -> str:
    if run.epochs_planned is None:
        return "-"
    return f"{run.epochs_done if run.epochs_done is not None else '?'}/{run.epochs_planned}"


def _settings(config: TrainConfig) -> str:
    recipe = f"recipe {config.recipe}, " if config.recipe else ""
    augment = ", augment" if config.augment else ""
    return f"{recipe}{config.optimizer} lr {config.lr:g}, batch {config.batch_size}, {config.loss}, {config.schedule}{augment}"


_SETTINGS = ("data", "model", "recipe", "optimizer", "lr", "batch", "loss", "schedule", "augment")


def _setting_cells(config: TrainConfig | None) -> list[str]:
    if config is None:
        return ["-"] * len(_SETTINGS)
    return [
        config.dataset,
        config.model,
        config.recipe or "-",
        config.optimizer,
        f"{config.lr:g}",
        str(config.batch_size),
        config.loss,
        config.schedule,
        "yes" if config.augment else "no",
    ]


def _wide_table(summaries: list[listing.RunSummary]) -> Table:
    """One column per setting: for wide terminals, pipes and files."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("run", "started", "status", *_SETTINGS):
        table.add_column(name, justify="right" if name in ("lr", "batch") else "left", no_wrap=name != "run")
    for name in ("params", "epochs", "best val", "test", "time"):
        table.add_column(name, justify="right", no_wrap=True)
    for run in summaries:
        table.add_row(common.safe(run.name), _started(run), _status(run), *_setting_cells(run.config), _params(run), *_figures(run))
    return table


def _compact_table(summaries: list[listing.RunSummary]) -> Table:
    """The settings (data, model, optimizer, lr, batch, loss, schedule) dim under the run's name: fits 80 columns."""
    # No box: its 3-character column separators would push the table past 80 columns.
    table = Table(box=None, pad_edge=False, header_style="bold underline")
    table.add_column("run", overflow="fold", ratio=1, min_width=14)
    table.add_column("started", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for name in ("epochs", "best val", "test", "time"):
        table.add_column(name, justify="right", no_wrap=True)
    for run in summaries:
        config = run.config
        details = f"\n[dim]{config.dataset} {config.model}, {common.safe(_settings(config))}[/]" if config else ""
        table.add_row(f"{common.safe(run.name)}{details}", _started(run).replace(" ", "\n"), _status(run), *_figures(run))
    return table


def _params(run: listing.RunSummary) -> str:
    params = getattr(run, "params", None)
    return f"{params:,}" if params is not None else "-"


def _started(run: listing.RunSummary) -> str:
    return run.started.strftime("%Y-%m-%d %H:%M") if run.started else "-"


def _status(run: listing.RunSummary) -> str:
    return f"[{_STATUS_STYLE[run.status]}]{run.status}[/]"


def _figures(run: listing.RunSummary) -> list[str]:
    return [_epochs(run), _percent(run.best_val_accuracy), _percent(run.test_accuracy), _duration(run.seconds)]


def _print_table(summaries: list[listing.RunSummary]) -> None:
    console = common.out
    if not console.is_terminal:
        # In a pipe or a file, one line per run reads and greps better than wrapped cells.
        console = Console(width=1000, highlight=False, no_color=True)
    wide = _wide_table(summaries)
    # Measured unconstrained: a table measured at the console's width always seems to fit.
    natural = console.measure(wide, options=console.options.update_width(100_000)).maximum
    console.print(wide if natural <= console.width else _compact_table(summaries))


@app.command("runs")
@common.handles_errors
def runs_command(
    root: RootOption = None,
    sort: SortOption = Sort("date"),
    json_output: common.JsonOption = False,
) -> None:
    """List the training runs under a folder: status, data set, model, hyperparameters, epochs, accuracy, time.

    A run is "running" while a training holds its lock, "interrupted" when it stopped before the end, "pruned" when `mnist tune` stopped it early, "broken" when its files cannot be read (the reason is printed under the table).
    """
    folder = run_dirs.runs_root(root)
    summaries = listing.list_runs(folder, sort=sort.value)
    if json_output:
        common.print_json([run.to_dict() for run in summaries])
        return
    if not summaries:
        common.out.print(
            f"no runs in {common.safe(str(folder))} yet: train one with `mnist train` "
            f"(or point --root or ${run_dirs.RUNS_DIR_ENV} at the folder that holds them)",
            highlight=False,
            soft_wrap=True,
        )
        return
    _print_table(summaries)
    for run in summaries:
        if run.status == listing.STATE_BROKEN:
            reason = common.safe(run.reason or "unreadable")
            common.out.print(f"[bold red]{common.safe(run.name)}[/]: {reason}", highlight=False, soft_wrap=True)
