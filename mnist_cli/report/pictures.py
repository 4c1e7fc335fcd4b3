"""Pictures of results: digit grids, the confusion matrix, and the report files of `mnist evaluate`.

numpy and Pillow only: no TensorFlow, no Rich, no printing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from mnist_cli.core.fileio import atomic_write_text, atomic_writer, io_error
from mnist_cli.report.confusion import confusion_matrix_image
from mnist_cli.report.metrics import Metrics, misclassified
from mnist_cli.report.text import INK, MUTED, PAPER, draw_text, fit_text, line_height_of, sans_font, symbols, text_image

CONFUSION_MATRIX_PNG = "confusion_matrix.png"
MISCLASSIFIED_PNG = "misclassified.png"
METRICS_JSON = "metrics.json"


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

    caption_font = sans_font(max(11, min(16, round(tile_w * 0.15))))
    caption_lines = [str(c).splitlines() for c in captions] if captions is not None else []
    line_height = line_height_of(caption_font) + 3
    max_lines = max((len(lines) for lines in caption_lines), default=0)
    caption_h = max_lines * line_height + 8 if max_lines else 0

    title_font = sans_font(max(12, min(18, round(tile_w * 0.2))), bold=True)
    title_h = line_height_of(title_font) + 2 * max(gap, 6) if title else 0

    width = columns * tile_w + (columns + 1) * gap
    height = title_h + rows * (tile_h + caption_h) + (rows + 1) * gap
    canvas = Image.new("RGB", (width, height), PAPER)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw_text(draw, (width / 2, title_h / 2 + gap / 2), fit_text(title_font, title, width - 2 * gap), title_font, INK)

    # Upscale with NEAREST so strokes stay crisp pixels rather than blur.
    tiles = np.repeat(np.repeat(digits, scale, axis=1), scale, axis=2)
    for index in range(count):
        row, column = divmod(index, columns)
        x = gap + column * (tile_w + gap)
        y = title_h + gap + row * (tile_h + caption_h + gap)
        canvas.paste(Image.fromarray(tiles[index], mode="L").convert("RGB"), (x, y))
        for line_no, line in enumerate(caption_lines[index] if caption_lines else []):
            # The last of several lines is a footnote (an index, a score): grey.
            fill = MUTED if line_no and line_no == len(caption_lines[index]) - 1 else INK
            text = fit_text(caption_font, symbols(caption_font, line), tile_w + gap - 2)
            center_y = y + tile_h + 3 + (line_no + 0.5) * line_height
            draw_text(draw, (x + tile_w / 2, center_y), text, caption_font, fill)
    return canvas


def digit_grid_array(images: np.ndarray, **kwargs: Any) -> np.ndarray:
    """`digit_grid` as a uint8 [H, W, 3] array (for tf.summary.image, after adding a batch axis)."""
    return np.asarray(digit_grid(images, **kwargs), dtype=np.uint8)


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
