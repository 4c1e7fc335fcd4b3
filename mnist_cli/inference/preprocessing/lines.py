"""Erasing printed lines that cross the whole picture (ruled or squared paper, a margin), keeping the strokes across them."""

from __future__ import annotations

import numpy as np

from mnist_cli.inference.preprocessing.opencv import cv2

_LINE_INK = 0.1  # ink strength that counts towards a printed line (they are often faint)
_LINE_SPAN = 0.6  # share of the picture a printed line crosses, at least
_LINE_EDGE = 0.15  # ... reaching into both outer 15% strips
_LINE_INSIDE = 0.25  # a tilted line leaving through the top or bottom edge: share of the width it still crosses, at least
_LINE_WIDTH = 0.02  # thickest line removed, as a share of the picture (at least 3 pixels)
_LINE_TILTS = np.tan(np.radians(np.arange(-2.0, 2.01, 0.25)))
_TILT_SAMPLES = 4096  # ink pixels the tilt is measured on, at most
_ACROSS_ROWS = np.ones((3, 1), np.uint8)


def remove_lines(ink: np.ndarray) -> np.ndarray:
    """Erase thin straight lines that cross the whole picture (ruled or squared paper, a margin), keeping strokes across them."""
    marked = _marked(ink)
    if _reaches_both_edges(marked):
        erased = _remove_rows(ink, marked)
        if erased is not ink:
            ink, marked = erased, _marked(erased)
    # Lines running down are rows of the transposed picture; the copy it needs is made only
    # when ink reaches both the top and the bottom strip (a digit alone never does).
    if not _reaches_both_edges(marked.T):
        return ink
    return np.ascontiguousarray(_remove_rows(np.ascontiguousarray(ink.T), np.ascontiguousarray(marked.T)).T)


def _marked(ink: np.ndarray) -> np.ndarray:
    """uint8 1 where the ink is strong enough to belong to a printed line."""
    return (ink >= _LINE_INK).view(np.uint8)


def _edge(width: int) -> int:
    return max(1, round(_LINE_EDGE * width))


def _reaches_both_edges(marked: np.ndarray) -> bool:
    """Whether the marks could hold a line across (at least half an edge strip's width of them in each outer strip)."""
    width = marked.shape[1]
    if width < 32:
        return False
    edge = _edge(width)
    left, right = marked[:, :edge], marked[:, width - edge :]
    # A line leaves at least half an edge strip's width of ink in each strip; a digit in the
    # middle of the picture leaves none, and the search over tilts is skipped.
    if min(np.count_nonzero(left), np.count_nonzero(right)) < 0.5 * edge:
        return False
    # A line found must cover half of an end strip's columns where it runs inside it, and run
    # inside one for half its width: a quarter of a strip's columns. A digit whose strokes
    # only reach into the strips (a tall one does, top and bottom) covers fewer.
    return max(_columns(left), _columns(right)) >= 0.25 * edge


def _columns(strip: np.ndarray) -> int:
    """How many columns of the strip hold a mark."""
    return int(np.count_nonzero(strip.any(axis=0)))


def _remove_rows(ink: np.ndarray, marked: np.ndarray) -> np.ndarray:
    """`remove_lines` for lines running across (tilted by up to 2 degrees: a photo is never square to the sheet)."""
    height, width = ink.shape
    ys, xs = np.nonzero(marked)
    if len(ys) < width * _LINE_SPAN:
        return ink
    shift = _tilt(ys, xs, width)
    rows = ys + shift[xs]
    bands = _bands(rows, xs, shift, height, _edge(width))
    thickest = max(3, round(_LINE_WIDTH * height)) + 2  # the bands found are a row wider on each side
    bands = [(start, stop) for start, stop in bands if stop - start <= thickest]
    # A broad band (a shadow's edge, a dark table) is not a printed line, and is kept.
    return _erase(ink, shift, bands) if bands else ink


