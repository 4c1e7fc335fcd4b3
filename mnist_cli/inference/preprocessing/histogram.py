"""Medians and percentiles of 8-bit values read off their histogram, equal to numpy's to the last bit.

A picture of 8-bit greys has at most 256 distinct values: counting them (OpenCV's calcHist)
and walking the counts replaces numpy's partition of every pixel, which is most of the cost
of a drawing's ink (`lighting._flat_grey_ink`). `tests/test_preprocessing.py` holds both to
numpy's results on random data.
"""

from __future__ import annotations

import math

import numpy as np

from mnist_cli.inference.preprocessing import quantiles


def median(counts: np.ndarray) -> float:
    """`np.median` of the values 0..255 that `counts[value]` times each make up (0.0 if none)."""
    total = int(counts.sum())
    if total == 0:
        return 0.0
    below = np.cumsum(counts)
    upper = int(np.searchsorted(below, total // 2, side="right"))
    if total % 2:
        return float(upper)
    lower = int(np.searchsorted(below, total // 2 - 1, side="right"))
    return float(np.float32(lower + upper) / np.float32(2.0))


def percentile(counts: np.ndarray, percent: float) -> float:
    """`np.percentile` (linear) of the values 0..255 that `counts[value]` times each make up."""
    total = int(counts.sum())
    below = np.cumsum(counts)
    index = (total - 1) * (percent / 100.0)
    rank = math.floor(index)
    lower = int(np.searchsorted(below, rank, side="right"))
    upper = int(np.searchsorted(below, min(rank + 1, total - 1), side="right"))
    return quantiles.lerp(np.float32(lower), np.float32(upper), index - rank)
