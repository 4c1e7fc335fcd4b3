"""A strict reader (and writer) for IDX files, and the train/validation/test splits.

Pixels stay uint8 here; scaling to [0, 1] happens inside the compiled graph.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mnist_cli.core.errors import DataError
from mnist_cli.data.registry import COLS, NUM_CLASSES, ROWS, SPLIT_FILES, dataset_spec

IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
_GZIP_MAGIC = b"\x1f\x8b"
_FIX = "run `mnist download --force` to fetch a good copy"


# The largest file the header may promise: full MNIST's training images are 47 MB, and a
# header claiming more than this is a decompression bomb or garbage, refused unread.
MAX_IDX_BYTES = 1 << 30


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[BinaryIO]:
    """The file's decompressed stream, for reading bit by bit; errors become one DataError line."""
    from mnist_cli.core.safeio import UnsafeFile, open_regular

    try:
        with open_regular(path) as handle:
            head = handle.read(2)
            handle.seek(0)
            if head == _GZIP_MAGIC:
                with gzip.GzipFile(fileobj=handle) as unzipped:
                    yield unzipped
            else:
                yield handle
    except FileNotFoundError:
        raise DataError(f"{path} is missing", "run `mnist download` to fetch it") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, not an IDX file", "remove it and run `mnist download`") from None
    except UnsafeFile as exc:
        raise DataError(f"{path} {exc}", "remove it and run `mnist download`") from None
    except PermissionError:
        # Exit 6 as documented for "no permission": the file may be fine, the access is not.
        from mnist_cli.core.errors import LocalIOError

        raise LocalIOError(f"{path} cannot be read: permission denied", "check the file's permissions") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path} is not a complete gzip file ({exc or 'truncated'})", _FIX) from None
    except OSError as exc:
        raise DataError(f"{path} cannot be read: {exc.strerror or exc}", _FIX) from None


def _read_idx(path: Path, magic: int, ndim: int) -> tuple[tuple[int, ...], bytes]:
    """The dimensions and payload of an IDX file, checked from its header before the payload is read."""
    header_size = 4 + 4 * ndim
    with _opened(path) as stream:
        header = stream.read(header_size)
        if len(header) < 4:
            raise DataError(f"{path} is too short to be an IDX file ({len(header)} bytes)", _FIX)
        found = int.from_bytes(header[:4], "big")
        if found != magic:
            raise DataError(f"{path} has IDX magic number {found}, expected {magic}", _FIX)
        if len(header) < header_size:
            raise DataError(f"{path} is too short to be an IDX file ({len(header)} bytes)", _FIX)
        dims = tuple(int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
        if ndim == 3 and dims[1:] != (ROWS, COLS):
            raise DataError(f"{path} holds {dims[1]}x{dims[2]} images, expected {ROWS}x{COLS}", _FIX)
        body_size = math.prod(dims)
        expected = header_size + body_size
        if body_size > MAX_IDX_BYTES:
            raise DataError(f"{path}'s header promises {expected:,} bytes, more than any MNIST-style file", _FIX)
        # One byte past the promise tells "too long" from "exact" without decompressing a bomb.
        body = stream.read(body_size + 1)
        if len(body) > body_size:
            raise DataError(f"{path} holds more bytes than its header promises ({expected})", _FIX)
        if len(body) < body_size:
            raise DataError(f"{path} holds {header_size + len(body)} bytes but its header promises {expected}", _FIX)
    return dims, body


def read_idx_images(path: Path) -> np.ndarray:
    """Read an IDX image file (gzip or raw) into a uint8 array of shape [N, 28, 28]."""
    path = Path(path)
    (count, rows, cols), body = _read_idx(path, IMAGE_MAGIC, 3)
    return np.frombuffer(body, dtype=np.uint8).reshape(count, rows, cols)


def read_idx_labels(path: Path) -> np.ndarray:
    """Read an IDX label file (gzip or raw) into a uint8 array of shape [N]."""
    path = Path(path)
    (count,), body = _read_idx(path, LABEL_MAGIC, 1)
    labels = np.frombuffer(body, dtype=np.uint8)
    if count and int(labels.max()) >= NUM_CLASSES:
        raise DataError(f"{path} has label {int(labels.max())}, expected 0 to {NUM_CLASSES - 1}", _FIX)
    return labels


def load_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load the `train` or `test` split from a data set folder as (images, labels)."""
    images_name, labels_name = SPLIT_FILES[split]
    images = read_idx_images(Path(directory) / images_name)
    labels = read_idx_labels(Path(directory) / labels_name)
    if len(images) != len(labels):
        raise DataError(
            f"{directory}: {images_name} has {len(images)} images but {labels_name} has {len(labels)} labels",
            _FIX,
        )
    return images, labels


def write_idx(path: Path, array: np.ndarray, *, compress: bool = True) -> None:
    """Write a uint8 array as an IDX file: images [N, 28, 28] or labels [N]."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = IMAGE_MAGIC if array.ndim == 3 else LABEL_MAGIC
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.tobytes()
    from mnist_cli.core.fileio import atomic_write_bytes

    atomic_write_bytes(Path(path), gzip.compress(payload, mtime=0) if compress else payload)


@dataclass(frozen=True, eq=False)
class Splits:
    """A data set in memory as uint8 arrays: train, validation (maybe empty) and test."""

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The (images, labels) of `train`, `val` or `test`."""
        prefix = {"train": "train", "val": "val", "test": "test"}[name]
        return getattr(self, f"{prefix}_images"), getattr(self, f"{prefix}_labels")


def load_splits(directory: Path, *, dataset: str, val_split: float, seed: int) -> Splits:
    """Load a data set folder and hold out `val_split` of the training split, chosen by `seed`."""
    train_images, train_labels = load_split(directory, "train")
    test_images, test_labels = load_split(directory, "test")
    # A fixed permutation of the training split decides the held-out part, so a run,
    # its resumption and `mnist evaluate --split val` all see the same validation set.
    order = np.random.default_rng(seed).permutation(len(train_images))
    held_out = int(round(len(train_images) * val_split))
    if val_split > 0 and held_out == 0 and len(train_images) > 1:
        held_out = 1
    val_index, train_index = np.sort(order[:held_out]), np.sort(order[held_out:])
    return Splits(
        train_images=train_images[train_index],
        train_labels=train_labels[train_index],
        val_images=train_images[val_index],
        val_labels=train_labels[val_index],
        test_images=test_images,
        test_labels=test_labels,
        class_names=dataset_spec(dataset).class_names,
    )
