"""Choosing samples of a data set to look at, and drawing them as plain text.

numpy only: no TensorFlow, no Rich, no printing. The Rich drawing lives in
`mnist_cli/cli/show.py`; the PNG grid in `mnist_cli/report/pictures.py`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_cli.core.errors import UsageError

# Darkest to brightest; the digits are bright strokes on black, so ink gets the dense glyphs.
ASCII_RAMP = " .:-=+*#%@"
DEFAULT_COUNT = 10


@dataclass(frozen=True)
class Selection:
    """Which samples of a split to show, and how they were chosen."""

    dataset: str
    split: str
    split_size: int
    indices: tuple[int, ...]
    labels: tuple[int, ...]
    class_names: tuple[str, ...]
    seed: int | None = None
    output: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """The selection as plain JSON types."""
        return {
            "dataset": self.dataset,
            "split": self.split,
            "split_size": self.split_size,
            "seed": self.seed,
            "samples": [
                {"index": index, "label": label, "class_name": name}
                for index, label, name in zip(self.indices, self.labels, self.class_names)
            ],
            "output": str(self.output) if self.output is not None else None,
        }


def _normalise(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


def parse_class(text: str, class_names: Sequence[str]) -> int:
    """A class given as its label number (`7`) or its name, case and punctuation ignored (`ankle-boot`, `tshirt`)."""
    value = text.strip()
    if value.isdigit() and int(value) < len(class_names):
        return int(value)
    wanted = _normalise(value)
    names = [_normalise(name) for name in class_names]
    if wanted:
        if wanted in names:
            return names.index(wanted)
        # A unique prefix is enough: `tshirt` for "T-shirt/top", `ankle` for "Ankle boot".
        matches = [label for label, name in enumerate(names) if name.startswith(wanted)]
        if len(matches) == 1:
            return matches[0]
    raise UsageError(
        f"unknown class {text!r}",
        f"use a label 0 to {len(class_names) - 1} or one of: {', '.join(class_names)}",
    )


def _check_index(index: int, size: int, split: str) -> int:
    if not 0 <= index < size:
        raise UsageError(
            f"--index {index} is out of range: the {split} split has {size} images (0 to {size - 1})",
            "pick an index in that range",
        )
    return index


def _round_robin(pools: list[np.ndarray], count: int) -> list[int]:
    chosen: list[int] = []
    depth = 0
    while len(chosen) < count and any(depth < len(pool) for pool in pools):
        for pool in pools:
            if depth < len(pool) and len(chosen) < count:
                chosen.append(int(pool[depth]))
        depth += 1
    return chosen


def _check_ways(
    *, indices: Sequence[int] | None, classes: Sequence[str] | None, random: int | None, seed: int | None, count: int | None
) -> None:
    # The ways of choosing samples exclude each other; say so before looking at any data.
    if indices and (classes or random is not None):
        raise UsageError("--index cannot be combined with --class or --random", "use one way of choosing samples")
    if random is not None and count is not None:
        raise UsageError("--random and --count both say how many samples to show", "use one of them")
    if count is not None and count < 1:
        raise UsageError(f"--count must be >= 1, got {count}")
    if random is not None and random < 1:
        raise UsageError(f"--random must be >= 1, got {random}")
    if seed is not None and random is None:
        raise UsageError("--seed needs --random", "for example --random 10 --seed 42")


def select(
    labels: np.ndarray,
    *,
    class_names: Sequence[str],
    dataset: str = "mnist",
    split: str = "train",
    indices: Sequence[int] | None = None,
    classes: Sequence[str] | None = None,
    random: int | None = None,
    seed: int | None = None,
    count: int | None = None,
) -> Selection:
    """Pick samples by index, by class, at random, or one of each class by default.

    `--index` is used as given. Otherwise the pool is the split, or only the `classes`
    asked for; `random` draws that many from the pool (seeded: the same seed gives the
    same samples), else `count` (default 10) are taken in file order, spread evenly over
    the classes (all ten when none are given: one of each by default).
    """
    labels = np.asarray(labels)
    size = len(labels)
    _check_ways(indices=indices, classes=classes, random=random, seed=seed, count=count)
    if size == 0:
        raise UsageError(f"the {split} split of {dataset} has no images")

    used_seed: int | None = None
    if indices:
        chosen = [_check_index(int(index), size, split) for index in indices]
    else:
        wanted = list(dict.fromkeys(parse_class(text, class_names) for text in classes or ()))
        pools = [np.flatnonzero(labels == label) for label in (wanted or range(len(class_names)))]
        for label, pool in zip(wanted, pools):
            if len(pool) == 0:
                raise UsageError(f"the {split} split of {dataset} has no images of class {class_names[label]!r}")
        if random is not None:
            pool = np.sort(np.concatenate(pools)) if wanted else np.arange(size)
            if random > len(pool):
                raise UsageError(f"--random {random} is more than the {len(pool)} images to choose from")
            # A seed is always used and reported, so any random pick can be shown again.
            used_seed = seed if seed is not None else secrets.randbelow(2**31)
            rng = np.random.default_rng(used_seed)
            chosen = [int(i) for i in rng.choice(pool, size=random, replace=False)]
        else:
            chosen = _round_robin([pool for pool in pools if len(pool)], count or DEFAULT_COUNT)

    chosen_labels = tuple(int(labels[index]) for index in chosen)
    return Selection(
        dataset=dataset,
        split=split,
        split_size=size,
        indices=tuple(chosen),
        labels=chosen_labels,
        class_names=tuple(class_names[label] for label in chosen_labels),
        seed=used_seed,
    )


def row_pairs(image: np.ndarray) -> np.ndarray:
    """A [H, W] uint8 image as [ceil(H/2), 2, W]: the top and bottom pixel of each text row."""
    pixels = np.asarray(image, dtype=np.uint8)
    if pixels.shape[0] % 2:
        pixels = np.vstack([pixels, np.zeros((1, pixels.shape[1]), dtype=np.uint8)])
    return pixels.reshape(pixels.shape[0] // 2, 2, pixels.shape[1])


def ascii_art(image: np.ndarray, *, ramp: str = ASCII_RAMP) -> list[str]:
    """A [H, W] uint8 image as ceil(H/2) lines of W characters from `ramp`, dark to bright."""
    # Text cells are about twice as tall as wide, so one character stands for two pixel rows.
    pairs = row_pairs(image).astype(np.float64)
    # The brighter of the two pixels, so a one-pixel-thin stroke still shows.
    levels = pairs.max(axis=1) / 255.0
    steps = np.clip(np.rint(levels * (len(ramp) - 1)), 0, len(ramp) - 1).astype(int)
    return ["".join(ramp[step] for step in row) for row in steps]
