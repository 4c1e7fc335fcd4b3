"""The confusion matrix as a heat map: counts in cells, coloured by share of the true class."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from mnist_cli.report.metrics import Metrics, safe_divide
from mnist_cli.report.text import (
    DASH, INK, MUTED, PAPER, RGB, Font, draw_text, fit_text, line_height_of, paste_rotated_text, sans_font, text_size,
)  # fmt: skip

# ColorBrewer sequential palettes: blue for correct answers, red for errors, so the
# two stay apart for the common red-green colour blindness.
_BLUES: tuple[RGB, ...] = (
    (222, 235, 247), (198, 219, 239), (158, 202, 225), (107, 174, 214),
    (66, 146, 198), (33, 113, 181), (8, 81, 156), (8, 48, 107),
)  # fmt: skip
_REDS: tuple[RGB, ...] = (
    (255, 240, 233), (254, 224, 210), (252, 187, 161), (252, 146, 114), (251, 106, 74),
    (239, 59, 44), (203, 24, 29), (165, 15, 21), (103, 0, 13),
)  # fmt: skip
_EMPTY_CELL: RGB = (246, 247, 249)
_GRID_LINE: RGB = (255, 255, 255)
# An error rate at or above this share of the class gets the darkest red.
_ERROR_SATURATION = 0.2


def _palette(colors: Sequence[RGB], t: float) -> RGB:
    """Interpolate along `colors` at t in [0, 1]."""
    t = min(max(t, 0.0), 1.0) * (len(colors) - 1)
    low = min(int(t), len(colors) - 2)
    frac = t - low
    a, b = colors[low], colors[low + 1]
    return tuple(round(a[i] + (b[i] - a[i]) * frac) for i in range(3))  # type: ignore[return-value]


def _cell_colour(rate: float, *, diagonal: bool) -> RGB:
    """Cell colour for a row-normalised rate."""
    if rate <= 0:
        return _EMPTY_CELL
    if diagonal:
        return _palette(_BLUES, rate)
    # Errors are usually a few percent: a square root spreads them over the palette,
    # and the floor keeps a single error visibly pink.
    return _palette(_REDS, max(0.04, math.sqrt(min(rate / _ERROR_SATURATION, 1.0))))


def _text_on(background: RGB) -> RGB:
    luminance = 0.2126 * background[0] + 0.7152 * background[1] + 0.0722 * background[2]
    return (255, 255, 255) if luminance < 150 else INK


def _wrap_two_lines(font: Font, text: str) -> list[str]:
    """Split a label into at most two lines, at a space or after a slash, as evenly as possible."""
    breaks = [i + 1 for i, ch in enumerate(text) if ch == " "] + [i + 1 for i, ch in enumerate(text) if ch == "/"]
    best, best_width = [text], text_size(font, text)[0]
    for at in breaks:
        lines = [text[:at].rstrip(), text[at:].lstrip()]
        if all(lines):
            width = max(text_size(font, line)[0] for line in lines)
            if width < best_width:
                best, best_width = lines, width
    return best


def _percent(value: float) -> str:
    # "100%" rather than "100.0%": shorter, and exact.
    return "100%" if value >= 1 else f"{100 * value:.1f}%"


@dataclass(frozen=True)
class _Layout:
    """Where everything of the picture goes: fonts, cell sizes and the grid's position."""

    label_font: Font
    count_font: Font
    bold_count_font: Font
    small_font: Font
    axis_font: Font
    title_font: Font
    column_labels: list[list[str]]
    cell_w: int
    cell_h: int
    label_lines: int
    label_line_h: int
    column_label_h: int
    axis_w: int
    axis_h: int
    stat_w: int
    grid_x: int
    grid_y: int
    footer_y: int
    legend_y: int
    width: int
    height: int

    margin = 24
    pad = 10


def _layout(matrix: np.ndarray, names: Sequence[str], heading: str, legend: str) -> _Layout:
    """Cells wide enough for the widest count and for each column label on at most two lines."""
    label_font, count_font, small_font = sans_font(14), sans_font(15), sans_font(12)
    bold_count_font, axis_font, title_font = sans_font(15, bold=True), sans_font(15, bold=True), sans_font(20, bold=True)
    margin, pad, n = _Layout.margin, _Layout.pad, len(names)
    column_labels = [_wrap_two_lines(label_font, name) for name in names]
    widest_label = max(text_size(label_font, line)[0] for lines in column_labels for line in lines)
    widest_count = max(text_size(bold_count_font, str(int(v)))[0] for v in matrix.flat)
    cell_w = max(50, widest_count + 14, widest_label + 10, text_size(small_font, "99.9%")[0] + 12)
    cell_h = max(40, line_height_of(count_font) + 22)
    label_lines = max(len(lines) for lines in column_labels)
    label_line_h = line_height_of(label_font) + 4
    column_label_h = label_lines * label_line_h + 6
    row_label_w = max(text_size(label_font, name)[0] for name in (*names, "precision")) + pad
    axis_w = line_height_of(axis_font) + pad
    stat_w = max(text_size(small_font, "100.0%")[0], text_size(small_font, "recall")[0]) + 2 * pad
    grid_x = margin + axis_w + row_label_w
    title_h = line_height_of(title_font) + 8 + line_height_of(small_font) + 8
    axis_h = line_height_of(axis_font) + 2 * pad
    grid_y = margin + title_h + pad + axis_h + column_label_h
    footer_y = grid_y + n * cell_h + 2  # the precision row
    legend_y = footer_y + line_height_of(small_font) + 2 * pad
    width = max(
        grid_x + n * cell_w + stat_w + margin,
        text_size(small_font, legend)[0] + 2 * margin,
        text_size(title_font, heading)[0] + 2 * margin,
    )
    height = legend_y + line_height_of(small_font) + margin
    return _Layout(
        label_font, count_font, bold_count_font, small_font, axis_font, title_font, column_labels, cell_w, cell_h,
        label_lines, label_line_h, column_label_h, axis_w, axis_h, stat_w, grid_x, grid_y, footer_y, legend_y, width, height,
    )  # fmt: skip


