"""The strict IDX reader: good files load as uint8, bad files give one clear DataError."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from mnist_cli.data import (
    TRAIN_IMAGES,
    TRAIN_LABELS,
    dataset_dir,
    default_data_dir,
    load_split,
    missing_files,
    read_idx_images,
    read_idx_labels,
    write_idx,
)
from mnist_cli.core.errors import DataError


def _images(n: int = 5) -> np.ndarray:
    return np.arange(n * 784, dtype=np.int64).reshape(n, 28, 28).astype(np.uint8)


@pytest.mark.parametrize("compress", [True, False])
def test_round_trip_keeps_uint8_pixels(tmp_path: Path, compress: bool) -> None:
    write_idx(tmp_path / "i", _images(), compress=compress)
    write_idx(tmp_path / "l", np.array([0, 1, 2, 9, 3], dtype=np.uint8), compress=compress)
    images = read_idx_images(tmp_path / "i")
    assert images.dtype == np.uint8 and images.shape == (5, 28, 28)
    np.testing.assert_array_equal(images, _images())
    np.testing.assert_array_equal(read_idx_labels(tmp_path / "l"), [0, 1, 2, 9, 3])


def _raw(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims) + payload


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "too short"),
        (_raw(2049, (5,), bytes(5)), "magic number 2049, expected 2051"),
        (_raw(2051, (2, 32, 32), bytes(2 * 32 * 32)), "32x32 images"),
        (_raw(2051, (2, 28, 28), bytes(784)), "header promises"),
        (_raw(2051, (1, 28, 28), bytes(785)), "header promises"),
    ],
)
def test_bad_image_files_name_the_file_and_the_fix(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / TRAIN_IMAGES
    path.write_bytes(gzip.compress(content))
    with pytest.raises(DataError) as info:
        read_idx_images(path)
    assert message in info.value.message
    assert str(path) in info.value.message
    assert "mnist download --force" in (info.value.hint or "")


def test_truncated_gzip_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / TRAIN_IMAGES
    write_idx(path, _images())
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DataError, match="not a complete gzip file"):
        read_idx_images(path)


def test_gzip_with_bad_crc_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / TRAIN_IMAGES
    write_idx(path, _images())
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # the CRC32 of the gzip trailer
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="not a complete gzip file"):
        read_idx_images(path)


def test_label_out_of_range_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / TRAIN_LABELS
    write_idx(path, np.array([1, 10], dtype=np.uint8))
    with pytest.raises(DataError, match="label 10"):
        read_idx_labels(path)


def test_missing_file_and_directory_in_its_place(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is missing"):
        read_idx_images(tmp_path / TRAIN_IMAGES)
    (tmp_path / TRAIN_IMAGES).mkdir()
    with pytest.raises(DataError, match="is a directory"):
        read_idx_images(tmp_path / TRAIN_IMAGES)


def test_count_mismatch_between_images_and_labels(tmp_path: Path) -> None:
    write_idx(tmp_path / TRAIN_IMAGES, _images(5))
    write_idx(tmp_path / TRAIN_LABELS, np.zeros(4, dtype=np.uint8))
    with pytest.raises(DataError, match="5 images but .* 4 labels"):
        load_split(tmp_path, "train")


def test_dataset_dir_takes_the_argument_and_leaves_the_environment_to_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path / "env"))
    assert dataset_dir(None, "mnist") == default_data_dir() / "mnist"
    assert dataset_dir(tmp_path / "arg", "fashion-mnist") == tmp_path / "arg" / "fashion-mnist"
    assert missing_files(tmp_path, "mnist") == [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]


def test_real_mnist_loads(real_mnist_dir: Path) -> None:
    images, labels = load_split(real_mnist_dir, "test")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert np.bincount(labels).tolist()[:2] == [980, 1135]


def test_every_dataset_choice_has_files_and_mirrors() -> None:
    from mnist_cli.core.config import DATASET_NAMES
    from mnist_cli.data import DATASETS

    # A --dataset the config accepts but the registry does not know would fail only at download.
    assert tuple(DATASETS) == DATASET_NAMES
    assert all(spec.files and spec.mirrors for spec in DATASETS.values())
