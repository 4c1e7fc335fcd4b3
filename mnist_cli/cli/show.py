"""`mnist show`: draw samples of a data set in the terminal, and optionally save them as a captioned PNG grid."""

from __future__ import annotations

import dataclasses
import enum
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from typer.core import TyperCommand
from rich.console import Console
from rich.text import Text

from mnist_cli.cli import common, drawing, options, progress
from mnist_cli.cli.lazy import command_app

if TYPE_CHECKING:
    import numpy as np

    from mnist_cli.data import explore

Split = enum.Enum("Split", {name: name for name in ("train", "test")}, type=str)

_TILE = 28  # one text column per pixel column; two pixel rows per text row
_GAP = 2
_MULTI_VALUE = frozenset({"--index", "-i", "--class", "-c"})
_NEGATIVE = re.compile(r"-\d+")


def _spread_values(args: list[str]) -> list[str]:
    """Turn `--index 0 1 2` into `--index 0 --index 1 --index 2`, which click can parse."""
    spread: list[str] = []
    current: str | None = None
    takes_first = False
    rest = iter(args)
    for arg in rest:
        if arg == "--":
            spread.append(arg)
            spread.extend(rest)
            break
        name, has_value, _ = arg.partition("=")
        if name in _MULTI_VALUE:
            current, takes_first = name, not has_value
            spread.append(arg)
            continue
        # A negative number is a (bad) value, so the user hears "out of range" and not "no such option".
        if current and (not arg.startswith("-") or _NEGATIVE.fullmatch(arg)):
            spread.extend([arg] if takes_first else [current, arg])
            takes_first = False
            continue
        current = None
        spread.append(arg)
    return spread


class _ShowCommand(TyperCommand):
    """A command whose --index and --class take several values after one flag."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _spread_values(list(args)))


app = command_app()
_DEFAULT_DATASET = options.Dataset("mnist")
_DEFAULT_SPLIT = Split("train")

SplitOption = Annotated[Split, typer.Option("--split", "-s", help="Which split to draw from.")]
IndexOption = Annotated[
    Optional[list[int]],
    typer.Option(
        "--index",
        "-i",
        metavar="N...",
        help="Show these samples, by position in the split (0-based). Several after one flag: --index 0 1 2.",
        show_default=False,
    ),
]
ClassOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--class",
        "-c",
        metavar="C...",
        help=(
            "Show samples of these classes: a label (7) or a Fashion-MNIST name, case and punctuation ignored "
            "(sandal, ankle-boot, tshirt). Several after one flag: --class 3 5 8."
        ),
        show_default=False,
    ),
]
RandomOption = Annotated[
    Optional[int],
    typer.Option(
        "--random", "-r", metavar="K", help="Show K random samples (of --class, if given).", show_default=False
    ),
]
SampleSeedOption = Annotated[
    Optional[int],
    typer.Option(
        "--seed",
        metavar="S",
        help="Seed for --random; the same seed shows the same samples \\[default: a new one, printed].",
        show_default=False,
    ),
]
CountOption = Annotated[
    Optional[int],
    typer.Option(
        "--count",
        "-n",
        metavar="N",
        help=(
            "How many samples to show, spread evenly over the classes, in file order "
            "\\[default: 10]."
        ),
        show_default=False,
    ),
]
OutputOption = Annotated[
    Optional[Path],
    typer.Option(
        "--output", "-o", metavar="PNG", help="Also save the samples as a captioned PNG grid.", dir_okay=False
    ),
]


def _caption(index: int, name: str) -> str:
    return f"#{index} {name}"[:_TILE]


def _say(console: Console, text: str) -> None:
    console.print(common.printable(text), markup=False, highlight=False, soft_wrap=True)


def draw(console: Console, images: np.ndarray, selection: explore.Selection) -> None:
    """Draw the samples side by side, as many per row as the console is wide."""
    colour = drawing.draws_in_colour(console)
    per_row = max(1, (console.width + _GAP) // (_TILE + _GAP))
    gap = " " * _GAP
    tiles = [
        (_caption(index, name), drawing.digit_lines(image, colour=colour))
        for index, name, image in zip(selection.indices, selection.class_names, images)
    ]
    for start in range(0, len(tiles), per_row):
        row = tiles[start : start + per_row]
        if start:
            console.print()
        _say(console, gap.join(f"{caption:<{_TILE}}" for caption, _ in row).rstrip())
        for line_no in range(len(row[0][1])):
            if colour:
                console.print(Text(gap).join(lines[line_no] for _, lines in row), soft_wrap=True)
            else:
                # Plain text: a pipe or a file gets the ASCII ramp, no escape codes.
                _say(console, gap.join(lines[line_no].plain for _, lines in row).rstrip())


def _describe(selection: explore.Selection) -> str:
    seed = f", --seed {selection.seed}" if selection.seed is not None else ""
    shown = f"{len(selection.indices)} of {selection.split_size} images"
    return f"{selection.dataset} {selection.split} split: {shown}{seed}"


@app.command(cls=_ShowCommand)
@common.handles_errors
def show(
    dataset: options.DatasetOption = _DEFAULT_DATASET,
    data_dir: options.DataDirOption = None,
    split: SplitOption = _DEFAULT_SPLIT,
    index: IndexOption = None,
    class_: ClassOption = None,
    random: RandomOption = None,
    seed: SampleSeedOption = None,
    count: CountOption = None,
    output: OutputOption = None,
    json_output: options.JsonOption = False,
) -> None:
    """Draw samples of a data set in the terminal, each with its index and label.

    By default one sample of each class (the first of each in the split). Pick samples with --index, --class or --random; --count sets how many.

    On a colour terminal each image is drawn with half blocks, 28 columns x 14 rows; in a pipe or a file, as ASCII art. Missing data files are downloaded first.
    """
    # Imported here, not at module import, so that `mnist --help` stays fast.
    from mnist_cli import data
    from mnist_cli.data import explore
    from mnist_cli.report import pictures
    from mnist_cli.data.download import ensure_dataset

    directory = data.dataset_dir(data_dir, dataset.value)
    if data.missing_files(directory, dataset.value):
        with progress.downloads(common.err, quiet=False) as reporter:
            directory = ensure_dataset(dataset.value, data_dir, on_event=reporter)
    images, labels = data.load_split(directory, split.value)
    selection = explore.select(
        labels,
        class_names=data.dataset_spec(dataset.value).class_names,
        dataset=dataset.value,
        split=split.value,
        indices=index,
        classes=class_,
        random=random,
        seed=seed,
        count=count,
    )
    chosen = images[list(selection.indices)]
    if output is not None:
        grid = pictures.digit_grid(
            chosen,
            captions=[f"{name}\n#{i}" for i, name in zip(selection.indices, selection.class_names)],
            columns=10,
            title=f"{selection.dataset} {selection.split}",
        )
        selection = dataclasses.replace(selection, output=pictures.save_png(grid, output))
    if json_output:
        common.print_json(selection.to_dict())
        return
    _say(common.out, _describe(selection))
    draw(common.out, chosen, selection)
    if selection.output is not None:
        _say(common.out, f"saved {len(selection.indices)} samples to {selection.output}")
