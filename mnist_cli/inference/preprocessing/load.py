"""Reading a picture safely (size caps, decompression bombs, damaged files, EXIF orientation) and its pixels as floats."""

from __future__ import annotations

import contextlib
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
_WORK_SIZE = 1024  # longest side the analysis runs at; larger pictures are box-reduced first


def source_label(source: Path | bytes, name: str | None) -> str:
    """How a picture is named in messages: its given name, its path, or standard input."""
    return name or (str(source) if isinstance(source, (str, os.PathLike)) else "standard input")


def load_image(source: Path | bytes, *, name: str | None = None) -> Image.Image:
    """Open an image file or raw bytes (standard input), first frame, upright per its EXIF tag."""
    label = source_label(source, name)
    data = _read_source(source, label)
    if not data:
        raise InputError(f"{label} is empty (0 bytes)", "give a PNG, JPEG, BMP, GIF, TIFF or WebP picture of a digit")
    with warnings.catch_warnings():
        # Library code must not print: Pillow's notes on odd EXIF blocks are dropped, and its
        # bomb warning (between its limit and twice it) becomes an error like the bomb itself.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=_FORMATS)
            _check_pixels(image.size, label)
            # libtiff writes its complaints ("ZIPDecode: Not enough data") straight to file
            # descriptor 2; the damage is reported below as one line instead. The other
            # decoders raise, and skip the four system calls of the silencing.
            with native_stderr_silenced() if image.format == "TIFF" else contextlib.nullcontext():
                image.load()
        except InputError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _bomb_error(label, None) from None
        except UnidentifiedImageError:
            raise InputError(
                f"{label} is not a {_FORMAT_NAMES} image", "convert it to PNG or JPEG; export HEIC photos as JPEG"
            ) from None
        except Exception as exc:  # noqa: BLE001 - decoders raise many types for damaged files
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"{label} is corrupt or truncated ({detail})", "save or export the picture again") from None
        try:
            ImageOps.exif_transpose(image, in_place=True)
        except Exception:  # noqa: BLE001 - a damaged EXIF block should not hide a readable picture
            pass
    return image


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


# --- pixels for the analysis ---------------------------------------------------------------


def mnist_style(image: Image.Image) -> np.ndarray | None:
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


def pixels(image: Image.Image) -> np.ndarray:
    """Float32 [H, W, C] in 0..255 (C is 1 or 3), transparency composited, at most _WORK_SIZE across."""
    mode = image.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        # 16-bit and float greys: Pillow's conversion to L would clip, so scale here.
        image = _reduce(image.convert("F"))
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
    if values.ndim == 3 and _is_grey(values):
        # A grey picture stored as RGB (most canvases and scans): one channel does the same work.
        values = values[..., :1]
    return values[..., None] if values.ndim == 2 else np.ascontiguousarray(values)


def _is_grey(values: np.ndarray) -> bool:
    return bool(np.array_equal(values[..., 0], values[..., 1]) and np.array_equal(values[..., 0], values[..., 2]))


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
