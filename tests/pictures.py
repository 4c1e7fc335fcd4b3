"""Realistic pictures of digits, the kind people feed to `mnist predict`, made from real MNIST digits.

Each maker takes an MNIST digit (uint8 [28, 28], white ink on black) and returns a
PIL image the way a phone, scanner, drawing app or word processor would produce it.
Everything is seeded, so the same digit and seed give the same picture.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

WHITE = (255, 255, 255)
BLUE_INK = (20, 40, 170)
RED_INK = (200, 20, 30)
_FONT_FILES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:/Windows/Fonts/arial.ttf",
)


def encode(image: Image.Image, format: str, **params: object) -> bytes:
    """The bytes of `image` saved in `format` (as a file on disk would hold them)."""
    buffer = io.BytesIO()
    image.save(buffer, format=format, **params)
    return buffer.getvalue()


def reopen(data: bytes) -> Image.Image:
    """Decode saved bytes again, so pictures carry the codec's artefacts."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _upscale(digit: np.ndarray, scale: float) -> np.ndarray:
    """Ink strength 0..1, the digit enlarged smoothly like a real pen stroke."""
    size = round(28 * scale)
    image = Image.fromarray(np.asarray(digit, dtype=np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(image, dtype=np.float32) / 255.0, 0.0, 1.0)


def _place(ink: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Put the ink somewhere off-centre on a blank sheet of `size` (width, height)."""
    width, height = size
    sheet = np.zeros((height, width), dtype=np.float32)
    top = int(rng.integers(0, height - ink.shape[0] + 1))
    left = int(rng.integers(0, width - ink.shape[1] + 1))
    sheet[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
    return sheet


def _paper(ink: np.ndarray, rng: np.random.Generator, *, ink_colour: tuple[int, int, int], noise: float) -> np.ndarray:
    """Grey paper (200..240), lit unevenly (a gradient of up to 30 levels), with sensor noise."""
    height, width = ink.shape
    level = rng.uniform(200, 240)
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (np.cos(angle) * xs / width + np.sin(angle) * ys / height) * rng.uniform(10, 30)
    paper = np.clip(level + ramp - ramp.mean(), 0, 255)[..., None] * np.array([1.0, 1.0, 0.97], dtype=np.float32)
    colour = np.array(ink_colour, dtype=np.float32)
    rgb = paper * (1 - ink[..., None]) + colour * ink[..., None]
    rgb += rng.normal(0, noise, size=rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def photographed(digit: np.ndarray, *, seed: int = 0, size: tuple[int, int] = (400, 300)) -> Image.Image:
    """Dark pen on grey, unevenly lit paper, off-centre, noisy, saved as a JPEG (quality 80)."""
    rng = np.random.default_rng(seed)
    sheet = _place(_upscale(digit, rng.uniform(0.6, 0.8) * min(size) / 28), size, rng)
    ink_level = int(rng.integers(20, 70))
    rgb = _paper(sheet, rng, ink_colour=(ink_level, ink_level, ink_level + 10), noise=4.0)
    return reopen(encode(Image.fromarray(rgb), "JPEG", quality=80))


def large_canvas(digit: np.ndarray, *, seed: int = 0, size: tuple[int, int] = (1200, 900)) -> Image.Image:
    """A small black digit (about 10% of the area) off-centre on a big white drawing canvas, PNG."""
    rng = np.random.default_rng(seed)
    # The digit's 20-pixel MNIST box becomes about 30% of the height: ~10% of the area.
    scale = 0.3 * size[1] / 20 * rng.uniform(0.9, 1.1)
    sheet = _place(_upscale(digit, scale), size, rng)
    gray = np.round(255 * (1 - sheet)).astype(np.uint8)
    return reopen(encode(Image.fromarray(gray).convert("RGB"), "PNG"))


def coloured_ink(
    digit: np.ndarray, colour: tuple[int, int, int] = BLUE_INK, *, seed: int = 0, size: tuple[int, int] = (300, 300)
) -> Image.Image:
    """A coloured pen (blue or red ballpoint) on white paper, lightly noisy, saved as a JPEG (quality 90)."""
    rng = np.random.default_rng(seed)
    sheet = _place(_upscale(digit, rng.uniform(6, 8)), size, rng)
    rgb = WHITE * (1 - sheet[..., None]) + np.array(colour, dtype=np.float32) * sheet[..., None]
    rgb = np.clip(rgb + rng.normal(0, 2.0, size=rgb.shape), 0, 255).astype(np.uint8)
    return reopen(encode(Image.fromarray(rgb), "JPEG", quality=90))


def transparent_drawing(digit: np.ndarray, *, seed: int = 0, size: tuple[int, int] = (512, 512)) -> Image.Image:
    """A drawing-app export: black strokes on a fully transparent background, RGBA PNG."""
    rng = np.random.default_rng(seed)
    sheet = _place(_upscale(digit, rng.uniform(10, 14)), size, rng)
    rgba = np.zeros((*sheet.shape, 4), dtype=np.uint8)
    rgba[..., 3] = np.round(sheet * 255).astype(np.uint8)
    return reopen(encode(Image.fromarray(rgba), "PNG"))


def _zhang_suen(mask: np.ndarray) -> np.ndarray:
    """One-pixel skeleton of a binary shape (Zhang and Suen, 1984)."""
    image = mask.astype(np.uint8)
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            p = np.pad(image, 1)
            p2, p3, p4, p5 = p[:-2, 1:-1], p[:-2, 2:], p[1:-1, 2:], p[2:, 2:]
            p6, p7, p8, p9 = p[2:, 1:-1], p[2:, :-2], p[1:-1, :-2], p[:-2, :-2]
            ring = (p2, p3, p4, p5, p6, p7, p8, p9, p2)
            neighbours = sum(n.astype(np.int32) for n in ring[:-1])
            transitions = sum(((a == 0) & (b == 1)).astype(np.int32) for a, b in zip(ring[:-1], ring[1:]))
            if step == 0:
                side = ((p2 * p4 * p6) == 0) & ((p4 * p6 * p8) == 0)
            else:
                side = ((p2 * p4 * p8) == 0) & ((p2 * p6 * p8) == 0)
            remove = (image == 1) & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & side
            if remove.any():
                image[remove] = 0
                changed = True
    return image.astype(bool)


def thin_pen(digit: np.ndarray, *, seed: int = 0, size: tuple[int, int] = (900, 700), pen: int = 3) -> Image.Image:
    """A hairline drawing: the digit thinned to its skeleton and drawn with a `pen`-pixel brush (odd), big canvas."""
    if pen < 1 or pen % 2 == 0:
        raise ValueError(f"pen must be an odd width in pixels, got {pen}")
    rng = np.random.default_rng(seed)
    skeleton = _zhang_suen(_upscale(digit, 16) >= 0.5)
    stroke = Image.fromarray(skeleton.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(pen))
    sheet = _place(np.asarray(stroke, dtype=np.float32) / 255.0, size, rng)
    gray = np.round(255 * (1 - sheet)).astype(np.uint8)
    return reopen(encode(Image.fromarray(gray), "PNG"))


def sixteen_bit_png(digit: np.ndarray, *, seed: int = 0, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A 16-bit greyscale scan (mode I;16): dark ink on light paper, saved as PNG."""
    rng = np.random.default_rng(seed)
    sheet = _place(_upscale(digit, rng.uniform(6, 8)), size, rng)
    paper = rng.uniform(52000, 62000)
    values = paper * (1 - sheet) + 6000 * sheet + rng.normal(0, 300, size=sheet.shape)
    image = Image.fromarray(np.clip(values, 0, 65535).astype(np.uint16))
    return reopen(encode(image, "PNG"))


def cmyk_jpeg(digit: np.ndarray, *, seed: int = 0) -> Image.Image:
    """The photographed picture converted to CMYK (print workflows) and saved as a CMYK JPEG."""
    rgb = photographed(digit, seed=seed, size=(320, 240))
    return reopen(encode(rgb.convert("CMYK"), "JPEG", quality=90))


def exif_rotated_jpeg(digit: np.ndarray, *, seed: int = 0) -> bytes:
    """A phone photo held sideways: pixels stored rotated, EXIF Orientation=6 says to turn them upright."""
    upright = photographed(digit, seed=seed, size=(300, 400))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the sensor wrote
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    return encode(stored, "JPEG", quality=90, exif=exif)


def typed_digit(digit: int, *, size: tuple[int, int] = (240, 200), font_size: int = 150, seed: int = 0) -> Image.Image:
    """A digit typed in a word processor (DejaVu Sans or Pillow's built-in font), black on white, off-centre."""
    rng = np.random.default_rng(seed)
    font = _font(font_size)
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((0, 0), str(digit), font=font)
    x = int(rng.integers(0, size[0] - (right - left) + 1)) - left
    y = int(rng.integers(0, size[1] - (bottom - top) + 1)) - top
    draw.text((x, y), str(digit), fill=0, font=font)
    return image.convert("RGB")


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for candidate in _FONT_FILES:
        if Path(candidate).is_file():
            return ImageFont.truetype(candidate, size)
    # Pillow >= 10.1 embeds a scalable font when FreeType is available.
    return ImageFont.load_default(size=size)


def photo_12mp(digit: np.ndarray, *, seed: int = 0) -> bytes:
    """A 4000x3000 phone photo of a pen digit on grainy paper, as JPEG bytes (quality 92, about 3 MB)."""
    rng = np.random.default_rng(seed)
    ink = _upscale(digit, 60)
    sheet = _place(ink, (4000, 3000), rng)
    rgb = _paper(sheet, rng, ink_colour=(40, 40, 50), noise=6.0)
    return encode(Image.fromarray(rgb), "JPEG", quality=92)


def _lighting(height: int, width: int, rng: np.random.Generator, kind: str) -> np.ndarray:
    """A multiplicative light field in (0, 1]: from one side, darker corners (vignetting), or a soft shadow."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = xs / width - 0.5, ys / height - 0.5
    if kind == "side":
        angle = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(angle) * u + np.sin(angle) * v  # -0.7..0.7
        ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
        return rng.uniform(0.25, 0.45) + (1 - rng.uniform(0.25, 0.45)) * ramp ** rng.uniform(0.7, 1.5)
    if kind == "vignette":
        cy, cx = rng.uniform(-0.2, 0.2, size=2)
        radius = np.sqrt((u - cx) ** 2 + (v - cy) ** 2) / 0.75
        return np.clip(1.0 - rng.uniform(0.5, 0.75) * radius**2, 0.15, 1.0)
    # A shadow (a phone or a hand) across part of the sheet, its edge blurred.
    angle = rng.uniform(0, 2 * np.pi)
    side = np.cos(angle) * u + np.sin(angle) * v - rng.uniform(0.15, 0.35)
    edge = 1 / (1 + np.exp(-side / rng.uniform(0.02, 0.06)))
    return 1.0 - rng.uniform(0.45, 0.6) * edge


def uneven_light(digit: np.ndarray, *, seed: int = 0, size: tuple[int, int] = (400, 300)) -> Image.Image:
    """A page lit from one side, with dark corners or with a shadow across it: pen on paper, JPEG (quality 80)."""
    rng = np.random.default_rng(seed)
    sheet = _place(_upscale(digit, rng.uniform(0.55, 0.75) * min(size) / 28), size, rng)
    kind = ("side", "vignette", "shadow")[int(rng.integers(3))]
    light = _lighting(size[1], size[0], rng, kind)
    paper = rng.uniform(215, 245) * np.array([1.0, 0.99, 0.95], dtype=np.float32)
    ink = np.array([rng.uniform(15, 60)] * 2 + [rng.uniform(20, 80)], dtype=np.float32)
    rgb = (paper * (1 - sheet[..., None]) + ink * sheet[..., None]) * light[..., None]
    rgb += rng.normal(0, 3.0, size=rgb.shape)
    return reopen(encode(Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)), "JPEG", quality=80))


def _lines(height: int, width: int, rng: np.random.Generator, *, spacing: float, across: bool) -> np.ndarray:
    """Strength 0..1 of thin printed lines spanning the sheet, slightly tilted (a photo is never square to them)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    tilt = np.tan(np.radians(rng.uniform(-1.5, 1.5)))
    position = (ys - tilt * xs) if not across else (xs + tilt * ys)
    offset = rng.uniform(0, spacing)
    distance = np.abs((position - offset + spacing / 2) % spacing - spacing / 2)
    half = rng.uniform(0.5, 1.5)  # lines 1-3 pixels wide, anti-aliased
    return np.clip(half + 0.5 - distance, 0.0, 1.0)


def _on_lined_paper(digit: np.ndarray, rng: np.random.Generator, size: tuple[int, int], *, squared: bool) -> Image.Image:
    width, height = size
    scale = rng.uniform(0.55, 0.75) * min(size) / 28
    sheet = _place(_upscale(digit, scale), size, rng)
    ink_height = 20 * scale  # the digit's 20-pixel MNIST box
    if squared:
        spacing = ink_height / rng.uniform(3.0, 6.0)
        lines = np.maximum(
            _lines(height, width, rng, spacing=spacing, across=False), _lines(height, width, rng, spacing=spacing, across=True)
        )
        colour = np.array(rng.choice([(150, 170, 200), (160, 160, 160), (130, 180, 150)]), dtype=np.float32)
    else:
        lines = _lines(height, width, rng, spacing=ink_height / rng.uniform(1.5, 3.0), across=False)
        colour = np.array((120, 160, 215), dtype=np.float32)
    strength = rng.uniform(0.6, 1.0) * lines
    paper = rng.uniform(225, 250) * np.ones(3, dtype=np.float32)
    rgb = paper * (1 - strength[..., None]) + colour * strength[..., None]
    if not squared and rng.random() < 0.5:
        # The red margin line of a school exercise book.
        margin = np.clip(1.5 - np.abs(np.arange(width, dtype=np.float32) - rng.uniform(0.08, 0.15) * width), 0, 1)
        rgb = rgb * (1 - margin[None, :, None]) + np.array((220, 90, 90), np.float32) * margin[None, :, None]
    ink = np.array(rng.choice([(25, 25, 35), (25, 40, 150)]), dtype=np.float32)
    rgb = rgb * (1 - sheet[..., None]) + ink * sheet[..., None]
    light = _lighting(height, width, rng, "side")
    rgb = rgb * (0.75 + 0.25 * light[..., None]) + rng.normal(0, 3.0, size=rgb.shape)
    return reopen(encode(Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)), "JPEG", quality=85))


