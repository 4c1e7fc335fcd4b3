"""Ink strength per pixel: the colour distance from the paper, with the paper's lighting estimated and divided out."""

from __future__ import annotations

import functools
import math

import numpy as np

from mnist_cli.core.errors import InputError
from mnist_cli.inference.preprocessing import histogram, quantiles
from mnist_cli.inference.preprocessing.opencv import cv2

_MIN_CONTRAST = 32.0  # ink must differ from the paper by this much (of 255) to count
# Tuned on MNIST digits redrawn as pictures (tests/pictures.py); +-0.05 changes little.
_FLOOR = 0.06  # share of the ink's contrast taken off as background, at least (noise sets more)
_LIGHT_CELLS = 32  # cells across the longest side for the lighting estimate
_LIGHT_WINDOW = 7  # cells across the window whose median is the paper (about a fifth of the picture)
_CELL_SAMPLES = 6  # pixels sampled across a cell for its median (a median of 36 is as good as of 169)
_MAX_GAIN = 4.0  # contrast is restored up to a paper 4x darker than the best-lit part (beyond that: noise)
_HARD_STEP = 0.2  # share of the light lost within 3 pixels at a hard shadow's edge, at least
_HARD_PEN = 0.075  # the closing's radius, at most, as a share of the picture's shorter side
_HARD_LENGTH = 0.5  # ... along a length of half the picture's shorter side, at least
_FLAT_SHARE = 0.5  # share of pixels exactly the paper's colour that marks a digital drawing's flat paper
_MEAN3 = np.full((1, 3), 1.0 / 3.0, dtype=np.float32)
_LUMA = np.array([[0.299, 0.587, 0.114]], dtype=np.float32)
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
_SQUARE = np.ones((3, 3), np.uint8)
_EDGE_ZONE = np.ones((5, 5), np.uint8)


def no_digit() -> InputError:
    """The error for a picture without a digit in it."""
    return InputError("no digit found (the picture is blank or has too little contrast)", "write the digit darker or larger")


def luminance(pixels: np.ndarray) -> np.ndarray:
    """Grey level [H, W] of float32 [H, W, C] pixels."""
    if pixels.shape[-1] == 1:
        return pixels[..., 0]
    return cv2.transform(np.ascontiguousarray(pixels), _LUMA)


def distance(pixels: np.ndarray, paper: np.ndarray) -> np.ndarray:
    """Colour distance from the paper on the 0..255 scale (a grey difference stays itself)."""
    # Each full-size array costs fresh memory pages: the difference is squared in place.
    diff = np.subtract(pixels, paper, dtype=np.float32)
    if diff.shape[-1] == 1:  # grey: the distance is the difference's size, without the square root's cost
        return np.abs(diff[..., 0], out=diff[..., 0])
    np.multiply(diff, diff, out=diff)
    return cv2.sqrt(cv2.transform(diff, _MEAN3))


def ink(pixels: np.ndarray) -> np.ndarray:
    """Ink strength in 0..1 per pixel, 0 on the paper, 1 for full-strength ink."""
    paper = _border_paper(pixels)
    # A digital drawing (the serve page's canvas, a paint program) has paper of one exact
    # colour: its lighting needs no estimate, which is most of the work below.
    flat = _flat_paper(pixels, paper)
    # The paper's lighting (a lamp to one side, dark corners, a shadow) is estimated first and
    # divided out, so ink in the dark half of a page counts as much as ink in the light half.
    if flat and pixels.shape[-1] == 1:
        return _flat_grey_ink(pixels[..., 0], paper)
    lit = paper if flat else _background(pixels)
    first = distance(pixels, lit)
    if not flat:
        first *= _gain(lit)
    rough = first > max(_MIN_CONTRAST, 6.0 * _median(first))
    if np.count_nonzero(rough) < 4:
        raise no_digit()
    lum = luminance(pixels)
    paper_lum = float(luminance(paper[None, None])[0, 0])
    dark_ink = _dark_ink(lum, first, rough, paper_lum)
    if flat:
        dist, lighter = first, lum - paper_lum
    else:
        grown = cv2.dilate(rough.view(np.uint8), _CROSS, iterations=2).view(bool)
        surface = _paper_surface(pixels, ~grown, paper)
        surface = _sharp_light(lum, surface, rough, dark_ink)
        dist = distance(pixels, surface)
        dist *= _gain(surface)
        lighter = lum - luminance(surface)
    # Specks on the wrong side of the paper (glare on dark ink paper, dust on a black screen) are not ink.
    toward_ink = -lighter if dark_ink else lighter
    dist = np.where(toward_ink >= -0.25 * dist, dist, np.float32(0.0))

    return _scaled(dist, rough)


