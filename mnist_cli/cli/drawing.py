"""Drawing 28x28 digits in a terminal: grey half blocks in colour, an ASCII ramp in pipes."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from rich.color import Color
from rich.console import Console
from rich.style import Style
from rich.text import Text

from mnist_cli.cli.progress import plain_progress

if TYPE_CHECKING:
    import numpy as np

HALF_BLOCK = "\u2580"  # upper half block: foreground paints the top pixel, background the bottom one


def draws_in_colour(console: Console) -> bool:
    """Whether to draw half blocks: without colour they are solid blocks, useful only on a colour terminal."""
    return not plain_progress(console) and not console.no_color and console.color_system is not None


@functools.lru_cache(maxsize=4096)
def _cell_style(top: int, bottom: int) -> Style:
    return Style(color=Color.from_rgb(top, top, top), bgcolor=Color.from_rgb(bottom, bottom, bottom))


def digit_lines(image: np.ndarray, *, colour: bool) -> list[Text]:
    """A digit as one text line per two pixel rows: half blocks in colour, else ASCII art."""
    from mnist_cli.data import explore  # numpy: not needed for `mnist --help`

    if not colour:
        return [Text(line) for line in explore.ascii_art(image)]
    lines = []
    for top_row, bottom_row in explore.row_pairs(image):
        line = Text()
        for top, bottom in zip(top_row.tolist(), bottom_row.tolist()):
            line.append(HALF_BLOCK, _cell_style(top, bottom))
        lines.append(line)
    return lines