def _tilt(ys: np.ndarray, xs: np.ndarray, width: int) -> np.ndarray:
    """The sheared row offset of each column (y + shift[x]) that puts the lines' pixels into the fewest rows."""
    # A sample of the pixels finds the tilt as well as all of them (a squared page has tens of thousands).
    step = max(1, len(ys) // _TILT_SAMPLES)
    ys, xs = ys[::step], xs[::step]
    shifts = np.round(_LINE_TILTS[:, None] * np.arange(width)).astype(np.int64)
    shifts -= shifts.min(axis=1, keepdims=True)
    # Every tilt's row profile in one count: tilt t's rows are numbered from t * size.
    size = int(ys.max()) + int(shifts.max()) + 1
    rows = ys[None, :] + shifts[:, xs] + (np.arange(len(shifts)) * size)[:, None]
    cover = np.bincount(rows.ravel(), minlength=len(shifts) * size).reshape(len(shifts), size).astype(np.float64)
    # At the lines' own tilt their pixels pile up in the fewest rows: the sharpest profile.
    return shifts[int(np.argmax((cover * cover).sum(axis=1)))]


def _bands(rows: np.ndarray, xs: np.ndarray, shift: np.ndarray, height: int, edge: int) -> list[tuple[int, int]]:
    """The sheared rows [start, stop) of lines that cross the picture, each found a row wider on both sides.

    A line is counted by the columns it covers within a row either side, not by the pixels
    in one row: a line drawn without anti-aliasing climbs in whole-pixel steps and is spread
    over two rows at every tilt tried, neither of which alone holds most of it. Shares are
    of the columns where the sheared row lies inside the picture, so a tilted line that
    leaves through the top or bottom edge still counts.
    """
    width = len(shift)
    size = height + int(shift.max()) + 1
    sheared = np.zeros((size, width), np.uint8)
    sheared[rows, xs] = 1
    near = cv2.dilate(sheared, _ACROSS_ROWS)
    found = []
    # Both ends of the sheet must be crossed: a long stroke of a big digit rarely reaches both.
    for part in (slice(None), slice(0, edge), slice(width - edge, width)):
        cover = cv2.reduce(near[:, part], 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
        inside = _inside(shift[part], height, size)
        found.append((cover, inside))
    (cover, inside), (left, left_in), (right, right_in) = found
    line = (inside >= _LINE_INSIDE * width) & (cover >= _LINE_SPAN * inside)
    # Each end strip must be crossed where the row is inside it; a row that leaves the picture
    # before reaching a strip must cross the other.
    crosses_left, crosses_right = left >= 0.5 * left_in, right >= 0.5 * right_in
    has_left, has_right = left_in >= 0.5 * edge, right_in >= 0.5 * edge
    line &= (has_left | has_right) & (crosses_left | ~has_left) & (crosses_right | ~has_right)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], line.astype(np.int8), [0]])))
    return list(zip(changes[::2].tolist(), changes[1::2].tolist()))


def _inside(shift: np.ndarray, height: int, size: int) -> np.ndarray:
    """For each sheared row, how many of these columns hold it inside the picture (0 <= row - shift < height)."""
    enters = np.bincount(shift, minlength=size + height + 1)
    leaves = np.bincount(shift + height, minlength=size + height + 1)
    return np.cumsum(enters - leaves)[:size]


def _erase(ink: np.ndarray, shift: np.ndarray, bands: list[tuple[int, int]]) -> np.ndarray:
    """Each band's ink lowered to the ink just beyond it, so a stroke crossing a line stays whole there."""
    ink = ink.copy()
    starts, stops = (np.array(ends, dtype=np.int64) for ends in zip(*bands))
    # A band reads the rows 3 before and 2 after it and writes itself and a row either side:
    # bands 4 rows apart (a ruled page's lines are 10 or more) never read what another wrote,
    # so all of them are erased at once; closer ones in turn, each seeing the last one's work.
    if np.all(starts[1:] - stops[:-1] >= 4):
        return _erase_rows(ink, shift, starts, stops)
    for index in range(len(bands)):
        ink = _erase_rows(ink, shift, starts[index : index + 1], stops[index : index + 1])
    return ink


def _erase_rows(ink: np.ndarray, shift: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """`_erase` of bands that do not read each other's rows, in place."""
    height, width = ink.shape
    # In sheared rows: each band plus a pixel either side (anti-aliasing, the tilt's rounding),
    # and the rows beyond, whose ink says whether a stroke crosses the line there.
    # Beyond the picture's edge there is no stroke to keep.
    keep = np.maximum(_row(ink, starts[:, None] - 3 - shift), _row(ink, stops[:, None] + 2 - shift))
    heights = stops - starts + 2
    band = np.repeat(np.arange(len(starts)), heights)
    rows = np.repeat(starts - 1 - (np.cumsum(heights) - heights), heights) + np.arange(int(heights.sum()))
    y = rows[:, None] - shift[None, :]
    inside = (y >= 0) & (y < height)
    x = np.broadcast_to(np.arange(width), y.shape)[inside]
    y = y[inside]
    ink[y, x] = np.minimum(ink[y, x], keep[band][inside])
    return ink


def _row(ink: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ink[y[..., x], x] for each column x (of each band's row), 0 where y is outside the picture."""
    height, width = ink.shape
    inside = (y >= 0) & (y < height)
    return np.where(inside, ink[np.clip(y, 0, height - 1), np.arange(width)], np.float32(0.0))
