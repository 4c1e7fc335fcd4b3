"""Erasing printed lines that cross the whole picture (ruled or squared paper, a margin), keeping the strokes across them."""

from __future__ import annotations

import numpy as np

_LINE_INK = 0.1  # ink strength that counts towards a printed line (they are often faint)
_LINE_SPAN = 0.6  # share of the picture a printed line crosses, at least
_LINE_EDGE = 0.15  # ... reaching into both outer 15% strips
_LINE_WIDTH = 0.02  # thickest line removed, as a share of the picture (at least 3 pixels)
_LINE_TILTS = np.tan(np.radians(np.arange(-2.0, 2.01, 0.25)))


def remove_lines(ink: np.ndarray) -> np.ndarray:
    """Erase thin straight lines that cross the whole picture (ruled or squared paper, a margin), keeping strokes across them."""
    ink = _remove_rows(ink)
    return np.ascontiguousarray(_remove_rows(np.ascontiguousarray(ink.T)).T)


def _remove_rows(ink: np.ndarray) -> np.ndarray:
    """`remove_lines` for lines running across (tilted by up to 2 degrees: a photo is never square to the sheet)."""
    height, width = ink.shape
    if width < 32:
        return ink
    edge = max(1, round(_LINE_EDGE * width))
    # A line leaves at least half an edge strip's width of ink in each strip; a digit in the
    # middle of the picture leaves none, and the search over tilts below is skipped.
    strips = (ink[:, :edge] >= _LINE_INK).sum(), (ink[:, width - edge :] >= _LINE_INK).sum()
    if min(strips) < 0.5 * edge:
        return ink
    ys, xs = np.nonzero(ink >= _LINE_INK)
    if len(ys) < width * _LINE_SPAN:
        return ink
    columns = np.arange(width)
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    # On a narrow picture several tilts round to the same shifts; each is tried once.
    shifts = {tuple(shift): shift for shift in (np.round(tilt * columns).astype(np.int64) for tilt in _LINE_TILTS)}
    for shift in shifts.values():
        shift = shift - shift.min()  # sheared row of pixel (y, x): y + shift[x]
        rows = ys + shift[xs]
        size = height + int(shift.max()) + 1
        cover = np.bincount(rows, minlength=size).astype(np.float64)
        # At the lines' own tilt their pixels pile up in the fewest rows: the sharpest profile.
        sharpness = float((cover * cover).sum())
        if best is None or sharpness > best[0]:
            best = (sharpness, shift, rows)
    assert best is not None
    _, shift, rows = best
    size = height + int(shift.max()) + 1
    cover = np.bincount(rows, minlength=size)
    # Both ends of the sheet must be crossed: a long stroke of a big digit rarely reaches both.
    left = np.bincount(rows[xs < edge], minlength=size)
    right = np.bincount(rows[xs >= width - edge], minlength=size)
    line = (cover >= _LINE_SPAN * width) & (left >= 0.5 * edge) & (right >= 0.5 * edge)
    if not line.any():
        return ink
    ink = ink.copy()
    thickest = max(3, round(_LINE_WIDTH * height))
    changes = np.flatnonzero(np.diff(np.concatenate([[0], line.astype(np.int8), [0]])))
    for start, stop in zip(changes[::2], changes[1::2]):
        if stop - start > thickest:
            continue  # a broad band (a shadow's edge, a dark table) is not a printed line
        # In sheared rows: the band plus two pixels either side (anti-aliasing, the tilt's
        # rounding), and the rows beyond, whose ink says whether a stroke crosses the line there.
        above = np.clip(start - 4 - shift, 0, height - 1)
        below = np.clip(stop + 3 - shift, 0, height - 1)
        keep = np.maximum(ink[above, columns], ink[below, columns])
        for band_row in range(start - 2, stop + 2):
            y = band_row - shift
            inside = (y >= 0) & (y < height)
            ink[y[inside], columns[inside]] = np.minimum(ink[y[inside], columns[inside]], keep[inside])
    return ink

