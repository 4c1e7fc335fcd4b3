"""`mnist evaluate`: score a trained model on every example of a split, and show where it goes wrong."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console

from mnist_cli.cli import common, options, progress
from mnist_cli.cli.lazy import command_app
from mnist_cli.core.config import EVAL_BATCH
from mnist_cli.data.registry import EVAL_SPLITS

if TYPE_CHECKING:
    from rich.style import Style
    from rich.table import Table

    from mnist_cli.inference import evaluation

Split = enum.Enum("Split", {name: name for name in EVAL_SPLITS}, type=str)
TOP_CONFUSIONS = 5

app = command_app()


@app.command()
@common.handles_errors
def evaluate(
    ctx: typer.Context,
    target: options.TargetArgument = None,
    dataset: Annotated[
        Optional[options.Dataset],
        typer.Option("--dataset", "-d", help="Which data set \\[default: the one the model was trained on].", show_default=False),
    ] = None,
    data_dir: options.DataDirOption = None,
    split: Annotated[Split, typer.Option(help="Which split; train and val are the run's own, as held out in training.")] = Split("test"),
    batch_size: Annotated[int, typer.Option(help="Images per compiled call.", min=1)] = EVAL_BATCH,
    report: Annotated[
        Optional[Path],
        typer.Option(help="Also write confusion_matrix.png, misclassified.png and metrics.json into this folder.", file_okay=False),
    ] = None,
    runs_root: options.RunsRootOption = None,
    json_output: options.JsonOption = False,
    quiet: options.QuietOption = False,
) -> None:
    """Score a trained model on every image of a split: accuracy, loss, per-class scores and the confusion matrix."""
    # numpy and Pillow only: TensorFlow is imported once the target has resolved to a model.
    from mnist_cli.inference import loading

    loaded = loading.load(target, runs_root=runs_root)  # a wrong target fails before numpy is imported
    from mnist_cli.data.download import ensure_dataset
    from mnist_cli.inference import evaluation
    from mnist_cli.runs import rundata

    name = dataset.value if dataset is not None else loaded.config.dataset
    # The data the run was trained on, unless --data-dir says otherwise (MNIST_DATA_DIR is only the usual place).
    run_dir = Path(loaded.source.run_dir) if loaded.source.run_dir else None
    recorded, note = rundata.data_dir_for(run_dir, name, data_dir if common.on_command_line(ctx, "data_dir") else None)
    data_dir = recorded or data_dir  # else $MNIST_DATA_DIR (read by Typer into data_dir), else the user cache
    if note and not quiet:
        _say(note)
    if not quiet:
        if json_output:  # the plain summary names the model itself
            _say(f"model {loaded.source.describe()}")
        if not loaded.config_known and dataset is None:
            _say("no config.json beside the model: assuming --dataset mnist and --loss mse")
    with progress.downloads(common.err, quiet=quiet) as downloads:
        directory = ensure_dataset(name, data_dir, on_event=downloads)
    images, labels = evaluation.split_arrays(directory, loaded=loaded, dataset=name, split=split.value)
    result = evaluation.evaluate(
        loaded, images, labels, dataset=name, split=split.value, batch_size=batch_size, on_event=None if quiet else _progress
    )
    written = evaluation.write_report(result, report) if report is not None else []
    if json_output:
        payload = result.to_dict()
        if report is not None:
            payload["report"] = [str(path) for path in written]
        common.print_json(payload)
        return
    render(common.out, result)
    if written:
        common.out.print(f"report: {', '.join(common.safe(path.name) for path in written)} in {common.safe(str(report))}", highlight=False)


def _say(text: str) -> None:
    common.err.print(common.safe(text), highlight=False, soft_wrap=True)


def _progress(event: evaluation.Scoring) -> None:
    _say(f"scoring the {event.count:,} {event.split} images of {event.dataset}")


def render(console: Console, result: Any) -> None:
    """The summary, per-class table, confusion matrix and most frequent confusions."""
    from rich.table import Table  # here: a wrong target fails without the table code
    metrics = result.metrics
    summary = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("model", common.safe(result.source.describe()))
    summary.add_row("data", f"{result.dataset} {result.split} split, {metrics.count:,} images")
    summary.add_row("accuracy", f"[bold]{metrics.accuracy:.2%}[/]  ({metrics.errors:,} wrong)")
    loss = f"{metrics.loss:.4f}" if metrics.loss is not None else "n/a"
    summary.add_row("loss", f"{loss}  (mean {result.loss_function} per image)")
    summary.add_row("time", f"{result.seconds:.2f} s  ({result.images_per_second:,.0f} images/s)")
    console.print(summary)
    console.print()
    console.print(_per_class_table(metrics))
    console.print()
    console.print(_confusion_table(metrics))
    confusions = _confusions_table(metrics)
    if confusions is not None:
        console.print()
        console.print(confusions)


def _per_class_table(metrics: Any) -> Table:
    from rich.table import Table
    table = Table(title="per class", title_justify="left")
    table.add_column("class")
    for heading in ("precision", "recall", "F1", "support"):
        table.add_column(heading, justify="right")
    worst = min((report.f1 for report in metrics.per_class if report.support), default=None)
    for index, report in enumerate(metrics.per_class):
        style = "red" if worst is not None and report.support and report.f1 == worst and worst < 1.0 else None
        label = str(index) if report.name == str(index) else f"{index} {report.name}"
        table.add_row(
            common.safe(label), f"{report.precision:.2%}", f"{report.recall:.2%}", f"{report.f1:.2%}", f"{report.support:,}", style=style
        )
    table.add_row("macro avg", "", "", f"{metrics.macro_f1:.2%}", f"{metrics.count:,}", style="bold", end_section=False)
    return table


def _error_style(count: int, largest: int) -> Style:
    from rich.color import Color
    from rich.style import Style

    # Off-diagonal cells go from a dark to a bright red background as errors grow.
    share = (count / largest) ** 0.5 if largest else 0.0
    red = round(90 + 165 * share)
    return Style(color="white", bgcolor=Color.from_rgb(red, 30 - round(20 * share), 30 - round(20 * share)), bold=share > 0.5)


def _confusion_table(metrics: Any) -> Table:
    from rich.table import Table
    from rich.text import Text
    matrix = metrics.confusion_matrix
    classes = len(matrix)
    off = matrix.copy()
    for index in range(classes):
        off[index, index] = 0
    largest = int(off.max()) if off.size else 0
    table = Table(title="confusion matrix (rows: true class, columns: predicted)", title_justify="left", padding=(0, 1))
    table.add_column("true", justify="right", style="bold")
    for column in range(classes):
        table.add_column(str(column), justify="right")
    for row in range(classes):
        cells: list[Text] = []
        for column in range(classes):
            count = int(matrix[row, column])
            if row == column:
                cells.append(Text(f"{count:,}", style="bold green"))
            elif count:
                cells.append(Text(f"{count:,}", style=_error_style(count, largest)))
            else:
                cells.append(Text("·", style="dim"))
        names = metrics.class_names
        label = str(row) if names[row] == str(row) else f"{names[row]} {row}"
        table.add_row(Text(label), *cells)
    return table


def _confusions_table(metrics: Any) -> Table | None:
    from rich.table import Table

    top = metrics.top_confusions[:TOP_CONFUSIONS]
    if not top:
        return None
    names = metrics.class_names
    table = Table(title="most frequent confusions", title_justify="left")
    table.add_column("true")
    table.add_column("read as")
    table.add_column("images", justify="right")
    table.add_column("of the class", justify="right")
    support = metrics.confusion_matrix.sum(axis=1)
    for true, predicted, count in top:
        table.add_row(common.safe(names[true]), common.safe(names[predicted]), f"{count:,}", f"{count / support[true]:.1%}")
    return table
