"""Turn a picture a person made into the kind of 28x28 digit the network was trained on.

MNIST digits were made by taking a pen digit on paper, fitting its bounding box into
a 20x20 box (aspect ratio kept, anti-aliased) and placing that box in a 28x28 field so
that the centre of mass of the ink sits at the centre. `to_mnist` does the same to a
photo, scan, drawing-app export or typed digit:

1. composite transparency onto white (onto black when the strokes themselves are light);
2. measure ink as the colour distance from the paper, so blue, red or even yellow ink
   counts as much as black, and light-on-dark pictures need no special case;
3. estimate the paper's lighting before looking for ink (medians of small cells, the median
   of the cells around each, or a cubic surface fitted to the page where that fits better)
   and divide it out, so a page lit from one side, dark corners or a shadow do not hide
   the digit; then refine the paper as a smooth surface without the ink and remove it,
   with the noise floor measured on the paper (a drawing whose paper is one exact colour,
   as a canvas or paint program makes it, needs neither estimate);
4. erase thin straight lines that cross the whole picture (ruled or squared paper, a
   margin, tilted by up to 2 degrees), keeping the ink of strokes that cross them;
5. keep the digit (connected ink, ignoring specks), crop to its bounding box;
6. thicken very thin strokes (a 1-pixel brush on a big canvas) to MNIST's stroke width;
7. scale into a 20x20 box (Lanczos) and centre by centre of mass in 28x28.

Only the first frame of an animated GIF, PNG or WebP is used. An image that already is
an MNIST digit (28x28, grey, light ink on a dark background) is returned unchanged.
`iter_image_paths` expands a directory into its image files (by suffix, sorted by name,
hidden files skipped, not recursive); paths named explicitly are kept as given.

Known limits: a page edge or a pen in the frame count as ink, and so do printed lines
that do not cross the whole picture; several digits in one picture come out as one; a
glare spot larger than the digit on mid-grey paper can flip the polarity.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from mnist_cli.core.errors import InputError
from mnist_cli.core.tf_setup import native_stderr_silenced

# Pillow's own guard (Image.MAX_IMAGE_PIXELS, about 89 megapixels) stays on; this cap
# is lower because a digit never needs more and 40 megapixels of RGB is ~120 MB decoded.
MAX_PIXELS = 40_000_000
# Larger inputs could be a pipe from /dev/zero; no photo of a digit comes close.
MAX_FILE_BYTES = 256 * 1024 * 1024

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# JPEG includes MPO, what many phone cameras write inside a .jpg.
_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
_FORMAT_NAMES = "PNG, JPEG, BMP, GIF, TIFF or WebP"

SIZE = 28
BOX = 20
_CENTRE = 14.0  # MNIST's mean centre of mass, in pixel-index coordinates (measured: 13.99, 14.01)
_WORK_SIZE = 1024  # longest side the analysis runs at; larger pictures are box-reduced first
_COARSE_SIZE = 128  # longest side of the grid on which specks are told from the digit
_MIN_CONTRAST = 32.0  # ink must differ from the paper by this much (of 255) to count
_STROKE = 2.5  # MNIST's median stroke width in the 20x20 box (measured as 2 * area / boundary)
# Tuned on MNIST digits redrawn as pictures (tests/pictures.py); +-0.05 changes little.
_FLOOR = 0.06  # share of the ink's contrast taken off as background, at least (noise sets more)
_BBOX_LEVEL = 0.25  # ink strength that counts for the bounding box, so faint halos do not widen it
_RESAMPLE = Image.Resampling.LANCZOS
_LIGHT_CELLS = 32  # cells across the longest side for the lighting estimate
_LIGHT_WINDOW = 7  # cells across the window whose median is the paper (about a fifth of the picture)
_MAX_GAIN = 4.0  # contrast is restored up to a paper 4x darker than the best-lit part (beyond that: noise)
_LINE_INK = 0.1  # ink strength that counts towards a printed line (they are often faint)
_LINE_SPAN = 0.6  # share of the picture a printed line crosses, at least
_LINE_EDGE = 0.15  # ... reaching into both outer 15% strips
_LINE_WIDTH = 0.02  # thickest line removed, as a share of the picture (at least 3 pixels)
_LINE_TILTS = np.tan(np.radians(np.arange(-2.0, 2.01, 0.25)))
_FLAT_SHARE = 0.5  # share of pixels exactly the paper's colour that marks a digital drawing's flat paper
_THIN = 1.2  # below MNIST's 1st percentile (1.4 measured the same way): thicken before scaling down


def load_image(source: Path | bytes, *, name: str | None = None) -> Image.Image:
    """Open an image file or raw bytes (standard input), first frame, upright per its EXIF tag."""
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "standard input")
    data = _read_source(source, label)
    if not data:
        raise InputError(f"{label} is empty (0 bytes)", "give a PNG, JPEG, BMP, GIF, TIFF or WebP picture of a digit")
    with warnings.catch_warnings():
        # Library code must not print: Pillow's notes on odd EXIF blocks are dropped, and its
        # bomb warning (between its limit and twice it) becomes an error like the bomb itself.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            # libtiff writes its complaints ("ZIPDecode: Not enough data") straight to file
            # descriptor 2; the damage is reported below as one line instead.
            with native_stderr_silenced():
                image = Image.open(io.BytesIO(data), formats=_FORMATS)
                _check_pixels(image.size, label)
                image.load()
        except InputError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _bomb_error(label, None) from None
        except UnidentifiedImageError:
            raise InputError(
                f"{label} is not a {_FORMAT_NAMES} image", "convert it to PNG or JPEG (HEIC photos: export as JPEG)"
            ) from None
        except Exception as exc:  # noqa: BLE001 - decoders raise many types for damaged files
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"{label} is corrupt or truncated ({detail})", "save or export the picture again") from None
        try:
            ImageOps.exif_transpose(image, in_place=True)
        except Exception:  # noqa: BLE001 - a damaged EXIF block should not hide a readable picture
            pass
    return image


def preprocess(source: Path | bytes, *, name: str | None = None) -> np.ndarray:
    """Load a picture and turn it into an MNIST-style uint8 [28, 28] digit."""
    image = load_image(source, name=name)
    try:
        return to_mnist(image)
    except InputError as exc:
        label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "standard input")
        raise InputError(f"{label}: {exc.message}", exc.hint) from None


def to_mnist(image: Image.Image) -> np.ndarray:
    """White-on-black uint8 [28, 28] digit, size-normalised and centred the way MNIST was made."""
    as_is = _mnist_style(image)
    if as_is is not None:
        return as_is
    pixels = _pixels(image)
    ink = _ink(pixels)
    ink = _remove_lines(ink)
    ink = _digit_crop(ink)
    ink = _thicken(ink)
    return _centre(_fit_box(ink))


def iter_image_paths(paths: list[Path]) -> list[Path]:
    """Expand directories into their image files (sorted by name, not recursive), keeping argument order."""
    result: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            # Files are kept whatever their suffix; load_image says if one is not an image.
            result.append(path)
            continue
        try:
            entries = sorted(
                (p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")),
                key=lambda p: p.name,
            )
        except OSError as exc:
            raise InputError(f"{path} cannot be listed: {exc.strerror or exc}", "check the directory's permissions") from None
        entries = [p for p in entries if p.is_file()]
        if not entries:
            raise InputError(
                f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})", "point at the folder that holds the pictures"
            )
        result.extend(entries)
    return result


# --- loading ---------------------------------------------------------------------------


def _read_source(source: Path | bytes, label: str) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        from mnist_cli.core.safeio import UnsafeFile, open_regular

        path = Path(source)
        try:
            if path.is_dir():
                raise IsADirectoryError
            # A FIFO or device is refused from its type, never waited on or read without end.
            with open_regular(path) as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            raise InputError(f"{label} does not exist", "check the path") from None
        except IsADirectoryError:
            raise InputError(f"{label} is a directory, not an image", "give the image files inside it") from None
        except UnsafeFile as exc:
            raise InputError(f"{label} {exc}", "give a picture file; pipe other sources in with -") from None
        except PermissionError:
            raise InputError(f"{label} cannot be read: permission denied", "check the file's permissions") from None
        except OSError as exc:
            raise InputError(f"{label} cannot be read: {exc.strerror or exc}", "check the file") from None
    if len(data) > MAX_FILE_BYTES:
        raise InputError(
            f"{label} is larger than {MAX_FILE_BYTES // 2**20} MiB", "a picture of a digit needs far less; scale it down"
        )
    return data


def _bomb_error(label: str, size: tuple[int, int] | None) -> InputError:
    claimed = f" ({size[0]}x{size[1]} pixels)" if size else ""
    return InputError(
        f"{label} has more than {MAX_PIXELS // 1_000_000} megapixels{claimed}, refusing it as a possible decompression bomb",
        "scale the picture down; a digit needs a few hundred pixels across",
    )


def _check_pixels(size: tuple[int, int], label: str) -> None:
    if size[0] * size[1] > MAX_PIXELS:
        raise _bomb_error(label, size)


# --- to_mnist steps ---------------------------------------------------------------------


def _mnist_style(image: Image.Image) -> np.ndarray | None:
    """The pixels unchanged if the image already is a 28x28 light-on-dark grey digit."""
    if image.size != (SIZE, SIZE) or image.mode not in ("L", "P", "RGB", "RGBA", "LA"):
        return None
    if image.mode in ("RGBA", "LA") and image.getchannel("A").getextrema()[0] < 255:
        return None
    rgb = np.asarray(image.convert("RGB"))
    if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
        return None
    gray = np.ascontiguousarray(rgb[..., 0])
    ring = np.concatenate([gray[:2].ravel(), gray[-2:].ravel(), gray[:, :2].ravel(), gray[:, -2:].ravel()])
    if np.median(ring) <= 20 and ring.mean() <= 30 and gray.max() >= 128:
        return gray
    return None


def _pixels(image: Image.Image) -> np.ndarray:
    """Float32 [H, W, C] in 0..255 (C is 1 or 3), transparency composited, at most _WORK_SIZE across."""
    mode = image.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        # 16-bit and float greys: Pillow's conversion to L would clip, so scale here.
        image = image.convert("F")
        image = _reduce(image)
        values = np.asarray(image, dtype=np.float32)
        top = float(values.max()) if values.size else 0.0
        if mode == "F" and top <= 1.0:
            values = values * 255.0
        elif top > 255.0:
            values = values / 257.0
        return np.clip(values, 0, 255)[..., None]
    if mode in ("RGBA", "LA", "La", "PA", "RGBa") or (mode == "P" and "transparency" in image.info):
        image = _composite(image.convert("RGBA"))
    elif mode in ("1", "L"):
        image = image.convert("L")
    else:
        image = image.convert("RGB")
    image = _reduce(image)
    if mode in ("1", "P") and min(image.size) >= 100:
        # Dithered 1-bit and web-palette pictures fake grey with dot patterns; average them back.
        image = image.filter(ImageFilter.GaussianBlur(1.5))
    values = np.asarray(image, dtype=np.float32)
    return values[..., None] if values.ndim == 2 else values


def _composite(rgba: Image.Image) -> Image.Image:
    """Flatten onto white, or onto black when the visible strokes are light (a dark-mode drawing)."""
    alpha = np.asarray(rgba.getchannel("A"))
    if alpha.min() == 255:
        return rgba.convert("RGB")
    opaque = alpha >= 128
    background = (255, 255, 255, 255)
    if 0 < opaque.mean() < 0.5:
        # A minority of opaque pixels are strokes on a transparent sheet, not paper with holes.
        lum = np.asarray(rgba.convert("L"), dtype=np.float32)
        if lum[opaque].mean() > 128:
            background = (0, 0, 0, 255)
    return Image.alpha_composite(Image.new("RGBA", rgba.size, background), rgba).convert("RGB")


def _reduce(image: Image.Image) -> Image.Image:
    factor = math.ceil(max(image.size) / _WORK_SIZE)
    return image.reduce(factor) if factor > 1 else image


def _luminance(pixels: np.ndarray) -> np.ndarray:
    if pixels.shape[-1] == 1:
        return pixels[..., 0]
    return pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _distance(pixels: np.ndarray, paper: np.ndarray) -> np.ndarray:
    """Colour distance from the paper on the 0..255 scale (a grey difference stays itself)."""
    diff = pixels - paper
    if diff.shape[-1] == 1:  # grey: the distance is the difference's size, without the square root's cost
        return np.abs(diff[..., 0])
    return np.sqrt(np.mean(diff * diff, axis=-1))


def _no_digit() -> InputError:
    return InputError("no digit found (the picture is blank or has too little contrast)", "write the digit darker or larger")


def _ink(pixels: np.ndarray) -> np.ndarray:
    """Ink strength in 0..1 per pixel, 0 on the paper, 1 for full-strength ink."""
    height, width, _ = pixels.shape
    rim = max(1, round(0.02 * min(height, width)))
    border = np.concatenate(
        [
            pixels[:rim].reshape(-1, pixels.shape[-1]),
            pixels[-rim:].reshape(-1, pixels.shape[-1]),
            pixels[:, :rim].reshape(-1, pixels.shape[-1]),
            pixels[:, -rim:].reshape(-1, pixels.shape[-1]),
        ]
    )
    paper = np.median(border, axis=0).astype(np.float32)
    # A digital drawing (the serve page's canvas, a paint program) has paper of one exact
    # colour: its lighting needs no estimate, which is most of the work below.
    flat = _flat_paper(pixels, paper)
    # The paper's lighting (a lamp to one side, dark corners, a shadow) is estimated first and
    # divided out, so ink in the dark half of a page counts as much as ink in the light half.
    lit = np.broadcast_to(paper, pixels.shape) if flat else _background(pixels)
    first = _distance(pixels, lit) if flat else _distance(pixels, lit) * _gain(lit)
    rough = first > max(_MIN_CONTRAST, 6.0 * float(np.median(first)))
    if rough.sum() < 4:
        raise _no_digit()
    # Polarity: which side of the paper the marks lie on (by contrast mass), with the paper's
    # own level as a prior (light paper: dark ink; a dark board or screen: light ink), so a
    # glare spot on a grey sheet does not outweigh the pen.
    paper_lum = float(_luminance(paper[None, :])[0])
    lum = _luminance(pixels)
    darker = lum < paper_lum
    dark_mass = float(first[rough & darker].sum())
    light_mass = float(first[rough & ~darker].sum())
    dark_ink = dark_mass * math.exp((paper_lum - 128.0) / 32.0) >= light_mass

    if flat:
        surface, dist = lit, first
    else:
        surface = _paper_surface(pixels, ~_dilate(rough, 2), paper)
        dist = _distance(pixels, surface) * _gain(surface)
    lighter = lum - _luminance(surface)
    # Specks on the wrong side of the paper (glare on dark ink paper, dust on a black screen) are not ink.
    toward_ink = -lighter if dark_ink else lighter
    dist = np.where(toward_ink >= -0.25 * dist, dist, 0.0)

    noise = float(np.median(dist[~rough])) if (~rough).any() else 0.0
    strong = dist > max(_MIN_CONTRAST, 6.0 * noise)
    if strong.sum() < 4:
        raise _no_digit()
    full = float(np.percentile(dist[strong], 90))
    floor = min(max(4.0 * noise, _FLOOR * full), 0.5 * full)
    return np.clip((dist - floor) / (full - floor), 0.0, 1.0).astype(np.float32)


def _flat_paper(pixels: np.ndarray, paper: np.ndarray) -> bool:
    """Whether most pixels are exactly the paper's colour: true of drawings, never of photos or scans (sensor noise)."""
    return bool(np.all(pixels == paper, axis=-1).mean() >= _FLAT_SHARE)


