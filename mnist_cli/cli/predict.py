"""`mnist predict`: read digits in pictures (files, folders, standard input) with a trained model."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mnist_cli.core import config, errors
from mnist_cli.cli import app, common, drawing
from mnist_cli.cli.evaluate import RunsRootOption

Engine = common._choices("Engine", config.ENGINES)
_BAR_WIDTH = 24
_EIGHTHS = " ▏▎▍▌▋▊▉█"


@app.command()
@common.handles_errors
def predict(
    images: Annotated[
        # Strings, not Paths: Path("./-") prints as "-", and only a bare - means standard input.
        list[str],
        typer.Argument(
            help="Pictures of digits (PNG, JPEG, BMP, GIF, TIFF, WebP), folders of them, or - for standard input.",
            metavar="IMAGE",
            show_default=False,
        ),
    ],
    checkpoint: Annotated[
        Optional[Path],
        typer.Option(
            "--checkpoint",
            help="A run directory, checkpoint directory or prefix, or model.keras \\[default: the most recent run].",
            show_default=False,
        ),
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="How many of the most probable classes to list.", min=1, max=10)] = 3,
    show: Annotated[bool, typer.Option("--show", help="Draw the 28x28 digit the network saw beside its probabilities.")] = False,
    runs_root: RunsRootOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print a JSON list, one object per picture, on standard output; nothing else.")
    ] = False,
    engine: Annotated[
        Engine,
        typer.Option(
            "--engine",
            help="auto: the run's cached LiteRT model (made on first use), TensorFlow where that cannot serve; "
            "litert: fail rather than fall back; tensorflow: always TensorFlow.",
        ),
    ] = Engine.auto,  # type: ignore[attr-defined]
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Say which runtime predicts, and why.")] = False,
) -> None:
    """Predict the digit in each picture; it is first made to look like an MNIST digit (cropped, scaled, centred)."""
    from mnist_cli.inference import litert, predict  # TensorFlow only where the LiteRT cache cannot serve

    def note(message: str) -> None:
        if verbose:
            common.err.print(f"[dim]engine:[/] {common.safe(message)}", soft_wrap=True, highlight=False)

    # The pictures are read, and the target resolved, before TensorFlow could be imported.
    items = predict.gather_pictures(images, read_stdin=_read_stdin)
    loaded = litert.load(checkpoint, runs_root=runs_root, engine=engine.value, on_note=note)

    def on_event(event: predict.PictureDone) -> None:
        if event.failure is not None:
            # An error line per failed picture and its advice on a hint line, as for any other error.
            common.print_error(errors.InputError(event.failure.message, event.failure.hint))

    results = predict.predict_pictures(loaded, items, on_event=on_event)
    failed = sum(isinstance(result, predict.Failure) for result in results)
    if json_output:
        common.print_json([result.to_dict(top_k=top_k) if isinstance(result, predict.Prediction) else result.to_dict() for result in results])
    else:
        predictions = [result for result in results if isinstance(result, predict.Prediction)]
        if show:
            for prediction in predictions:
                draw(common.out, prediction, top_k=top_k)
        elif predictions:
            _print_table(common.out, predictions, top_k=top_k)
    if failed:
        common.err.print(f"{failed} of {len(results)} pictures could not be read", highlight=False)
        raise typer.Exit(errors.INPUT)


def _read_stdin() -> bytes:
    from mnist_cli.inference.preprocessing import MAX_FILE_BYTES

    stream = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin
    if getattr(stream, "isatty", lambda: False)():
        raise errors.InputError("standard input is a terminal, not a picture", "pipe a picture in: mnist predict - < digit.png")
    # One byte more than the limit, so preprocessing can say the input is too large.
    return stream.read(MAX_FILE_BYTES + 1)


def _print_table(console: Console, predictions: list[Any], *, top_k: int) -> None:
    """One row per picture; when a file name would not fit its column, each gets a line of its own instead."""
    table = _rows(predictions, top_k=top_k)
    measure = Console(width=100_000, file=io.StringIO())
    if measure.measure(table).maximum <= console.width:
        console.print(table)
        return
    # A narrow terminal: split file names are hard to read (and to grep), so each name gets a
    # whole line of its own, which the terminal may wrap but nothing cuts.
    for prediction in predictions:
        console.print(Text(common.printable(prediction.path), style="bold"), soft_wrap=True)
        line = Text("  ")
        line.append(prediction.name, style="bold")
        line.append(f"  {prediction.probability:.1%}")
        if top_k > 1:
            line.append("   next: " + "  ".join(f"{name} {p:.1%}" for _, name, p in prediction.top(top_k)[1:]), style="dim")
        console.print(line, soft_wrap=True)


def _rows(predictions: list[Any], *, top_k: int) -> Table:
    table = Table(box=None, padding=(0, 2, 0, 0), show_edge=False)
    table.add_column("picture", no_wrap=True)
    table.add_column("prediction")
    table.add_column("probability", justify="right")
    if top_k > 1:
        table.add_column(f"next {top_k - 1} most probable", style="dim")
    for prediction in predictions:
        row = [common.safe(prediction.path), Text(prediction.name, style="bold"), f"{prediction.probability:.1%}"]
        if top_k > 1:
            row.append("  ".join(f"{common.safe(name)} {p:.1%}" for _, name, p in prediction.top(top_k)[1:]))
        table.add_row(*row)
    return table


def _bar(probability: float, *, colour: bool) -> str:
    if not colour:
        return "#" * round(probability * _BAR_WIDTH)
    eighths = round(probability * _BAR_WIDTH * 8)
    full, rest = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[rest] if rest else "")


def bar_lines(prediction: Any, *, top_k: int, colour: bool) -> list[Text]:
    """One line per class: its name, a bar as long as its probability, and the figure; the top k highlighted."""
    top = {index for index, _, _ in prediction.top(top_k)}
    width = max(len(name) for name in prediction.class_names)
    lines = []
    for index, (name, probability) in enumerate(zip(prediction.class_names, prediction.probabilities.tolist())):
        style = "bold green" if index == prediction.prediction else ("yellow" if index in top else "dim")
        line = Text(f"{name:>{width}} ", style="bold" if index in top else "")
        line.append(f"{_bar(probability, colour=colour):<{_BAR_WIDTH}}", style=style)
        line.append(f" {probability:6.1%}", style=style if index in top else "dim")
        lines.append(line)
    return lines


def draw(console: Console, prediction: Any, *, top_k: int) -> None:
    """The picture's name and prediction, then the digit the network saw beside a bar per class."""
    colour = drawing.draws_in_colour(console)
    console.print(
        Text.assemble((common.printable(prediction.path), "bold"), "  ", (prediction.name, "bold green"), f" {prediction.probability:.1%}"),
        soft_wrap=True,
    )
    digit = drawing.digit_lines(prediction.image, colour=colour)
    bars = bar_lines(prediction, top_k=top_k, colour=colour)
    # The bars are centred beside the 14 lines of the digit.
    pad = max(0, (len(digit) - len(bars)) // 2)
    bars = [Text()] * pad + bars + [Text()] * (len(digit) - len(bars) - pad)
    for left, right in zip(digit, bars):
        console.print(Text.assemble(left, "   ", right), soft_wrap=True, overflow="ignore", crop=False)
    console.print()
