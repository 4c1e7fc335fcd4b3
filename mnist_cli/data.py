"""The data sets, their expected files, and a strict reader for IDX files.

Pixels stay uint8 here; scaling to [0, 1] happens inside the compiled graph.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_cli.errors import DataError

IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
ROWS = COLS = 28
NUM_CLASSES = 10
_GZIP_MAGIC = b"\x1f\x8b"
_FIX = "run `mnist download --force` to fetch a good copy"


@dataclass(frozen=True)
class FileSpec:
    """One published file: its name, gz size and digests."""

    name: str
    size: int
    sha256: str
    decoded_sha256: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A data set: its files, the mirrors that serve them, and its class names."""

    name: str
    files: tuple[FileSpec, ...]
    mirrors: tuple[str, ...]
    class_names: tuple[str, ...]


TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
SPLIT_FILES = {"train": (TRAIN_IMAGES, TRAIN_LABELS), "test": (TEST_IMAGES, TEST_LABELS)}

DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        files=(
            FileSpec(TRAIN_IMAGES, 9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
            FileSpec(
                TRAIN_LABELS,
                28881,
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            ),
            FileSpec(
                TEST_IMAGES,
                1648877,
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            ),
            FileSpec(
                TEST_LABELS,
                4542,
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ),
        ),
        # The historic yann.lecun.com host answers 403/404 now, so it is not listed.
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "https://guild-pub.s3.amazonaws.com/mnist/",
        ),
        class_names=tuple(str(digit) for digit in range(10)),
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        files=(
            FileSpec(
                TRAIN_IMAGES,
                26421880,
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            ),
            FileSpec(
                TRAIN_LABELS,
                29515,
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            ),
            FileSpec(
                TEST_IMAGES,
                4422102,
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            ),
            FileSpec(
                TEST_LABELS,
                5148,
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            ),
        ),
        mirrors=(
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        ),
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
}


def dataset_spec(name: str) -> DatasetSpec:
    """The registry entry for a data set name."""
    try:
        return DATASETS[name]
    except KeyError:
        from mnist_cli.errors import UsageError

        raise UsageError(f"unknown data set {name!r}", f"choose one of {', '.join(DATASETS)}") from None


def default_data_dir() -> Path:
    """Where data lives unless `--data-dir` or MNIST_DATA_DIR says otherwise."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("mnist-cli")) / "data"


def dataset_dir(data_dir: Path | None, dataset: str) -> Path:
    """The folder holding one data set's four files."""
    return Path(data_dir or os.environ.get("MNIST_DATA_DIR") or default_data_dir()) / dataset


def missing_files(directory: Path, dataset: str) -> list[str]:
    """Names of the data set's files that are not in `directory`."""
    return [spec.name for spec in dataset_spec(dataset).files if not (Path(directory) / spec.name).is_file()]


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            head = handle.read(2)
            handle.seek(0)
            if head == _GZIP_MAGIC:
                with gzip.GzipFile(fileobj=handle) as unzipped:
                    return unzipped.read()
            return handle.read()
    except FileNotFoundError:
        raise DataError(f"{path} is missing", "run `mnist download` to fetch it") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, not an IDX file", "remove it and run `mnist download`") from None
    except PermissionError:
        # Exit 6 as documented for "no permission": the file may be fine, the access is not.
        from mnist_cli.errors import LocalIOError

        raise LocalIOError(f"{path} cannot be read: permission denied", "check the file's permissions") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path} is not a complete gzip file ({exc or 'truncated'})", _FIX) from None
    except OSError as exc:
        raise DataError(f"{path} cannot be read: {exc.strerror or exc}", _FIX) from None


def _header(data: bytes, path: Path, magic: int, ndim: int) -> tuple[int, ...]:
    header_size = 4 + 4 * ndim
    if len(data) < 4:
        raise DataError(f"{path} is too short to be an IDX file ({len(data)} bytes)", _FIX)
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataError(f"{path} has IDX magic number {found}, expected {magic}", _FIX)
    if len(data) < header_size:
        raise DataError(f"{path} is too short to be an IDX file ({len(data)} bytes)", _FIX)
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header_size + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        raise DataError(f"{path} holds {len(data)} bytes but its header promises {expected}", _FIX)
    return dims


def read_idx_images(path: Path) -> np.ndarray:
    """Read an IDX image file (gzip or raw) into a uint8 array of shape [N, 28, 28]."""
    path = Path(path)
    data = _read_bytes(path)
    count, rows, cols = _header(data, path, IMAGE_MAGIC, 3)
    if (rows, cols) != (ROWS, COLS):
        raise DataError(f"{path} holds {rows}x{cols} images, expected {ROWS}x{COLS}", _FIX)
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)


def read_idx_labels(path: Path) -> np.ndarray:
    """Read an IDX label file (gzip or raw) into a uint8 array of shape [N]."""
    path = Path(path)
    data = _read_bytes(path)
    (count,) = _header(data, path, LABEL_MAGIC, 1)
    labels = np.frombuffer(data, dtype=np.uint8, offset=8)
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
    from mnist_cli.fileio import atomic_write_bytes

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