def _flat_grey_ink(lum: np.ndarray, paper: np.ndarray) -> np.ndarray:
    """`ink` for a grey drawing on paper of one exact grey (the serve page's canvas).

    The same steps as the general path, where the distance from the paper is the grey
    difference's size and the marks on the wrong side of the paper are dropped. An 8-bit
    picture's ink is then a function of its grey level alone: every median and percentile is
    read off its histogram and the ink comes from a 256-entry table, a tenth of the work.
    """
    grey = lum.astype(np.uint8)
    if paper[0] != int(paper[0]) or not np.array_equal(grey, lum):  # 16-bit or float greys
        return _flat_float_ink(lum, paper)
    level = int(paper[0])
    counts = cv2.calcHist([grey], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    sampled = cv2.calcHist([np.ascontiguousarray(grey[::2, ::2])], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    signed = np.arange(256) - level  # how much lighter than the paper each grey level is
    first = np.abs(signed)
    threshold = max(_MIN_CONTRAST, 6.0 * histogram.median(np.bincount(first, weights=sampled, minlength=256)))
    rough = first > threshold
    if counts[rough].sum() < 4:
        raise no_digit()
    dark_mass = float((counts * first)[rough & (signed < 0)].sum())
    light_mass = float((counts * first)[rough & (signed > 0)].sum())
    if _darker_wins(dark_mass, light_mass, float(level)):
        signed = -signed
    dist = np.maximum(signed, 0)
    if counts[~rough].sum() == 0:  # every pixel is a mark
        noise = 0.0
    else:
        quiet = np.bincount(dist, weights=np.where(rough, 0, sampled), minlength=256)
        if quiet.sum() == 0:  # no quiet pixel among the sampled ones: all of them
            quiet = np.bincount(dist, weights=np.where(rough, 0, counts), minlength=256)
        noise = histogram.median(quiet)
    strong = np.where(dist > max(_MIN_CONTRAST, 6.0 * noise), counts, 0)
    if strong.sum() < 4:
        raise no_digit()
    full = histogram.percentile(np.bincount(dist, weights=strong, minlength=256), 90)
    return cv2.LUT(grey, _strength(dist.astype(np.float32), noise, full))


def _flat_float_ink(lum: np.ndarray, paper: np.ndarray) -> np.ndarray:
    """`_flat_grey_ink` for greys that are not whole numbers (16-bit and float pictures)."""
    paper_lum = float(paper[0])
    signed = np.subtract(lum, paper[0], dtype=np.float32)  # how much lighter than the paper
    first = np.abs(signed)
    rough = first > max(_MIN_CONTRAST, 6.0 * _median(first))
    if np.count_nonzero(rough) < 4:
        raise no_digit()
    if _dark_ink(lum, first, rough, paper_lum):
        np.negative(signed, out=signed)
    return _scaled(np.maximum(signed, np.float32(0.0), out=signed), rough)


def _scaled(dist: np.ndarray, rough: np.ndarray) -> np.ndarray:
    """The distances as ink strength in 0..1: the paper's noise floor taken off, the strong ink's 90th percentile at 1 (in place)."""
    noise = _median(dist, where=~rough) if not rough.all() else 0.0
    strong = dist > max(_MIN_CONTRAST, 6.0 * noise)
    if np.count_nonzero(strong) < 4:
        raise no_digit()
    return _strength(np.asarray(dist, dtype=np.float32), noise, quantiles.percentile(dist[strong], 90))


def _strength(dist: np.ndarray, noise: float, full: float) -> np.ndarray:
    """Float32 distances as ink strength in 0..1, in place: a floor above the noise taken off, `full` at 1."""
    floor = min(max(4.0 * noise, _FLOOR * full), 0.5 * full)
    np.subtract(dist, np.float32(floor), out=dist)
    np.multiply(dist, np.float32(1.0 / (full - floor)), out=dist)
    return np.clip(dist, 0.0, 1.0, out=dist)


def _border_paper(pixels: np.ndarray) -> np.ndarray:
    """The paper's colour: the median of a thin strip around the picture."""
    height, width, channels = pixels.shape
    rim = max(1, round(0.02 * min(height, width)))
    strips = (pixels[:rim], pixels[-rim:], pixels[:, :rim], pixels[:, -rim:])
    border = np.concatenate([strip.reshape(-1, channels) for strip in strips])
    return np.array([quantiles.median(border[:, channel]) for channel in range(channels)], dtype=np.float32)


def _median(values: np.ndarray, where: np.ndarray | None = None) -> float:
    """The median of a picture-sized array, from every other row and column (as good, a quarter of the work)."""
    sample = values[::2, ::2]
    if where is not None:
        sample = sample[where[::2, ::2]]
        if sample.size == 0:
            sample = values[where]
    return quantiles.median(sample) if sample.size else 0.0


def _dark_ink(lum: np.ndarray, first: np.ndarray, rough: np.ndarray, paper_lum: float) -> bool:
    """Whether the marks are darker than the paper (by contrast mass, with the paper's own level as a prior).

    Light paper suggests dark ink and a dark board or screen light ink, so a glare spot on a
    grey sheet does not outweigh the pen.
    """
    marks = np.where(rough, first, np.float32(0.0))
    darker = lum < paper_lum
    dark_mass = float(marks[darker].sum())
    return _darker_wins(dark_mass, float(marks.sum()) - dark_mass, paper_lum)


def _darker_wins(dark_mass: float, light_mass: float, paper_lum: float) -> bool:
    """Whether marks of these contrast masses, darker and lighter than the paper, are dark ink on this paper."""
    return dark_mass * math.exp((paper_lum - 128.0) / 32.0) >= light_mass


def _flat_paper(pixels: np.ndarray, paper: np.ndarray) -> bool:
    """Whether most pixels are exactly the paper's colour: true of drawings, never of photos or scans (sensor noise)."""
    same = pixels[..., 0] == paper[0]
    for channel in range(1, pixels.shape[-1]):
        if np.count_nonzero(same) < _FLAT_SHARE * same.size:  # a photo's noise: decided by the first channel
            return False
        same &= pixels[..., channel] == paper[channel]
    return bool(np.count_nonzero(same) >= _FLAT_SHARE * same.size)


def _background(pixels: np.ndarray) -> np.ndarray:
    """A first, ink-blind estimate of the paper at every pixel: medians of small cells, then of 7x7 cells around each.

    Pen strokes fill a minority of any window a fifth of the picture across, so the median
    there is paper, however unevenly lit; `_paper_surface` then refines it without the ink.
    """
    height, width, channels = pixels.shape
    cell = max(2, math.ceil(max(height, width) / _LIGHT_CELLS))
    rows, cols = math.ceil(height / cell), math.ceil(width / cell)
    # Only the sampled pixels are gathered; cells past the edge repeat its last row or column.
    offsets = np.arange(0, cell, max(1, cell // _CELL_SAMPLES))
    across = np.minimum(np.arange(rows)[:, None] * cell + offsets, height - 1).ravel()
    along = np.minimum(np.arange(cols)[:, None] * cell + offsets, width - 1).ravel()
    blocks = pixels.take(across, axis=0).take(along, axis=1).reshape(rows, len(offsets), cols, len(offsets), channels)
    samples = blocks.transpose(0, 2, 4, 1, 3).reshape(rows, cols, channels, -1)
    middle = samples.shape[-1] // 2  # the median's rank (the upper of the two middle ones when even)
    cells = np.ascontiguousarray(np.partition(samples, middle, axis=-1)[..., middle])
    # The window's median on whole grey levels (OpenCV's median filter of this size takes uint8).
    windowed = cv2.medianBlur(np.clip(np.rint(cells), 0, 255).astype(np.uint8), _LIGHT_WINDOW).astype(np.float32)
    windowed = windowed.reshape(rows, cols, channels)
    # The window lags where the light changes fast (a vignette's corners); a smooth surface
    # fitted to the whole page follows it there but not a shadow's sharp edge. Each cell
    # takes whichever is nearer its own median, the surface only where the cell fits it (is
    # paper: cells of ink are outliers of the fit, and keep the window's paper).
    fitted, paper = _smooth_fit(cells)
    nearer = paper & (distance(cells, fitted) < distance(cells, windowed))
    grid = np.where(nearer[..., None], fitted, windowed).astype(np.float32)
    return upsample(grid, cell, height, width)


def _smooth_fit(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A cubic surface in x and y fitted to the cells' colours, and which cells fit it (ink is rejected as outliers)."""
    rows, cols, channels = cells.shape
    terms = _cubic_terms(rows, cols)
    values = cells.reshape(-1, channels).astype(np.float64)
    if len(values) < 4 * terms.shape[1]:  # a tiny picture: too few cells to fit; the window serves alone
        return cells, np.zeros((rows, cols), dtype=bool)
    keep = np.ones(len(values), dtype=bool)
    for _ in range(3):
        # Least squares by the normal equations: ten unknowns, x and y in -1..1, well conditioned.
        chosen = terms[keep]
        coefficients = np.linalg.solve(chosen.T @ chosen, chosen.T @ values[keep])
        fit = terms @ coefficients
        residual = np.sqrt(np.mean((values - fit) ** 2, axis=1))
        keep = residual <= 3.0 * (1.4826 * quantiles.median(residual[keep]) + 1.0)
    return fit.reshape(rows, cols, channels).astype(np.float32), keep.reshape(rows, cols)


@functools.lru_cache(maxsize=16)
def _cubic_terms(rows: int, cols: int) -> np.ndarray:
    """The ten terms of a cubic in x and y (each in -1..1) at every cell of a rows x cols grid, [cells, 10] (read-only)."""
    y, x = np.mgrid[-1 : 1 : rows * 1j, -1 : 1 : cols * 1j]
    x, y = x.ravel(), y.ravel()
    terms = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y, x**3, x * x * y, x * y * y, y**3], axis=1)
    terms.flags.writeable = False
    return terms


def _gain(surface: np.ndarray) -> np.ndarray:
    """How much darker than the best-lit paper each pixel's paper is (1..4): contrast scales with the light."""
    level = luminance(surface)
    reference = quantiles.percentile(level[::4, ::4], 95)  # the surface is smooth: a sparse sample says the same
    gain = np.maximum(level, np.float32(1.0))  # a new array: a grey surface's level is a view of it
    np.divide(np.float32(reference), gain, out=gain)
    return np.clip(gain, 1.0, _MAX_GAIN, out=gain)


def upsample(grid: np.ndarray, cell: int, height: int, width: int) -> np.ndarray:
    """A coarse [rows, cols, C] grid of cell values, bilinearly interpolated to [height, width, C]."""
    channels = grid.shape[-1]
    # The bilinear scaling to whole cells (pixel centres aligned, edges repeated), made only
    # for the picture's part: a resize to whole cells and a crop would cost two full copies.
    offset = 0.5 / cell - 0.5
    scale = np.array([[1.0 / cell, 0.0, offset], [0.0, 1.0 / cell, offset]])
    grid = np.ascontiguousarray(grid, dtype=np.float32)
    fine = cv2.warpAffine(grid, scale, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    return fine.reshape(height, width, channels)


def _paper_surface(pixels: np.ndarray, paper_mask: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """The paper colour at every pixel, from the paper pixels of a coarse grid, smoothly interpolated."""
    height, width, channels = pixels.shape
    cell = max(8, math.ceil(max(height, width) / 16))
    rows, cols = math.ceil(height / cell), math.ceil(width / cell)
    weight = np.zeros((rows * cell, cols * cell), np.float32)
    weight[:height, :width] = paper_mask
    sums = np.zeros((rows * cell, cols * cell, channels), np.float32)
    np.multiply(pixels, weight[:height, :width, None], out=sums[:height, :width])
    # Box means of each cell (INTER_AREA by a whole factor is exactly that); their ratio is the paper's mean.
    weight = cv2.resize(weight, (cols, rows), interpolation=cv2.INTER_AREA)
    sums = cv2.resize(sums, (cols, rows), interpolation=cv2.INTER_AREA)
    weight, sums = weight.reshape(rows, cols), sums.reshape(rows, cols, channels)
    known = weight >= 0.25
    grid = np.where(known[..., None], sums / np.maximum(weight, 1e-6)[..., None], 0.0).astype(np.float32)
    if not known.any():
        grid[:] = fallback
        known[:] = True
    # Cells covered by ink take the mean of their known neighbours, ring by ring.
    while not known.all():
        total = cv2.boxFilter(grid * known[..., None], -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
        seen = cv2.boxFilter(known.astype(np.float32), -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
        total = total.reshape(rows, cols, channels)
        fill = ~known & (seen > 0)
        grid[fill] = total[fill] / seen[fill][:, None]
        known = known | fill
    return upsample(grid, cell, height, width)


def _sharp_light(lum: np.ndarray, surface: np.ndarray, rough: np.ndarray, dark_ink: bool) -> np.ndarray:
    """The paper surface with the light's hard edges put back (a shadow cast in direct sun), from a morphological closing.

    The cell estimates are smooth, so across a hard shadow's edge they are too dark on the lit
    side and too light on the shaded one, and the edge would read as a stroke. A closing (an
    opening for light ink) with a round pen wider than the strokes fills the strokes with the
    paper around them but keeps a step in the paper's light as sharp as it is. It is used
    only where the light has such a step: it also fills the paper's dark corners a little.
    """
    height, width = lum.shape
    # Half the widest stroke: the largest distance from a mark pixel to the paper.
    half = float(cv2.distanceTransform(rough.view(np.uint8), cv2.DIST_L2, 3).max())
    # A digit's strokes are an eighth of its height at most, so the pen stays narrower than
    # a shadow band however much of the band the first estimate took for marks.
    radius = math.ceil(min(1.5 * half, _HARD_PEN * min(height, width)))
    # Most photographs have no step: a look at half the size (an eighth of the work) rules it
    # out; where it finds one (or mistakes a corner for one) the full size decides.
    small = cv2.resize(lum, (max(1, width // 2), max(1, height // 2)), interpolation=cv2.INTER_AREA)
    if cv2.countNonZero(_steps(_closed(small, math.ceil(radius / 2), dark_ink))) < _HARD_LENGTH * min(height, width) / 2:
        return surface
    filled = _closed(lum, radius, dark_ink)
    steps = _steps(filled)
    if cv2.countNonZero(steps) < _HARD_LENGTH * min(height, width):
        return surface
    # On the edge itself (blurred by the lens and JPEG over a pixel or two) the paper is taken
    # as dark as the shaded side, so only marks darker than that count as ink there.
    near = cv2.dilate(steps, _EDGE_ZONE).view(bool)
    shaded = cv2.erode(filled, _EDGE_ZONE) if dark_ink else cv2.dilate(filled, _EDGE_ZONE)
    filled = np.where(near, shaded, filled)
    ratio = filled / np.maximum(luminance(surface), 1.0)
    return np.multiply(surface, ratio[..., None], out=surface)


def _steps(light: np.ndarray) -> np.ndarray:
    """Where the light changes by a fifth or more within 3 pixels (a soft shadow's edge takes ten times that), uint8."""
    jump = cv2.morphologyEx(light, cv2.MORPH_GRADIENT, _SQUARE) / np.maximum(light, 1.0)
    return (jump >= _HARD_STEP).view(np.uint8)


def _closed(lum: np.ndarray, radius: int, dark_ink: bool) -> np.ndarray:
    """The paper's brightness with the strokes filled in."""
    quiet = cv2.medianBlur(lum, 3)  # the closing's maximum would otherwise pick the sensor noise's peaks
    return _round_closing(quiet, radius, dark_ink)


def _round_closing(values: np.ndarray, radius: int, dark_ink: bool) -> np.ndarray:
    """A closing (an opening for light ink) by an octagon of the radius.

    A square pen would not fit inside a shadow band running diagonally; an octagon fits any
    band as wide as it. It is a square grown by a diamond (crosses in turn), their radii in
    the regular octagon's proportion (the square's is 1/sqrt(2) of the diamond's).
    """
    diamond = round(radius / (1 + 0.5**0.5))
    square = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * (radius - diamond) + 1,) * 2)
    grow, shrink = (cv2.dilate, cv2.erode) if dark_ink else (cv2.erode, cv2.dilate)
    out = values
    for operation in (grow, shrink):
        out = operation(out, square, borderType=cv2.BORDER_REPLICATE)
        if diamond:
            out = operation(out, _CROSS, iterations=diamond, borderType=cv2.BORDER_REPLICATE)
    return out