def confusion_matrix_image(metrics: Metrics, *, title: str | None = None) -> Image.Image:
    """A heat map of the confusion matrix: counts in cells, coloured by share of the true class (blue right, red wrong)."""
    matrix = np.asarray(metrics.confusion_matrix)
    heading = title or "Confusion matrix"
    facts = [f"accuracy {_percent(metrics.accuracy)}", f"{metrics.count:,} images", f"{metrics.errors:,} errors"]
    if metrics.loss is not None and math.isfinite(metrics.loss):
        facts.append(f"loss {metrics.loss:.4f}")
    legend = "Colour: share of each true class (row).  Blue: correct.  Red: mistaken for another class."
    at = _layout(matrix, metrics.class_names, heading, legend)
    image = Image.new("RGB", (at.width, at.height), PAPER)
    draw = ImageDraw.Draw(image)
    _draw_headings(image, draw, at, metrics.class_names, heading, "  ·  ".join(facts))
    _draw_cells(draw, at, matrix)
    _draw_rates(draw, at, metrics, matrix)
    draw_text(draw, (at.width / 2, at.legend_y + line_height_of(at.small_font) / 2), legend, at.small_font, MUTED)
    return image


def _draw_headings(image: Image.Image, draw: ImageDraw.ImageDraw, at: _Layout, names: Sequence[str], heading: str, subtitle: str) -> None:
    """The title and headline numbers centred over the matrix, the axis titles and the class labels."""
    margin, pad = at.margin, at.pad
    grid_w, grid_h = len(names) * at.cell_w, len(names) * at.cell_h
    center_x = at.grid_x + grid_w / 2
    if center_x - text_size(at.title_font, heading)[0] / 2 < margin:
        center_x = at.width / 2
    draw_text(draw, (center_x, margin + line_height_of(at.title_font) / 2), heading, at.title_font, INK)
    subtitle_y = margin + line_height_of(at.title_font) + 8 + line_height_of(at.small_font) / 2
    draw_text(draw, (center_x, subtitle_y), subtitle, at.small_font, MUTED)
    # "predicted" over the columns, "true" up the left side.
    draw_text(draw, (at.grid_x + grid_w / 2, at.grid_y - at.column_label_h - at.axis_h / 2), "predicted", at.axis_font, INK)
    paste_rotated_text(image, (margin + at.axis_w // 2, at.grid_y + grid_h // 2), "true", at.axis_font, INK)
    for column, lines in enumerate(at.column_labels):
        top = at.grid_y - at.column_label_h + (at.label_lines - len(lines)) * at.label_line_h / 2
        for line_no, line in enumerate(lines):
            xy = (at.grid_x + (column + 0.5) * at.cell_w, top + (line_no + 0.5) * at.label_line_h)
            draw_text(draw, xy, fit_text(at.label_font, line, at.cell_w - 4), at.label_font, INK)
    for row, name in enumerate(names):
        draw_text(draw, (at.grid_x - pad, at.grid_y + (row + 0.5) * at.cell_h), name, at.label_font, INK, align="right")


def _draw_cells(draw: ImageDraw.ImageDraw, at: _Layout, matrix: np.ndarray) -> None:
    """Each cell coloured by its share of the true class, with its count."""
    rates = safe_divide(matrix, np.maximum(matrix.sum(axis=1), 1)[:, None])
    for row in range(len(matrix)):
        for column in range(len(matrix)):
            diagonal = row == column
            colour = _cell_colour(float(rates[row, column]), diagonal=diagonal)
            x0, y0 = at.grid_x + column * at.cell_w, at.grid_y + row * at.cell_h
            draw.rectangle((x0, y0, x0 + at.cell_w - 1, y0 + at.cell_h - 1), fill=colour, outline=_GRID_LINE)
            count = int(matrix[row, column])
            fill = _text_on(colour) if count else (196, 200, 206)
            face = at.bold_count_font if diagonal and count else at.count_font
            draw_text(draw, (x0 + at.cell_w / 2, y0 + at.cell_h / 2), str(count), face, fill)


def _draw_rates(draw: ImageDraw.ImageDraw, at: _Layout, metrics: Metrics, matrix: np.ndarray) -> None:
    """Recall per row on the right, precision per column underneath."""
    small, pad = at.small_font, at.pad
    stat_x = at.grid_x + len(matrix) * at.cell_w + at.stat_w / 2
    draw_text(draw, (stat_x, at.grid_y - at.label_line_h / 2 - 4), "recall", small, MUTED)
    for row, report in enumerate(metrics.per_class):
        text = _percent(report.recall) if report.support else DASH
        draw_text(draw, (stat_x, at.grid_y + (row + 0.5) * at.cell_h), text, small, MUTED)
    precision_y = at.footer_y + line_height_of(small) / 2 + pad / 2
    draw_text(draw, (at.grid_x - pad, precision_y), "precision", small, MUTED, align="right")
    predicted = matrix.sum(axis=0)
    for column, report in enumerate(metrics.per_class):
        text = _percent(report.precision) if predicted[column] else DASH
        draw_text(draw, (at.grid_x + (column + 0.5) * at.cell_w, precision_y), text, small, MUTED)
