"""The digit's bounding box (connected ink, specks ignored), scaled into MNIST's 20x20 box and centred by mass in 28x28."""

from __future__ import annotations

import functools
import math

import numpy as np
from threadpoolctl import threadpool_limits

from mnist_cli.inference.preprocessing.lighting import no_digit
from mnist_cli.inference.preprocessing.load import SIZE
from mnist_cli.inference.preprocessing.opencv import cv2

# The shrink's matrix products are small: OpenBLAS would split one over a second thread
# that spins on a core another picture or the server is using (in `mnist serve` each
# worker process has a core; 7.1 ms of CPU for a 3.9 ms drawing here). Process-wide, as
# OpenCV's pool is; nothing else in these processes multiplies matrices with NumPy.
threadpool_limits(1, user_api="blas")

BOX = 20
_CENTRE = 14.0  # MNIST's mean centre of mass, in pixel-index coordinates (measured: 13.99, 14.01)
_COARSE_SIZE = 128  # longest side of the grid on which specks are told from the digit
_LANCZOS_LOBES = 3.0  # Pillow's Lanczos: sinc windowed by sinc over 3 lobes
_BBOX_LEVEL = 0.25  # ink strength that counts for the bounding box, so faint halos do not widen it


def digit_crop(ink: np.ndarray) -> np.ndarray:
    """The digit's bounding box, with specks and far-away marks removed."""
    height, width = ink.shape
    factor = max(1, math.ceil(max(height, width) / _COARSE_SIZE))
    rows, cols = math.ceil(height / factor), math.ceil(width / factor)
    coarse, mass = _pool(ink, factor, rows, cols)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(coarse, connectivity=8, ltype=cv2.CV_32S)
    if count <= 1:  # all the ink was printed lines
        raise no_digit()
    masses = np.bincount(labels.ravel(), weights=mass.ravel(), minlength=count)[1:]
    # (top, bottom, left, right) of each component, bottom and right exclusive.
    boxes = np.stack(
        [stats[1:, cv2.CC_STAT_TOP], stats[1:, cv2.CC_STAT_TOP] + stats[1:, cv2.CC_STAT_HEIGHT],
         stats[1:, cv2.CC_STAT_LEFT], stats[1:, cv2.CC_STAT_LEFT] + stats[1:, cv2.CC_STAT_WIDTH]],
        axis=1,
    )  # fmt: skip
    order = np.argsort(-masses, kind="stable")
    total = masses.sum()
    keep = [int(order[0])]
    box = tuple(int(v) for v in boxes[order[0]])
    for index in order[1:]:
        if masses[index] < 0.02 * total:
            break
        other = boxes[index]
        size = max(box[1] - box[0], box[3] - box[2])
        gap = max(other[0] - box[1], box[0] - other[1], other[2] - box[3], box[2] - other[3], 0)
        if gap <= 0.5 * size:
            keep.append(int(index))
            box = (min(box[0], other[0]), max(box[1], other[1]), min(box[2], other[2]), max(box[3], other[3]))
    chosen = np.zeros(count, dtype=np.uint8)
    chosen[np.array(keep) + 1] = 1
    # Nothing outside the kept components' box survives, so only that part of the picture is
    # masked and searched (a canvas drawing: 0.62 instead of 0.82 ms).
    top, bottom, left, right = box
    kept = chosen[labels[top:bottom, left:right]]
    if factor > 1:
        kept = cv2.resize(kept, ((right - left) * factor, (bottom - top) * factor), interpolation=cv2.INTER_NEAREST)
    part = ink[top * factor : bottom * factor, left * factor : right * factor]
    part = np.where(kept[: part.shape[0], : part.shape[1]].view(bool), part, np.float32(0.0))
    top, bottom, left, right = _bbox(part >= _BBOX_LEVEL)
    if max(bottom - top, right - left) < max(4, 0.015 * max(height, width)):
        raise no_digit()
    return part[top:bottom, left:right]


