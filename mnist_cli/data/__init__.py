"""Data sets: the registry of published files, the strict IDX reader, downloading, exploring samples."""

from mnist_cli.data.idx import Splits, load_split, load_splits, read_idx_images, read_idx_labels, write_idx
from mnist_cli.data.registry import (
    COLS,
    DATASETS,
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

__all__ = [
    "COLS", "DATASETS", "NUM_CLASSES", "ROWS", "SPLIT_FILES", "TEST_IMAGES", "TEST_LABELS", "TRAIN_IMAGES",
    "TRAIN_LABELS", "DatasetSpec", "FileSpec", "Splits", "dataset_dir", "dataset_spec", "default_data_dir",
    "load_split", "load_splits", "missing_files", "read_idx_images", "read_idx_labels", "write_idx",
]
