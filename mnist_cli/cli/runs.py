"""`mnist runs`: a table of the training runs under a folder."""

from __future__ import annotations

import enum
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from mnist_cli.cli import common, options
from mnist_cli.cli.lazy import command_app
from mnist_cli.core.config import TrainConfig
from mnist_cli.runs import listing
from mnist_cli.runs import runs as run_dirs

app = command_app()
Sort = enum.Enum("Sort", {name: name for name in listing.SORT_KEYS}, type=str)

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


_SETTINGS = ("data", "model", "recipe", "optimizer", "lr", "batch", "loss", "schedule", "augment")
_FIGURES = ("epochs", "best val", "test", "time")
_COLUMNS = ("run", "started", "status", *_SETTINGS, "params", *_FIGURES)
# Where the table is too wide, columns go in this order (never the run's name, status or accuracy).
_DROPPED_FIRST = ("recipe", "schedule", "augment", "loss", "params", "batch", "lr", "optimizer", "started", "time", "data", "model", "epochs", "best val")
_RIGHT = frozenset({"lr", "batch", "params", *_FIGURES})


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


def _cells(run: listing.RunSummary) -> dict[str, str]:
    values = [common.safe(run.name), _started(run), _status(run), *_setting_cells(run.config), _params(run), *_figures(run)]
    return dict(zip(_COLUMNS, values))


def _table(rows: list[dict[str, str]], columns: tuple[str, ...]) -> Table:
    """The runs with these columns, one line per run: no cell wraps, so a run's name stays whole to copy."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name in columns:
        table.add_column(name, justify="right" if name in _RIGHT else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(row[name] for name in columns))
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


def _fitting_table(console: Console, summaries: list[listing.RunSummary]) -> Table | None:
    """The table with as many columns as fit the console's width, or None if even the fewest do not."""
    rows = [_cells(run) for run in summaries]
    # Measured unconstrained: a table measured at the console's width always seems to fit.
    wide = console.options.update_width(100_000)

    def fits(dropped: set[str]) -> Table | None:
        table = _table(rows, tuple(name for name in _COLUMNS if name not in dropped))
        return table if console.measure(table, options=wide).maximum <= console.width else None

    dropped: set[str] = set()
    for name in _DROPPED_FIRST:  # drop columns until the table fits ...
        if fits(dropped):
            break
        dropped.add(name)
    if not fits(dropped):
        return None
    for name in reversed(_DROPPED_FIRST):  # ... then take back, most useful first, those that still fit
        if name in dropped and fits(dropped - {name}):
            dropped.discard(name)
    return fits(dropped)


def _print_runs(console: Console, summaries: list[listing.RunSummary]) -> None:
    """A table as wide as the console (COLUMNS in a pipe); where none fits, a name line and a figures line per run."""
    table = _fitting_table(console, summaries)
    if table is not None:
        console.print(table)
        return
    for run in summaries:
        cells = _cells(run)
        console.print(cells["run"], highlight=False, soft_wrap=True)  # whole, however long
        figures = "  ".join(f"{name} {cells[name]}" for name in _FIGURES)
        console.print(f"  {cells['status']}  {figures}", highlight=False)


@app.command("runs")
@common.handles_errors
def runs_command(
    runs_root: options.RunsRootOption = None,
    sort: SortOption = Sort("date"),
    json_output: options.JsonOption = False,
) -> None:
    """List the training runs under a folder: status, data set, model, hyperparameters, epochs, accuracy, time.

    A run is "running" while a training holds its lock, "interrupted" when it stopped before the end, "pruned" when `mnist tune` stopped it early, "broken" when its files cannot be read (the reason is printed under the table).
    """
    folder = run_dirs.runs_root(runs_root)
    summaries = listing.list_runs(folder, sort=sort.value)
    if json_output:
        common.print_json([run.to_dict() for run in summaries])
        return
    if not summaries:
        where = "holds none yet" if folder.is_dir() else "does not exist yet"
        common.out.print(
            f"no runs: the runs folder {common.safe(str(folder))} {where}; train one with `mnist train` "
            f"(or point --runs-root or ${run_dirs.RUNS_DIR_ENV} at the folder that holds them)",
            highlight=False,
            soft_wrap=True,
        )
        return
    _print_runs(common.out, summaries)
    for run in summaries:
        if run.status == listing.STATE_BROKEN:
            reason = common.safe(run.reason or "unreadable")
            common.out.print(f"[bold red]{common.safe(run.name)}[/]: {reason}", highlight=False, soft_wrap=True)
