"""Text in pictures: a system sans font (or Pillow's own), measuring, fitting and drawing lines."""

from __future__ import annotations

import functools
import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
RGB = tuple[int, int, int]

PAPER: RGB = (255, 255, 255)
INK: RGB = (33, 37, 41)
MUTED: RGB = (108, 117, 125)
DASH = "\u2013"  # an en dash for "not defined"; symbols swaps it for "-" where the font lacks it



FONT_FILES = {
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
def sans_font(size: int, bold: bool = False) -> Font:
    """A TrueType font of `size` pixels: a system sans if there is one, else Pillow's own."""
    for name in FONT_FILES[bold]:
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


def symbols(font: Font, text: str) -> str:
    """Replace typographic characters the font lacks with ASCII."""
    for fancy, plain in (("→", "->"), ("·", "-"), (DASH, "-"), ("\u2014", "-"), ("…", "...")):
        if fancy in text and not _has_glyph(font, fancy):
            text = text.replace(fancy, plain)
    return text


def text_size(font: Font, text: str) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return math.ceil(right - left), math.ceil(bottom - top)


def line_height_of(font: Font) -> int:
    """Height of one line of text, the same for every string in this font."""
    _, top, _, bottom = font.getbbox("Ag0|")
    return math.ceil(bottom - top)


def fit_text(font: Font, text: str, width: int) -> str:
    """`text`, shortened with an ellipsis if it is wider than `width` pixels."""
    if text_size(font, text)[0] <= width:
        return text
    ellipsis = symbols(font, "…")
    while text and text_size(font, text + ellipsis)[0] > width:
        text = text[:-1]
    return text.rstrip() + ellipsis if text else ""


def draw_text(
    draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, font: Font, fill: RGB, *, align: str = "center"
) -> None:
    """Draw one line of text whose box is centred vertically on y and aligned at x."""
    text = symbols(font, text)
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


def paste_rotated_text(image: Image.Image, center: tuple[int, int], text: str, font: Font, fill: RGB) -> None:
    """Draw `text` reading bottom to top, centred on `center`."""
    text = symbols(font, text)
    width, height = text_size(font, text)
    left, top, _, _ = font.getbbox(text)
    mask = Image.new("L", (width + 4, height + 4), 0)
    ImageDraw.Draw(mask).text((2 - left, 2 - top), text, font=font, fill=255)
    mask = mask.rotate(90, expand=True)
    x = center[0] - mask.width // 2
    y = center[1] - mask.height // 2
    image.paste(Image.new("RGB", mask.size, fill), (x, y), mask)


def text_image(text: str, *, width: int | None = None, size: int = 16) -> Image.Image:
    """A small picture that says `text` (for example when there is nothing to show)."""
    font = sans_font(size)
    lines = [symbols(font, line) for line in text.splitlines() or [""]]
    line_height = line_height_of(font) + size // 3
    text_width = max(text_size(font, line)[0] for line in lines)
    margin = size
    image = Image.new("RGB", (max(width or 0, text_width + 2 * margin), len(lines) * line_height + 2 * margin), PAPER)
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        draw_text(draw, (image.width / 2, margin + (row + 0.5) * line_height), line, font, INK)
    return image