def _background(pixels: np.ndarray) -> np.ndarray:
    """A first, ink-blind estimate of the paper at every pixel: medians of small cells, then of 7x7 cells around each.

    Pen strokes fill a minority of any window a fifth of the picture across, so the median
    there is paper, however unevenly lit; `_paper_surface` then refines it without the ink.
    """
    height, width, channels = pixels.shape
    cell = max(2, math.ceil(max(height, width) / _LIGHT_CELLS))
    rows, cols = math.ceil(height / cell), math.ceil(width / cell)
    padded = np.pad(pixels, ((0, rows * cell - height), (0, cols * cell - width), (0, 0)), mode="edge")
    cells = np.median(padded.reshape(rows, cell, cols, cell, channels).transpose(0, 2, 4, 1, 3).reshape(rows, cols, channels, -1), axis=-1)
    reach = _LIGHT_WINDOW // 2
    around = np.pad(cells, ((reach, reach), (reach, reach), (0, 0)), mode="edge")
    windows = [around[dy : dy + rows, dx : dx + cols] for dy in range(_LIGHT_WINDOW) for dx in range(_LIGHT_WINDOW)]
    windowed = np.median(np.stack(windows), axis=0)
    # The window lags where the light changes fast (a vignette's corners); a smooth surface
    # fitted to the whole page follows it there but not a shadow's sharp edge. Each cell
    # takes whichever is nearer its own median, the surface only where the cell fits it (is
    # paper: cells of ink are outliers of the fit, and keep the window's paper).
    fitted, paper = _smooth_fit(cells)
    nearer = paper & (_distance(cells, fitted) < _distance(cells, windowed))
    grid = np.where(nearer[..., None], fitted, windowed).astype(np.float32)
    return _upsample(grid, cell, height, width)


