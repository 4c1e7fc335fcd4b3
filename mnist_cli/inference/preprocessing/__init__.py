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

The package's rooms: `load` (reading and input safety, with Pillow), `lighting` (ink
strength and the paper's light), `lines` (ruled and squared paper), `crop` (the digit's box,
scaling and centring), `strokes` (hairlines). The analysis runs on OpenCV and numpy, which
release the GIL, so threads preprocess pictures on several cores at once; OpenCV is imported
with the first picture, not with the package (`mnist predict` parses its options without it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mnist_cli.core.errors import InputError
from mnist_cli.inference.preprocessing.load import (
    IMAGE_SUFFIXES,
    MAX_FILE_BYTES,
    MAX_PIXELS,
    SIZE,
    iter_image_paths,
    load_image,
    source_label,
)

__all__ = ["IMAGE_SUFFIXES", "MAX_FILE_BYTES", "MAX_PIXELS", "SIZE", "iter_image_paths", "load_image", "preprocess", "to_mnist"]


def preprocess(source: Path | bytes, *, name: str | None = None) -> np.ndarray:
    """Load a picture and turn it into an MNIST-style uint8 [28, 28] digit."""
    image = load_image(source, name=name)
    try:
        return to_mnist(image)
    except InputError as exc:
        raise InputError(f"{source_label(source, name)}: {exc.message}", exc.hint) from None


def to_mnist(image: Image.Image) -> np.ndarray:
    """White-on-black uint8 [28, 28] digit, size-normalised and centred the way MNIST was made."""
    from mnist_cli.inference.preprocessing import crop, lighting, lines, load, strokes

    as_is = load.mnist_style(image)
    if as_is is not None:
        return as_is
    ink = lighting.ink(load.pixels(image))
    ink = lines.remove_lines(ink)
    ink = crop.digit_crop(ink)
    ink = strokes.thicken(ink)
    return crop.centre(crop.fit_box(ink))
