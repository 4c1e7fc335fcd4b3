"""Data sets: the registry of published files, the strict IDX reader, downloading, exploring samples.

The registry's names are re-exported here; the reader's are too, but loaded on first
use, so that importing the registry (which `mnist --help` does) does not import numpy.
"""

from __future__ import annotations

from typing import Any

from mnist_cli.data.registry import (
    COLS,
    DATASETS,
    EVAL_SPLITS,
    NUM_CLASSES,
    ROWS,
    SPLIT_FILES,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    DatasetSpec,
    FileSpec,
    dataset_dir,
    dataset_spec,
    default_data_dir,
    missing_files,
)

_READER = ("Splits", "load_split", "load_splits", "read_idx_images", "read_idx_labels", "write_idx")

__all__ = [
    "COLS", "DATASETS", "EVAL_SPLITS", "NUM_CLASSES", "ROWS", "SPLIT_FILES", "TEST_IMAGES", "TEST_LABELS",
    "TRAIN_IMAGES", "TRAIN_LABELS", "DatasetSpec", "FileSpec", "dataset_dir", "dataset_spec", "default_data_dir",
    "missing_files", *_READER,
]


def __getattr__(name: str) -> Any:
    if name in _READER:
        from mnist_cli.data import idx

        return getattr(idx, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