def _smooth_fit(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A cubic surface in x and y fitted to the cells' colours, and which cells fit it (ink is rejected as outliers)."""
    rows, cols, channels = cells.shape
    y, x = np.mgrid[-1 : 1 : rows * 1j, -1 : 1 : cols * 1j]
    x, y = x.ravel(), y.ravel()
    terms = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y, x**3, x * x * y, x * y * y, y**3], axis=1)
    values = cells.reshape(-1, channels).astype(np.float64)
    if len(values) < 4 * terms.shape[1]:  # a tiny picture: too few cells to fit; the window serves alone
        return cells, np.zeros((rows, cols), dtype=bool)
    keep = np.ones(len(values), dtype=bool)
    for _ in range(3):
        coefficients, *_ = np.linalg.lstsq(terms[keep], values[keep], rcond=None)
        fit = terms @ coefficients
        residual = np.sqrt(np.mean((values - fit) ** 2, axis=1))
        keep = residual <= 3.0 * (1.4826 * float(np.median(residual[keep])) + 1.0)
    return fit.reshape(rows, cols, channels), keep.reshape(rows, cols)


def _gain(surface: np.ndarray) -> np.ndarray:
    """How much darker than the best-lit paper each pixel's paper is (1..4): contrast scales with the light."""
    level = _luminance(surface)
    reference = float(np.percentile(level, 95))
    return np.clip(reference / np.maximum(level, 1.0), 1.0, _MAX_GAIN).astype(np.float32)


