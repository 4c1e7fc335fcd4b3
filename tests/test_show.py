"""`mnist show`: which samples are drawn, how they look in a terminal and a pipe, and the PNG grid."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from mnist_cli.data import explore
from mnist_cli.cli.show import _spread_values, draw
from mnist_cli.data import DATASETS, load_split
from mnist_cli.core.errors import DOWNLOAD, USAGE, UsageError
from mnist_cli.report.pictures import digit_grid
from helpers import outcome, write_tiny_dataset

# The indices below were written for 600 training images (540 after validation: a remainder batch of 28).
pytestmark = pytest.mark.tiny_data(n_train=600)
FASHION = DATASETS["fashion-mnist"].class_names


def invoke(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return outcome("show", "--data-dir", str(data_dir), *args, env=env)


def show_json(data_dir: Path, *args: str) -> dict[str, Any]:
    code, out, err = invoke(data_dir, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def indices(payload: dict[str, Any]) -> list[int]:
    return [sample["index"] for sample in payload["samples"]]


def labels_of(payload: dict[str, Any]) -> list[int]:
    return [sample["label"] for sample in payload["samples"]]


def tiny_labels(data_dir: Path, split: str = "train") -> np.ndarray:
    return load_split(data_dir / "mnist", split)[1]


# --------------------------------------------------------------------------- choosing samples


def test_default_is_the_first_sample_of_each_class(tiny_data_dir: Path) -> None:
    labels = tiny_labels(tiny_data_dir)
    payload = show_json(tiny_data_dir)
    assert labels_of(payload) == list(range(10))
    assert indices(payload) == [int(np.flatnonzero(labels == digit)[0]) for digit in range(10)]
    assert [s["class_name"] for s in payload["samples"]] == [str(d) for d in range(10)]
    assert (payload["dataset"], payload["split"], payload["split_size"]) == ("mnist", "train", 600)
    assert payload["output"] is None and payload["seed"] is None


@pytest.mark.parametrize(
    "args",
    [
        ["--index", "5", "0", "7"],
        ["--index", "5", "--index", "0", "-i", "7"],
        ["--index=5", "0", "7"],
        ["-i", "5", "0", "7", "--json"],
    ],
)
def test_by_index_in_the_order_given(tiny_data_dir: Path, args: list[str]) -> None:
    labels = tiny_labels(tiny_data_dir)
    payload = show_json(tiny_data_dir, *args)
    assert indices(payload) == [5, 0, 7]
    assert labels_of(payload) == [int(labels[i]) for i in (5, 0, 7)]


def test_the_test_split_has_its_own_indices(tiny_data_dir: Path) -> None:
    labels = tiny_labels(tiny_data_dir, "test")
    payload = show_json(tiny_data_dir, "--split", "test", "--index", "199")
    assert labels_of(payload) == [int(labels[199])] and payload["split_size"] == 200
    code, _, err = invoke(tiny_data_dir, "--split", "test", "--index", "200")
    assert code == USAGE and "the test split has 200 images (0 to 199)" in err


def test_by_class_in_file_order_spread_over_the_classes(tiny_data_dir: Path) -> None:
    labels = tiny_labels(tiny_data_dir)
    threes, fives = np.flatnonzero(labels == 3), np.flatnonzero(labels == 5)
    payload = show_json(tiny_data_dir, "--class", "3", "--count", "4")
    assert indices(payload) == threes[:4].tolist()
    payload = show_json(tiny_data_dir, "-c", "3", "5", "-n", "5")
    assert indices(payload) == [threes[0], fives[0], threes[1], fives[1], threes[2]]
    assert len(show_json(tiny_data_dir, "--class", "7")["samples"]) == explore.DEFAULT_COUNT


def test_fashion_classes_by_name(tmp_path: Path) -> None:
    write_tiny_dataset(tmp_path / "fashion-mnist", n_train=300)
    payload = show_json(tmp_path, "--dataset", "fashion-mnist", "--class", "Ankle Boot", "sandal", "tshirt", "-n", "3")
    assert labels_of(payload) == [9, 5, 0]
    assert [s["class_name"] for s in payload["samples"]] == ["Ankle boot", "Sandal", "T-shirt/top"]
    code, out, _ = invoke(tmp_path, "--dataset", "fashion-mnist", "--class", "ankle-boot", "-n", "1")
    assert code == 0 and "Ankle boot" in out


def test_random_with_a_seed_is_repeatable(tiny_data_dir: Path) -> None:
    first = show_json(tiny_data_dir, "--random", "8", "--seed", "42")
    again = show_json(tiny_data_dir, "--random", "8", "--seed", "42")
    other = show_json(tiny_data_dir, "--random", "8", "--seed", "43")
    assert indices(first) == indices(again) != indices(other)
    assert first["seed"] == 42 and len(set(indices(first))) == 8
    # Drawn without replacement: asking for all of them shows each image once.
    assert sorted(indices(show_json(tiny_data_dir, "--random", "600", "--seed", "0"))) == list(range(600))
    # Without --seed a fresh one is used and reported, and it shows the same samples again.
    unseeded = show_json(tiny_data_dir, "--random", "5")
    assert indices(show_json(tiny_data_dir, "--random", "5", "--seed", str(unseeded["seed"]))) == indices(unseeded)
    code, out, _ = invoke(tiny_data_dir, "--random", "3", "--seed", "7")
    assert code == 0 and "--seed 7" in out


def test_random_within_classes(tiny_data_dir: Path) -> None:
    payload = show_json(tiny_data_dir, "--class", "2", "4", "--random", "6", "--seed", "1")
    assert set(labels_of(payload)) <= {2, 4} and len(payload["samples"]) == 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--index", "600"], "--index 600 is out of range: the train split has 600 images (0 to 599)"),
        (["--index", "3", "-1"], "--index -1 is out of range"),
        (["--class", "11"], "unknown class '11'"),
        (["--class", "s"], "unknown class 's'"),
        (["--index", "1", "--class", "2"], "--index cannot be combined with --class or --random"),
        (["--random", "601"], "--random 601 is more than the 600 images"),
        (["--random", "2", "--count", "3"], "--random and --count both say how many"),
        (["--seed", "3"], "--seed needs --random"),
        (["--count", "0"], "--count must be >= 1"),
    ],
)
def test_bad_choices_are_one_line_usage_errors(tiny_data_dir: Path, args: list[str], message: str) -> None:
    code, out, err = invoke(tiny_data_dir, *args)
    assert code == USAGE and out == ""
    first, *rest = err.splitlines()
    assert first == f"error: {first.removeprefix('error: ')}" and message in first
    assert all(line.startswith("hint:") for line in rest)


def test_parse_class_accepts_labels_names_and_unique_prefixes() -> None:
    assert explore.parse_class("7", FASHION) == 7
    assert explore.parse_class("ANKLE_BOOT", FASHION) == 9
    assert explore.parse_class("pull", FASHION) == 2
    assert explore.parse_class("sh", FASHION) == 6  # Shirt: the only name starting "sh"
    with pytest.raises(UsageError) as caught:
        explore.parse_class("s", FASHION)  # Sandal, Shirt or Sneaker
    assert "Sandal" in (caught.value.hint or "")


def test_missing_data_is_fetched_first_and_a_failed_fetch_is_one_line(tmp_path: Path) -> None:
    empty_mirror = tmp_path / "mirror"
    empty_mirror.mkdir()
    code, out, err = invoke(tmp_path / "data", env={"MNIST_MIRROR": str(empty_mirror)})
    assert code == DOWNLOAD and out == ""
    assert "error: could not download train-images-idx3-ubyte.gz" in err


# --------------------------------------------------------------------------- drawing


def _bar_rows(label: int) -> tuple[int, int]:
    # conftest draws each class as a bright bar on pixel rows 3 + 2 * label and the next one.
    return (3 + 2 * label) // 2, (4 + 2 * label) // 2


def test_piped_output_is_ascii_art_of_the_image(tiny_data_dir: Path) -> None:
    labels = tiny_labels(tiny_data_dir)
    code, out, _ = invoke(tiny_data_dir, "--index", "0", "1")
    assert code == 0 and "\x1b[" not in out
    lines = out.splitlines()
    assert lines[0] == "mnist train split: 2 of 600 images"
    assert lines[1].split() == ["#0", str(labels[0]), "#1", str(labels[1])]
    art = lines[2:]
    assert len(art) == 14 and all(len(line) <= 28 + 2 + 28 for line in art)
    assert set("".join(art)) <= set(explore.ASCII_RAMP)
    for column, label in ((0, int(labels[0])), (30, int(labels[1]))):
        for row in range(14):
            tile = art[row][column : column + 28].ljust(28)
            bar = row in _bar_rows(label)
            assert (tile[4:24] == "@" * 20) is bar, (row, tile)


def test_tiles_wrap_to_the_console_width() -> None:
    images = np.zeros((5, 28, 28), dtype=np.uint8)
    selection = explore.Selection("mnist", "train", 5, (0, 1, 2, 3, 4), (0, 1, 2, 3, 4), tuple("01234"))
    buffer = io.StringIO()
    draw(Console(file=buffer, width=90, color_system=None), images, selection)
    captions = [line for line in buffer.getvalue().splitlines() if line.startswith("#")]
    assert [line.split()[::2] for line in captions] == [["#0", "#1", "#2"], ["#3", "#4"]]


def test_a_colour_terminal_gets_half_blocks_in_grey() -> None:
    image = np.zeros((28, 28), dtype=np.uint8)
    image[0, :] = 255  # top pixel row white: the first text row is white over black
    image[1, :] = 128
    selection = explore.Selection("mnist", "train", 1, (3,), (7,), ("7",))
    buffer = io.StringIO()
    draw(Console(file=buffer, width=80, force_terminal=True, color_system="truecolor"), image[None], selection)
    text = buffer.getvalue()
    assert text.count("\u2580") == 28 * 14
    assert "38;2;255;255;255;48;2;128;128;128m" in text  # foreground = top pixel, background = bottom pixel
    assert "38;2;0;0;0;48;2;0;0;0m" in text
    assert "@" not in text and "#3 7" in text


def test_ascii_art_halves_the_rows() -> None:
    image = np.zeros((28, 28), dtype=np.uint8)
    image[27, 0] = 255  # one bright pixel on the last row still shows
    art = explore.ascii_art(image)
    assert len(art) == 14 and {len(line) for line in art} == {28}
    assert art[13][0] == "@" and art[13][1:] == " " * 27


# --------------------------------------------------------------------------- PNG grid


def test_output_writes_a_captioned_grid_of_the_samples(tiny_data_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "out" / "grid.png"
    payload = show_json(tiny_data_dir, "--index", "0", "1", "2", "--output", str(target))
    assert payload["output"] == str(target)
    with Image.open(target) as picture:
        size = picture.size
        pixels = np.asarray(picture.convert("L"))
    images = load_split(tiny_data_dir / "mnist", "train")[0][[0, 1, 2]]
    captions = [f"{s['class_name']}\n#{s['index']}" for s in payload["samples"]]
    assert size == digit_grid(images, captions=captions, columns=10, title="mnist train").size
    assert size[0] == 3 * 28 * 3 + 4 * 6  # three tiles of 28 pixels scaled 3x, gaps of 6
    assert (pixels < 128).sum() > 3 * 28 * 28  # the digits' black backgrounds are there


def test_output_without_json_says_where(tiny_data_dir: Path, tmp_path: Path) -> None:
    code, out, _ = invoke(tiny_data_dir, "-o", str(tmp_path / "g.png"))
    assert code == 0 and out.splitlines()[-1] == f"saved 10 samples to {tmp_path / 'g.png'}"
    assert (tmp_path / "g.png").stat().st_size > 0


# --------------------------------------------------------------------------- odds and ends


def test_spread_values_keeps_other_options_and_separators() -> None:
    assert _spread_values(["-i", "1", "2", "--json", "-c", "a", "b", "-n", "3"]) == [
        "-i", "1", "-i", "2", "--json", "-c", "a", "-c", "b", "-n", "3",
    ]  # fmt: skip
    assert _spread_values(["--index=4", "5", "--", "6"]) == ["--index=4", "--index", "5", "--", "6"]


def test_real_mnist_first_training_image_is_a_five(real_mnist_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "mnist").symlink_to(real_mnist_dir, target_is_directory=True)
    assert labels_of(show_json(tmp_path, "--index", "0")) == [5]
    assert labels_of(show_json(tmp_path, "--split", "test", "--index", "0")) == [7]


def test_show_does_not_import_tensorflow() -> None:
    code = "import sys, mnist_cli.cli.show, mnist_cli.data.explore; print('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_default_count_in_the_help_matches_the_library() -> None:
    from mnist_cli.cli.show import CountOption

    assert f"default: {explore.DEFAULT_COUNT}]" in CountOption.__metadata__[0].help