def _pool(ink: np.ndarray, factor: int, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Which factor x factor blocks hold ink (uint8 [rows, cols]), and the ink's mass in each."""
    if factor == 1:
        return (ink >= 0.3).view(np.uint8), ink
    height, width = ink.shape
    padded = cv2.copyMakeBorder(ink, 0, rows * factor - height, 0, cols * factor - width, cv2.BORDER_CONSTANT)
    # INTER_AREA by a whole factor is each block's mean: of the 0/255 marks, above 0 wherever
    # one pixel of the block is a mark (255 / 8x8 pixels still rounds to 4).
    marks = cv2.compare(padded, 0.3, cv2.CMP_GE)
    held = cv2.resize(marks, (cols, rows), interpolation=cv2.INTER_AREA)
    mass = cv2.resize(padded, (cols, rows), interpolation=cv2.INTER_AREA) * np.float32(factor * factor)
    return (held > 0).view(np.uint8), mass


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), bottom and right exclusive."""
    left, top, wide, high = cv2.boundingRect(mask.view(np.uint8))
    return top, top + high, left, left + wide


def fit_box(ink: np.ndarray) -> np.ndarray:
    """Scale into a 20x20 box, aspect ratio kept, peak ink at 1."""
    box = _shrink(np.asarray(ink, dtype=np.float32), box_size(*ink.shape))
    box = np.clip(box, 0.0, None)
    peak = float(box.max())
    return box / peak if peak > 0 else box


def box_size(height: int, width: int) -> tuple[int, int]:
    """(width, height) of a height x width crop scaled into the 20x20 box, its aspect ratio kept."""
    scale = BOX / max(height, width)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _shrink(ink: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resized to `size` (width, height) with Pillow's anti-aliased Lanczos, as MNIST's digits were.

    OpenCV's Lanczos does not widen its kernel when shrinking (it aliases), and its box
    filter gives a blockier digit whose centre of mass moves by up to a pixel. Pillow's
    filter is two matrix products here: rows, rounded to float32 as Pillow keeps them, then
    columns; the same digits (at most a float32 rounding apart) at a fifth of Pillow's time.
    """
    width, height = size
    # Pillow skips a side whose length does not change.
    if ink.shape[1] != width:
        ink = (ink.astype(np.float64) @ _lanczos_weights(ink.shape[1], width).T).astype(np.float32)
    if ink.shape[0] != height:
        ink = (_lanczos_weights(ink.shape[0], height) @ ink.astype(np.float64)).astype(np.float32)
    return ink


@functools.lru_cache(maxsize=512)
def _lanczos_weights(size_in: int, size_out: int) -> np.ndarray:
    """[size_out, size_in] weights of Pillow's Lanczos resampling (`precompute_coeffs` in its Resample.c)."""
    scale = size_in / size_out
    widen = max(scale, 1.0)  # shrinking widens the kernel: the anti-aliasing
    support = _LANCZOS_LOBES * widen
    weights = np.zeros((size_out, size_in))
    for out in range(size_out):
        centre = (out + 0.5) * scale
        first = max(int(centre - support + 0.5), 0)
        stop = min(int(centre + support + 0.5), size_in)
        x = (np.arange(first, stop) - centre + 0.5) * (1.0 / widen)
        taps = np.where((x >= -_LANCZOS_LOBES) & (x < _LANCZOS_LOBES), np.sinc(x) * np.sinc(x / _LANCZOS_LOBES), 0.0)
        total = taps.sum()
        weights[out, first:stop] = taps / total if total else taps
    weights.flags.writeable = False  # shared through the cache
    return weights


def centre(box: np.ndarray) -> np.ndarray:
    """Place the box in 28x28 with its centre of mass at MNIST's, staying inside the field."""
    height, width = box.shape
    moments = cv2.moments(box)
    com_y, com_x = moments["m01"] / moments["m00"], moments["m10"] / moments["m00"]
    top = min(max(round(_CENTRE - com_y), 0), SIZE - height)
    left = min(max(round(_CENTRE - com_x), 0), SIZE - width)
    field = np.zeros((SIZE, SIZE), dtype=np.float32)
    field[top : top + height, left : left + width] = box
    return np.round(np.clip(field, 0.0, 1.0) * 255.0).astype(np.uint8)
