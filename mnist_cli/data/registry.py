"""The data sets: their published files, mirrors, digests and class names, and where they live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROWS = COLS = 28
NUM_CLASSES = 10


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
# What `mnist evaluate --split` scores: the published splits, and a run's own validation share of train.
EVAL_SPLITS = ("test", "train", "val")

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
        from mnist_cli.core.errors import UsageError

        raise UsageError(f"unknown data set {name!r}", f"choose one of {', '.join(DATASETS)}") from None


def default_data_dir() -> Path:
    """Where data lives unless `--data-dir` or MNIST_DATA_DIR says otherwise."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("mnist-cli")) / "data"


def dataset_dir(data_dir: Path | None, dataset: str) -> Path:
    """The folder holding one data set's four files: under `data_dir`, else the user cache (the CLI reads $MNIST_DATA_DIR)."""
    return Path(data_dir or default_data_dir()) / dataset


def missing_files(directory: Path, dataset: str) -> list[str]:
    """Names of the data set's files that are not in `directory`."""
    return [spec.name for spec in dataset_spec(dataset).files if not (Path(directory) / spec.name).is_file()]


