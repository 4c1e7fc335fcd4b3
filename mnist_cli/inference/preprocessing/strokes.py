"""Thickening hairline strokes (a 1-pixel brush on a big canvas) to MNIST's stroke width before scaling down."""

from __future__ import annotations

import math

import numpy as np

from mnist_cli.inference.preprocessing.crop import BOX
from mnist_cli.inference.preprocessing.opencv import cv2

_STROKE = 2.5  # MNIST's median stroke width in the 20x20 box (measured as 2 * area / boundary)
_THIN = 1.2  # below MNIST's 1st percentile (1.4 measured the same way): thicken before scaling down
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
_SQUARE = np.ones((3, 3), np.uint8)


def stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in pixels: twice the area over the boundary length."""
    mask = (ink >= 0.5).astype(np.uint8)
    # Outside the picture counts as inside, as a stroke is not cut by the crop's edge.
    inner = cv2.erode(mask, _CROSS, borderType=cv2.BORDER_CONSTANT, borderValue=1)
    area = cv2.countNonZero(mask)
    boundary = area - cv2.countNonZero(inner)
    return 2.0 * area / boundary if boundary else 1.0


def thicken(ink: np.ndarray) -> np.ndarray:
    """Widen strokes that would fade to a hairline in the 20x20 box (a thin pen on a big canvas)."""
    size = max(ink.shape)
    width = stroke_width(ink)
    if width * BOX / size >= _THIN:
        return ink
    factor = max(1, size // 128)
    if factor > 1:
        # Max-pooling keeps a hairline at full strength where averaging would fade it.
        height, wide = ink.shape
        rows, cols = math.ceil(height / factor), math.ceil(wide / factor)
        padded = cv2.copyMakeBorder(ink, 0, rows * factor - height, 0, cols * factor - wide, cv2.BORDER_CONSTANT)
        ink = padded.reshape(rows, factor, cols, factor).max(axis=(1, 3))
        width = width / factor + 1.0
        size = max(ink.shape)
    radius = round((_STROKE * size / BOX - width) / 2)
    if radius <= 0:
        return ink
    ink = cv2.copyMakeBorder(ink, radius, radius, radius, radius, cv2.BORDER_CONSTANT)
    for step in range(radius):
        # The square and the cross in turn grow a round pen.
        ink = cv2.dilate(ink, _CROSS if step % 2 == 1 else _SQUARE)
    return ink
