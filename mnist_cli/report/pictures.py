"""Pictures of results: digit grids, the confusion matrix, and the report files of `mnist evaluate`.

numpy and Pillow only: no TensorFlow, no Rich, no printing.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mnist_cli.core.fileio import atomic_write_text, atomic_writer, io_error
from mnist_cli.report.metrics import Metrics, misclassified, safe_divide

CONFUSION_MATRIX_PNG = "confusion_matrix.png"
MISCLASSIFIED_PNG = "misclassified.png"
METRICS_JSON = "metrics.json"

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
RGB = tuple[int, int, int]

_PAPER: RGB = (255, 255, 255)
_INK: RGB = (33, 37, 41)
_MUTED: RGB = (108, 117, 125)
_DASH = "\u2013"  # an en dash for "not defined"; _symbols swaps it for "-" where the font lacks it



_FONT_FILES = {
    False: ("DejaVuSans.ttf", "LiberationSans-Regular.ttf", "NotoSans-Regular.ttf", "Arial.ttf", "arial.ttf"),
    True: ("DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf", "NotoSans-Bold.ttf", "Arial Bold.ttf", "arialbd.ttf"),
}
_FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu"),
    Path("/usr/share/fonts/TTF"),
    Path("/usr/share/fonts/truetype/liberation"),
    Path("/usr/share/fonts/truetype/noto"),
    Path("/Library/Fonts"),
    Path("/System/Library/Fonts/Supplemental"),
)


@functools.lru_cache(maxsize=32)
def _font(size: int, bold: bool = False) -> Font:
    """A TrueType font of `size` pixels: a system sans if there is one, else Pillow's own."""
    for name in _FONT_FILES[bold]:
        candidates = [directory / name for directory in _FONT_DIRS if (directory / name).is_file()]
        # Pillow also searches the platform's font folders for a bare file name.
        for candidate in [*candidates, name]:
            try:
                return ImageFont.truetype(str(candidate), size)
            except OSError:
                continue
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except (TypeError, AttributeError, ImportError, OSError):
        return ImageFont.load_default()


@functools.lru_cache(maxsize=256)
def _has_glyph(font: Font, char: str) -> bool:
    """Whether `font` draws `char`, rather than its box for a missing glyph."""
    missing = "\U0010fffd"  # a private-use code point no text font covers
    try:
        drawn, notdef = font.getmask(char), font.getmask(missing)
    except (UnicodeEncodeError, OSError, ValueError):
        return False
    return not (drawn.size == notdef.size and bytes(drawn) == bytes(notdef))


def _symbols(font: Font, text: str) -> str:
    """Replace typographic characters the font lacks with ASCII."""
    for fancy, plain in (("→", "->"), ("·", "-"), (_DASH, "-"), ("\u2014", "-"), ("…", "...")):
        if fancy in text and not _has_glyph(font, fancy):
            text = text.replace(fancy, plain)
    return text


def _text_size(font: Font, text: str) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return math.ceil(right - left), math.ceil(bottom - top)


def _line_height(font: Font) -> int:
    """Height of one line of text, the same for every string in this font."""
    _, top, _, bottom = font.getbbox("Ag0|")
    return math.ceil(bottom - top)


def _fit(font: Font, text: str, width: int) -> str:
    """`text`, shortened with an ellipsis if it is wider than `width` pixels."""
    if _text_size(font, text)[0] <= width:
        return text
    ellipsis = _symbols(font, "…")
    while text and _text_size(font, text + ellipsis)[0] > width:
        text = text[:-1]
    return text.rstrip() + ellipsis if text else ""


def _draw_text(
    draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, font: Font, fill: RGB, *, align: str = "center"
) -> None:
    """Draw one line of text whose box is centred vertically on y and aligned at x."""
    text = _symbols(font, text)
    left, _, right, _ = font.getbbox(text)
    width = right - left
    x, y = xy
    if align == "center":
        x -= width / 2
    elif align == "right":
        x -= width
    # Centre on the font's line box, not the glyphs', so a row of labels shares one baseline.
    _, line_top, _, line_bottom = font.getbbox("Ag0")
    y -= (line_top + line_bottom) / 2
    draw.text((round(x - left), round(y)), text, font=font, fill=fill)


def _paste_rotated_text(image: Image.Image, center: tuple[int, int], text: str, font: Font, fill: RGB) -> None:
    """Draw `text` reading bottom to top, centred on `center`."""
    text = _symbols(font, text)
    width, height = _text_size(font, text)
    left, top, _, _ = font.getbbox(text)
    mask = Image.new("L", (width + 4, height + 4), 0)
    ImageDraw.Draw(mask).text((2 - left, 2 - top), text, font=font, fill=255)
    mask = mask.rotate(90, expand=True)
    x = center[0] - mask.width // 2
    y = center[1] - mask.height // 2
    image.paste(Image.new("RGB", mask.size, fill), (x, y), mask)