def _upsample(grid: np.ndarray, cell: int, height: int, width: int) -> np.ndarray:
    """A coarse [rows, cols, C] grid of cell values, bilinearly interpolated to [height, width, C]."""
    rows, cols, channels = grid.shape
    surface = np.empty((height, width, channels), dtype=np.float32)
    for channel in range(channels):
        coarse = Image.fromarray(np.ascontiguousarray(grid[..., channel], dtype=np.float32))
        fine = coarse.resize((cols * cell, rows * cell), Image.Resampling.BILINEAR)
        surface[..., channel] = np.asarray(fine)[:height, :width]
    return surface


def _paper_surface(pixels: np.ndarray, paper_mask: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """The paper colour at every pixel, from the paper pixels of a coarse grid, smoothly interpolated."""
    height, width, channels = pixels.shape
    cell = max(8, math.ceil(max(height, width) / 16))
    rows, cols = math.ceil(height / cell), math.ceil(width / cell)
    pad = ((0, rows * cell - height), (0, cols * cell - width))
    weight = np.pad(paper_mask.astype(np.float32), pad)
    sums = np.pad(pixels * paper_mask[..., None], pad + ((0, 0),))
    weight = weight.reshape(rows, cell, cols, cell).sum(axis=(1, 3))
    sums = sums.reshape(rows, cell, cols, cell, channels).sum(axis=(1, 3))
    known = weight >= 0.25 * cell * cell
    grid = np.where(known[..., None], sums / np.maximum(weight, 1.0)[..., None], 0.0).astype(np.float32)
    if not known.any():
        grid[:] = fallback
        known[:] = True
    # Cells covered by ink take the mean of their known neighbours, ring by ring.
    while not known.all():
        padded = np.pad(grid * known[..., None], ((1, 1), (1, 1), (0, 0)))
        count = np.pad(known.astype(np.float32), 1)
        total = sum(padded[1 + dy : 1 + dy + rows, 1 + dx : 1 + dx + cols] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
        seen = sum(count[1 + dy : 1 + dy + rows, 1 + dx : 1 + dx + cols] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
        fill = ~known & (seen > 0)
        grid[fill] = total[fill] / seen[fill][:, None]
        known = known | fill
    return _upsample(grid, cell, height, width)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(radius):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def _max_filter(values: np.ndarray, *, cross: bool) -> np.ndarray:
    """One step of grey dilation with a 3x3 square, or the 3x3 cross (alternating gives round pens)."""
    padded = np.pad(values, 1)
    height, width = values.shape
    out = values.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if (dy or dx) and not (cross and dy and dx):
                np.maximum(out, padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width], out=out)
    return out


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected component labels (0 = background) and their count, by union-find over the runs of each row."""
    height, width = mask.shape
    edges = np.diff(np.pad(mask.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    rows, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)  # exclusive; same row-major order as the starts
    parent = list(range(len(starts)))

    def find(run: int) -> int:
        while parent[run] != run:
            parent[run] = parent[parent[run]]
            run = parent[run]
        return run

    first = np.searchsorted(rows, np.arange(height + 1)).tolist()
    starts_list, ends_list = starts.tolist(), ends.tolist()
    for row in range(1, height):
        above, here = first[row - 1], first[row]
        stop_above, stop_here = here, first[row + 1]
        while above < stop_above and here < stop_here:
            # Runs touch, diagonals included, when each starts no later than the other ends.
            if starts_list[here] <= ends_list[above] and starts_list[above] <= ends_list[here]:
                a, b = find(above), find(here)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            if ends_list[above] < ends_list[here]:
                above += 1
            else:
                here += 1
    roots = [find(run) for run in range(len(parent))]
    numbers: dict[int, int] = {}
    run_labels = np.array([numbers.setdefault(root, len(numbers) + 1) for root in roots], dtype=np.int32)
    labels = np.zeros((height, width), dtype=np.int32)
    for row, start, end, label in zip(rows.tolist(), starts_list, ends_list, run_labels.tolist()):
        labels[row, start:end] = label
    return labels, len(numbers)


def _remove_lines(ink: np.ndarray) -> np.ndarray:
    """Erase thin straight lines that cross the whole picture (ruled or squared paper, a margin), keeping strokes across them."""
    ink = _remove_rows(ink)
    return np.ascontiguousarray(_remove_rows(np.ascontiguousarray(ink.T)).T)


def _remove_rows(ink: np.ndarray) -> np.ndarray:
    """`_remove_lines` for lines running across (tilted by up to 2 degrees: a photo is never square to the sheet)."""
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


def _digit_crop(ink: np.ndarray) -> np.ndarray:
    """The digit's bounding box, with specks and far-away marks removed."""
    height, width = ink.shape
    factor = max(1, math.ceil(max(height, width) / _COARSE_SIZE))
    rows, cols = math.ceil(height / factor), math.ceil(width / factor)
    padded = np.pad(ink, ((0, rows * factor - height), (0, cols * factor - width)))
    blocks = padded.reshape(rows, factor, cols, factor)
    coarse = blocks.max(axis=(1, 3)) >= 0.3
    mass = blocks.sum(axis=(1, 3))
    labels, count = _components(coarse)
    if count == 0:  # all the ink was printed lines
        raise _no_digit()
    found = np.arange(1, count + 1)
    masses = np.bincount(labels.ravel(), weights=mass.ravel(), minlength=count + 1)[1:]
    order = np.argsort(-masses)
    total = masses.sum()
    keep = [found[order[0]]]
    box = _bbox(labels == keep[0])
    for index in order[1:]:
        if masses[index] < 0.02 * total:
            break
        other = _bbox(labels == found[index])
        size = max(box[1] - box[0], box[3] - box[2])
        gap = max(other[0] - box[1], box[0] - other[1], other[2] - box[3], box[2] - other[3], 0)
        if gap <= 0.5 * size:
            keep.append(found[index])
            box = (min(box[0], other[0]), max(box[1], other[1]), min(box[2], other[2]), max(box[3], other[3]))
    kept = np.isin(labels, keep)
    kept = np.repeat(np.repeat(kept, factor, axis=0), factor, axis=1)[:height, :width]
    ink = np.where(kept, ink, 0.0).astype(np.float32)
    top, bottom, left, right = _bbox(ink >= _BBOX_LEVEL)
    if max(bottom - top, right - left) < max(4, 0.015 * max(height, width)):
        raise _no_digit()
    return ink[top:bottom, left:right]


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), bottom and right exclusive."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in pixels: twice the area over the boundary length."""
    mask = ink >= 0.5
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    boundary = int((mask & ~inner).sum())
    return 2.0 * int(mask.sum()) / boundary if boundary else 1.0


def _thicken(ink: np.ndarray) -> np.ndarray:
    """Widen strokes that would fade to a hairline in the 20x20 box (a thin pen on a big canvas)."""
    size = max(ink.shape)
    width = _stroke_width(ink)
    if width * BOX / size >= _THIN:
        return ink
    factor = max(1, size // 128)
    if factor > 1:
        # Max-pooling keeps a hairline at full strength where averaging would fade it.
        height, wide = ink.shape
        rows, cols = math.ceil(height / factor), math.ceil(wide / factor)
        padded = np.pad(ink, ((0, rows * factor - height), (0, cols * factor - wide)))
        ink = padded.reshape(rows, factor, cols, factor).max(axis=(1, 3))
        width = width / factor + 1.0
        size = max(ink.shape)
    radius = round((_STROKE * size / BOX - width) / 2)
    ink = np.pad(ink, radius)
    for step in range(radius):
        ink = _max_filter(ink, cross=step % 2 == 1)
    return ink


def _fit_box(ink: np.ndarray) -> np.ndarray:
    """Scale into a 20x20 box, aspect ratio kept, peak ink at 1."""
    height, width = ink.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = Image.fromarray(np.ascontiguousarray(ink, dtype=np.float32))
    box = np.clip(np.asarray(image.resize(size, _RESAMPLE)), 0.0, None)
    peak = float(box.max())
    return box / peak if peak > 0 else box


def _centre(box: np.ndarray) -> np.ndarray:
    """Place the box in 28x28 with its centre of mass at MNIST's, staying inside the field."""
    height, width = box.shape
    total = float(box.sum())
    com_y = float((box.sum(axis=1) * np.arange(height)).sum()) / total
    com_x = float((box.sum(axis=0) * np.arange(width)).sum()) / total
    top = min(max(round(_CENTRE - com_y), 0), SIZE - height)
    left = min(max(round(_CENTRE - com_x), 0), SIZE - width)
    field = np.zeros((SIZE, SIZE), dtype=np.float32)
    field[top : top + height, left : left + width] = box
    return np.round(np.clip(field, 0.0, 1.0) * 255.0).astype(np.uint8)