def ruled_paper(digit: np.ndarray, *, seed: int = 0, size: tuple[int, int] = (400, 300)) -> Image.Image:
    """A pen digit on ruled paper (light blue lines, sometimes a red margin), photographed slightly askew, JPEG."""
    return _on_lined_paper(digit, np.random.default_rng(seed), size, squared=False)


def squared_paper(digit: np.ndarray, *, seed: int = 0, size: tuple[int, int] = (400, 300)) -> Image.Image:
    """A pen digit on squared (graph) paper, the grid finer than the digit, photographed slightly askew, JPEG."""
    return _on_lined_paper(digit, np.random.default_rng(seed), size, squared=True)


def stepped_ruled_paper(
    digit: np.ndarray, *, seed: int = 0, size: tuple[int, int] = (400, 300), tilt: float = 0.7
) -> Image.Image:
    """Ruled paper with a red margin whose lines are drawn without anti-aliasing (stair-stepped), tilted `tilt` degrees, JPEG.

    A cheap scanner or a printer's 1-bit rendering makes lines like these: each one climbs a
    whole pixel at a time, so it never lies in one row at any tilt.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    scale = rng.uniform(0.55, 0.75) * min(size) / 28
    sheet = _place(_upscale(digit, scale), size, rng)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    slope = np.tan(np.radians(tilt))
    spacing = 20 * scale / rng.uniform(1.5, 3.0)
    thick = int(rng.integers(1, 3))
    # Whole pixels only: a pixel is on the line or not.
    row = np.floor(ys - slope * xs - rng.uniform(0, spacing))
    lines = (np.mod(row, np.floor(spacing)) < thick).astype(np.float32)
    paper = rng.uniform(225, 250) * np.ones(3, dtype=np.float32)
    rgb = paper * (1 - lines[..., None]) + np.array((120, 160, 215), np.float32) * lines[..., None]
    margin = np.floor(xs + slope * ys) == round(rng.uniform(0.08, 0.15) * width)
    margin = margin | np.roll(margin, 1, axis=1)
    rgb[margin] = (220, 90, 90)
    ink = np.array(rng.choice([(25, 25, 35), (25, 40, 150)]), dtype=np.float32)
    rgb = rgb * (1 - sheet[..., None]) + ink * sheet[..., None]
    rgb += rng.normal(0, 3.0, size=rgb.shape)
    return reopen(encode(Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)), "JPEG", quality=85))


def hard_shadow(digit: np.ndarray, *, seed: int = 0, size: tuple[int, int] = (400, 300)) -> Image.Image:
    """A photographed pen digit with a hard-edged shadow band across it (a ruler or a phone in direct sun), JPEG."""
    rng = np.random.default_rng(seed)
    width, height = size
    sheet = _place(_upscale(digit, rng.uniform(0.6, 0.8) * min(size) / 28), size, rng)
    ink_level = int(rng.integers(20, 70))
    rgb = _paper(sheet, rng, ink_colour=(ink_level, ink_level, ink_level + 10), noise=0.0).astype(np.float32)
    # A straight band a fifth to a third of the picture wide, at any angle, through the middle third.
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    across = np.cos(angle) * (xs - width / 2) + np.sin(angle) * (ys - height / 2) - rng.uniform(-0.15, 0.15) * min(size)
    band = np.abs(across) < rng.uniform(0.1, 0.17) * min(size)
    rgb[band] *= rng.uniform(0.45, 0.6)
    rgb += rng.normal(0, 4.0, size=rgb.shape)
    return reopen(encode(Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)), "JPEG", quality=80))


def page_drawing(digit: np.ndarray, *, seed: int = 0) -> bytes:
    """What `mnist serve`'s page sends: the 280x280 canvas, dark anti-aliased strokes on flat white, as PNG."""
    del seed  # a canvas has no noise
    return encode(Image.fromarray(255 - digit).resize((280, 280), Image.Resampling.BILINEAR), "PNG")


# Every picture maker that starts from an MNIST digit, by name, for tests that loop over them.
VARIANTS: dict[str, Callable[..., Image.Image]] = {
    "photographed": photographed,
    "large_canvas": large_canvas,
    "blue_ink": lambda digit, *, seed=0: coloured_ink(digit, BLUE_INK, seed=seed),
    "red_ink": lambda digit, *, seed=0: coloured_ink(digit, RED_INK, seed=seed),
    "transparent": transparent_drawing,
    "thin_pen": thin_pen,
    "sixteen_bit": sixteen_bit_png,
    "cmyk": cmyk_jpeg,
}
# Photographs of paper as people take them (issue 13): uneven light, ruled and squared paper.
PHOTO_VARIANTS: dict[str, Callable[..., Image.Image]] = {
    "uneven_light": uneven_light,
    "ruled": ruled_paper,
    "squared": squared_paper,
}