def text_image(text: str, *, width: int | None = None, size: int = 16) -> Image.Image:
    """A small picture that says `text` (for example when there is nothing to show)."""
    font = _font(size)
    lines = [_symbols(font, line) for line in text.splitlines() or [""]]
    line_height = _line_height(font) + size // 3
    text_width = max(_text_size(font, line)[0] for line in lines)
    margin = size
    image = Image.new("RGB", (max(width or 0, text_width + 2 * margin), len(lines) * line_height + 2 * margin), _PAPER)
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        _draw_text(draw, (image.width / 2, margin + (row + 0.5) * line_height), line, font, _INK)
    return image


# --------------------------------------------------------------------------- digit grids


def _as_uint8_images(images: np.ndarray) -> np.ndarray:
    array = np.asarray(images)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ValueError(f"images must be [N, H, W] or [N, H, W, 1], got shape {array.shape}")
    if array.dtype != np.uint8:
        # Floats are taken as [0, 1], the scale the model sees.
        scale = 255.0 if np.issubdtype(array.dtype, np.floating) else 1.0
        array = np.clip(np.rint(array.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    return array


def digit_grid(
    images: np.ndarray,
    *,
    captions: Sequence[str] | None = None,
    columns: int = 10,
    scale: int = 3,
    gap: int = 6,
    title: str | None = None,
) -> Image.Image:
    """A grid of white-on-black digits, each upscaled `scale` times, with an optional caption under it.

    Geometry, for N images: c = min(columns, N) columns, r = ceil(N / c) rows, tiles of
    t = 28 * scale pixels, caption height k (0 without captions), title height T (0 without):
    width = c * t + (c + 1) * gap, height = T + r * (t + k) + (r + 1) * gap.
    A caption may hold several lines ("\\n"), the last of several drawn in grey; a line too wide
    for its tile is shortened with an ellipsis.
    """
    digits = _as_uint8_images(images)
    count = len(digits)
    if count == 0:
        raise ValueError("digit_grid needs at least one image")
    if columns < 1 or scale < 1 or gap < 0:
        raise ValueError("columns and scale must be >= 1 and gap >= 0")
    if captions is not None and len(captions) != count:
        raise ValueError(f"{count} images but {len(captions)} captions")
    columns = min(columns, count)
    rows = -(-count // columns)
    tile_h, tile_w = digits.shape[1] * scale, digits.shape[2] * scale

    caption_font = _font(max(11, min(16, round(tile_w * 0.15))))
    caption_lines = [str(c).splitlines() for c in captions] if captions is not None else []
    line_height = _line_height(caption_font) + 3
    max_lines = max((len(lines) for lines in caption_lines), default=0)
    caption_h = max_lines * line_height + 8 if max_lines else 0

    title_font = _font(max(12, min(18, round(tile_w * 0.2))), bold=True)
    title_h = _line_height(title_font) + 2 * max(gap, 6) if title else 0

    width = columns * tile_w + (columns + 1) * gap
    height = title_h + rows * (tile_h + caption_h) + (rows + 1) * gap
    canvas = Image.new("RGB", (width, height), _PAPER)
    draw = ImageDraw.Draw(canvas)
    if title:
        _draw_text(draw, (width / 2, title_h / 2 + gap / 2), _fit(title_font, title, width - 2 * gap), title_font, _INK)

    # Upscale with NEAREST so strokes stay crisp pixels rather than blur.
    tiles = np.repeat(np.repeat(digits, scale, axis=1), scale, axis=2)
    for index in range(count):
        row, column = divmod(index, columns)
        x = gap + column * (tile_w + gap)
        y = title_h + gap + row * (tile_h + caption_h + gap)
        canvas.paste(Image.fromarray(tiles[index], mode="L").convert("RGB"), (x, y))
        for line_no, line in enumerate(caption_lines[index] if caption_lines else []):
            # The last of several lines is a footnote (an index, a score): grey.
            fill = _MUTED if line_no and line_no == len(caption_lines[index]) - 1 else _INK
            text = _fit(caption_font, _symbols(caption_font, line), tile_w + gap - 2)
            center_y = y + tile_h + 3 + (line_no + 0.5) * line_height
            _draw_text(draw, (x + tile_w / 2, center_y), text, caption_font, fill)
    return canvas


def digit_grid_array(images: np.ndarray, **kwargs: Any) -> np.ndarray:
    """`digit_grid` as a uint8 [H, W, 3] array (for tf.summary.image, after adding a batch axis)."""
    return np.asarray(digit_grid(images, **kwargs), dtype=np.uint8)


# --------------------------------------------------------------------------- confusion matrix

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
    return (255, 255, 255) if luminance < 150 else _INK


def _wrap_two_lines(font: Font, text: str) -> list[str]:
    """Split a label into at most two lines, at a space or after a slash, as evenly as possible."""
    breaks = [i + 1 for i, ch in enumerate(text) if ch == " "] + [i + 1 for i, ch in enumerate(text) if ch == "/"]
    best, best_width = [text], _text_size(font, text)[0]
    for at in breaks:
        lines = [text[:at].rstrip(), text[at:].lstrip()]
        if all(lines):
            width = max(_text_size(font, line)[0] for line in lines)
            if width < best_width:
                best, best_width = lines, width
    return best


def _percent(value: float) -> str:
    # "100%" rather than "100.0%": shorter, and exact.
    return "100%" if value >= 1 else f"{100 * value:.1f}%"


def confusion_matrix_image(metrics: Metrics, *, title: str | None = None) -> Image.Image:
    """A heat map of the confusion matrix: counts in cells, coloured by share of the true class (blue right, red wrong)."""
    matrix = np.asarray(metrics.confusion_matrix)
    names = metrics.class_names
    n = len(names)
    support = matrix.sum(axis=1)
    rates = safe_divide(matrix, np.maximum(support, 1)[:, None])

    label_font, count_font, small_font = _font(14), _font(15), _font(12)
    bold_count_font = _font(15, bold=True)
    axis_font, title_font = _font(15, bold=True), _font(20, bold=True)
    margin, pad = 24, 10

    # Cells are wide enough for the widest count and for each column label on at most two lines.
    column_labels = [_wrap_two_lines(label_font, name) for name in names]
    widest_label = max(_text_size(label_font, line)[0] for lines in column_labels for line in lines)
    widest_count = max(_text_size(bold_count_font, str(int(v)))[0] for v in matrix.flat)
    cell_w = max(50, widest_count + 14, widest_label + 10, _text_size(small_font, "99.9%")[0] + 12)
    cell_h = max(40, _line_height(count_font) + 22)
    label_lines = max(len(lines) for lines in column_labels)
    label_line_h = _line_height(label_font) + 4
    column_label_h = label_lines * label_line_h + 6

    row_label_w = max(_text_size(label_font, name)[0] for name in (*names, "precision")) + pad
    axis_w = _line_height(axis_font) + pad
    stat_w = max(_text_size(small_font, "100.0%")[0], _text_size(small_font, "recall")[0]) + 2 * pad

    heading = title or "Confusion matrix"
    facts = [f"accuracy {_percent(metrics.accuracy)}", f"{metrics.count:,} images", f"{metrics.errors:,} errors"]
    if metrics.loss is not None and math.isfinite(metrics.loss):
        facts.append(f"loss {metrics.loss:.4f}")
    subtitle = "  ·  ".join(facts)
    legend = "Colour: share of each true class (row).  Blue: correct.  Red: mistaken for another class."

    grid_x = margin + axis_w + row_label_w
    grid_w = n * cell_w
    title_h = _line_height(title_font) + 8 + _line_height(small_font) + 8
    axis_h = _line_height(axis_font) + 2 * pad
    grid_y = margin + title_h + pad + axis_h + column_label_h
    grid_h = n * cell_h
    footer_y = grid_y + grid_h + 2  # precision row
    legend_y = footer_y + _line_height(small_font) + 2 * pad

    width = grid_x + grid_w + stat_w + margin
    width = max(width, _text_size(small_font, legend)[0] + 2 * margin, _text_size(title_font, heading)[0] + 2 * margin)
    height = legend_y + _line_height(small_font) + margin
    image = Image.new("RGB", (width, height), _PAPER)
    draw = ImageDraw.Draw(image)

    # Title and headline numbers, centred over the matrix.
    center_x = grid_x + grid_w / 2
    if center_x - _text_size(title_font, heading)[0] / 2 < margin:
        center_x = width / 2
    _draw_text(draw, (center_x, margin + _line_height(title_font) / 2), heading, title_font, _INK)
    subtitle_y = margin + _line_height(title_font) + 8 + _line_height(small_font) / 2
    _draw_text(draw, (center_x, subtitle_y), subtitle, small_font, _MUTED)

    # Axis titles: "predicted" over the columns, "true" up the left side.
    _draw_text(draw, (grid_x + grid_w / 2, grid_y - column_label_h - axis_h / 2), "predicted", axis_font, _INK)
    _paste_rotated_text(image, (margin + axis_w // 2, grid_y + grid_h // 2), "true", axis_font, _INK)

    for column, lines in enumerate(column_labels):
        top = grid_y - column_label_h + (label_lines - len(lines)) * label_line_h / 2
        for line_no, line in enumerate(lines):
            xy = (grid_x + (column + 0.5) * cell_w, top + (line_no + 0.5) * label_line_h)
            _draw_text(draw, xy, _fit(label_font, line, cell_w - 4), label_font, _INK)
    for row, name in enumerate(names):
        xy = (grid_x - pad, grid_y + (row + 0.5) * cell_h)
        _draw_text(draw, xy, name, label_font, _INK, align="right")

    for row in range(n):
        for column in range(n):
            diagonal = row == column
            colour = _cell_colour(float(rates[row, column]), diagonal=diagonal)
            x0, y0 = grid_x + column * cell_w, grid_y + row * cell_h
            draw.rectangle((x0, y0, x0 + cell_w - 1, y0 + cell_h - 1), fill=colour, outline=_GRID_LINE)
            count = int(matrix[row, column])
            fill = _text_on(colour) if count else (196, 200, 206)
            font = bold_count_font if diagonal and count else count_font
            _draw_text(draw, (x0 + cell_w / 2, y0 + cell_h / 2), str(count), font, fill)

    # Recall per row on the right, precision per column underneath.
    stat_x = grid_x + grid_w + stat_w / 2
    _draw_text(draw, (stat_x, grid_y - label_line_h / 2 - 4), "recall", small_font, _MUTED)
    for row, report in enumerate(metrics.per_class):
        text = _percent(report.recall) if report.support else _DASH
        _draw_text(draw, (stat_x, grid_y + (row + 0.5) * cell_h), text, small_font, _MUTED)
    precision_y = footer_y + _line_height(small_font) / 2 + pad / 2
    _draw_text(draw, (grid_x - pad, precision_y), "precision", small_font, _MUTED, align="right")
    predicted = matrix.sum(axis=0)
    for column, report in enumerate(metrics.per_class):
        text = _percent(report.precision) if predicted[column] else _DASH
        _draw_text(draw, (grid_x + (column + 0.5) * cell_w, precision_y), text, small_font, _MUTED)

    _draw_text(draw, (width / 2, legend_y + _line_height(small_font) / 2), legend, small_font, _MUTED)
    return image


# --------------------------------------------------------------------------- files


def save_png(image: Image.Image, path: Path) -> Path:
    """Write `image` as a PNG that appears under `path` only once complete."""
    path = Path(path)
    with atomic_writer(path, what=f"writing {path}") as handle:
        image.save(handle, format="PNG")
    return path


def _error_caption(true_name: str, predicted_name: str, index: int, *, one_line: bool) -> str:
    if one_line:
        return f"{true_name} → {predicted_name}\n#{index}"
    return f"{true_name}\n→ {predicted_name}\n#{index}"


def write_report(
    directory: Path,
    *,
    metrics: Metrics,
    images: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    class_names: Sequence[str],
    limit: int = 100,
    probabilities: np.ndarray | None = None,
) -> list[Path]:
    """Write confusion_matrix.png, misclassified.png and metrics.json into `directory`; return their paths.

    The grid shows at most `limit` misclassified items, in data-set order, or most
    confidently wrong first when `probabilities` ([N, classes]) are given; each caption
    reads "true → predicted" and the item's index in the split.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise io_error(exc, f"creating the report directory {directory}") from None

    paths = [save_png(confusion_matrix_image(metrics), directory / CONFUSION_MATRIX_PNG)]

    labels = np.asarray(labels)
    predictions = np.asarray(predictions)
    indices = misclassified(labels, predictions, limit=limit, probabilities=probabilities)
    total_wrong = int(np.count_nonzero(labels != predictions))
    if len(indices):
        # Digits fit "7 → 1" on one line; long names get a line each, the same layout in every cell.
        one_line = max(len(name) for name in class_names) <= 3
        captions = [
            _error_caption(class_names[labels[i]], class_names[predictions[i]], int(i), one_line=one_line)
            for i in indices
        ]
        shown = f"{len(indices)} of {total_wrong:,}" if len(indices) < total_wrong else f"all {total_wrong:,}"
        order = "most confident first" if probabilities is not None else "in data-set order"
        title = f"Misclassified: {shown} ({order}), true → predicted"
        grid = digit_grid(np.asarray(images)[indices], captions=captions, columns=10, scale=3, title=title)
    else:
        grid = text_image(f"No misclassified images among {len(labels):,}.", size=18)
    paths.append(save_png(grid, directory / MISCLASSIFIED_PNG))

    metrics_path = directory / METRICS_JSON
    atomic_write_text(metrics_path, json.dumps(metrics.to_dict(), indent=2, allow_nan=False) + "\n")
    paths.append(metrics_path)
    return paths
