"""`mnist predict`: files, folders and standard input, failures that do not stop the rest, --show, and real pictures."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

import pictures
from helpers import bar_digit, invoke
from mnist_cli.inference import loading, predict
from mnist_cli.data import DATASETS, load_split
from mnist_cli.core.errors import INPUT, MODEL, USAGE


@pytest.fixture(scope="module")
def run(tiny_run: Path) -> Path:
    """A run that reads the tiny data set's digits (a bar at row 3 + 2 * label) perfectly."""
    assert json.loads((tiny_run / "result.json").read_text())["test_accuracy"] == 1.0
    return tiny_run


def png_bytes(image: np.ndarray) -> bytes:
    return pictures.encode(Image.fromarray(image), "PNG")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    directory = tmp_path / "digits"
    directory.mkdir()
    for label in range(10):
        (directory / f"digit-{label}.png").write_bytes(png_bytes(bar_digit(label)))
    (directory / "notes.txt").write_text("not a picture, and not picked up from a folder")
    return directory


def predict_json(*args: str, input: bytes | None = None, code: int = 0) -> list[dict[str, Any]]:
    result = invoke("predict", *args, "--json", input=input)
    assert result.exit_code == code, result.stderr
    return json.loads(result.stdout)  # nothing else on standard output


# --------------------------------------------------------------------------- inputs


def test_files_folders_and_standard_input_are_all_read(run: Path, folder: Path) -> None:
    from_folder = predict_json(str(folder), "--checkpoint", str(run))
    assert [Path(entry["path"]).name for entry in from_folder] == [f"digit-{label}.png" for label in range(10)]
    assert [entry["prediction"] for entry in from_folder] == list(range(10))
    for entry in from_folder:
        probabilities = entry["probabilities"]
        assert len(probabilities) == 10 and sum(probabilities) == pytest.approx(1.0, abs=1e-5)
        assert entry["probability"] == max(probabilities)
        assert [item["class"] for item in entry["top_k"]][0] == entry["prediction"] and len(entry["top_k"]) == 3
        assert [item["probability"] for item in entry["top_k"]] == sorted(probabilities, reverse=True)[:3]

    files = [str(folder / f"digit-{label}.png") for label in (9, 2)]
    from_files = predict_json(*files, "--checkpoint", str(run), "--top-k", "1")
    assert [entry["path"] for entry in from_files] == files and [entry["prediction"] for entry in from_files] == [9, 2]
    assert len(from_files[0]["top_k"]) == 1

    from_stdin = predict_json("-", "--checkpoint", str(run), input=(folder / "digit-7.png").read_bytes())
    assert from_stdin[0]["path"] == "-" and from_stdin[0]["prediction"] == 7
    assert from_stdin[0]["probabilities"] == pytest.approx(from_folder[7]["probabilities"], abs=1e-6)


def test_a_bad_picture_gets_its_own_error_and_the_others_are_still_read(run: Path, folder: Path, tmp_path: Path) -> None:
    (folder / "broken.png").write_bytes(b"this is not a PNG at all")
    good = (folder / "digit-3.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    Image.new("1", (7000, 7000)).save(folder / "bomb.png")  # 49 megapixels in a few kilobytes
    (tmp_path / "empty").mkdir()
    args = [str(folder), str(tmp_path / "missing.png"), str(tmp_path / "empty")]
    result = invoke("predict", *args, "--checkpoint", str(run), "--json")
    assert result.exit_code == INPUT
    entries = json.loads(result.stdout)
    failed = {Path(entry["path"]).name: entry["error"] for entry in entries if "error" in entry}
    assert set(failed) == {"bomb.png", "broken.png", "truncated.png", "missing.png", "empty"}
    assert "megapixels" in failed["bomb.png"] and "does not exist" in failed["missing.png"]
    read = {Path(entry["path"]).name: entry["prediction"] for entry in entries if "error" not in entry}
    assert read == {f"digit-{label}.png": label for label in range(10)}
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 5 and all(any(name in line for line in errors) for name in failed)
    assert "5 of 15 pictures could not be read" in result.stderr

    plain = invoke("predict", *args, "--checkpoint", str(run))
    assert plain.exit_code == INPUT and "digit-9.png" in plain.stdout and "broken.png" not in plain.stdout


def test_plain_output_lists_each_picture_with_its_digit_and_probability(
    run: Path, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(folder)
    expected = predict_json("digit-4.png", "--checkpoint", str(run))[0]
    result = invoke("predict", "digit-4.png", "--checkpoint", str(run))
    assert result.exit_code == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "digit-4.png" in line).split()
    assert row[1] == "4" and row[2] == f"{expected['probability']:.1%}"
    second = expected["top_k"][1]
    assert f"{second['name']} {second['probability']:.1%}" in result.stdout


def test_show_draws_the_digit_the_network_saw_beside_its_probabilities(run: Path, folder: Path) -> None:
    result = invoke("predict", str(folder / "digit-3.png"), "--checkpoint", str(run), "--show")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    # In a pipe the digit is ASCII art: rows 9 and 10 of the bar are text rows 4 and 5 (two pixel rows per line).
    drawing = [line[:28] for line in lines[1:15]]
    assert drawing[4] == drawing[5] == " " * 4 + "@" * 20 + " " * 4
    assert all(row.strip() == "" for index, row in enumerate(drawing) if index not in (4, 5))
    bars = {line[31:].split()[0]: line[31:] for line in lines[1:15] if line[31:].strip()}
    assert sorted(bars) == [str(digit) for digit in range(10)]
    probability = predict_json(str(folder / "digit-3.png"), "--checkpoint", str(run))[0]["probability"]
    assert bars["3"].count("#") == round(probability * 24) and bars["3"].rstrip().endswith(f"{probability:.1%}")


def test_show_uses_grey_half_blocks_on_a_colour_terminal(run: Path) -> None:
    from mnist_cli.cli import predict as command

    loaded = loading.load(run)
    (prediction,) = predict.predict_pictures(loaded, [predict.Picture("three.png", png_bytes(bar_digit(3)))])
    console = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor", width=100)
    command.draw(console, prediction, top_k=3)
    text = console.file.getvalue()
    assert text.count("▀") == 28 * 14
    assert "38;2;255;255;255" in text and "48;2;0;0;0" in text  # white ink over black, as foreground/background
    assert "█" in text and "three.png" in text


def test_a_squared_error_model_gives_sure_digits_a_high_probability(run: Path, folder: Path) -> None:
    # The walk-through's --loss mse outputs estimate the probabilities themselves; their
    # softmax would show 12-14% for these digits, which this model reads perfectly (measured).
    entries = predict_json(str(folder), "--checkpoint", str(run))
    assert json.loads((run / "config.json").read_text())["loss"] == "mse"
    assert min(entry["probability"] for entry in entries) > 0.25
    assert all(min(entry["probabilities"]) >= 0 for entry in entries)
    xent = predict.probabilities(np.array([[2.0, 0.0, -1.0]]), loss="xent")
    np.testing.assert_allclose(xent, np.exp([[2.0, 0.0, -1.0]]) / np.exp([2.0, 0.0, -1.0]).sum())
    mse = predict.probabilities(np.array([[0.9, 0.3, -0.2], [-0.1, -0.3, -0.2]]), loss="mse")
    np.testing.assert_allclose(mse[0], [0.75, 0.25, 0.0])
    assert mse[1].argmax() == 0 and mse[1].sum() == pytest.approx(1.0)


def test_fashion_mnist_runs_print_class_names(run: Path, folder: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(run, tmp_path / "fashion")
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "dataset": "fashion-mnist"}))
    entry = predict_json(str(folder / "digit-1.png"), "--checkpoint", str(copy))[0]
    assert entry["prediction"] == 1 and entry["name"] == DATASETS["fashion-mnist"].class_names[1] == "Trouser"
    result = invoke("predict", str(folder / "digit-1.png"), "--checkpoint", str(copy))
    assert "Trouser" in result.stdout


def test_default_model_is_the_most_recent_run(run: Path, folder: Path, tmp_path: Path) -> None:
    shutil.copytree(run, tmp_path / "runs" / "only")
    result = invoke("predict", str(folder / "digit-5.png"), "--json", env={"MNIST_RUNS_DIR": str(tmp_path / "runs")})
    assert result.exit_code == 0 and json.loads(result.stdout)[0]["prediction"] == 5
    assert predict_json(str(folder / "digit-6.png"), "--runs-root", str(tmp_path / "runs"))[0]["prediction"] == 6
    empty = invoke("predict", str(folder / "digit-6.png"), "--runs-root", str(tmp_path / "none"))
    assert empty.exit_code == MODEL and empty.stdout == "" and "no runs in" in empty.stderr


def test_bad_options_and_targets(run: Path, folder: Path, tmp_path: Path) -> None:
    assert invoke("predict", str(folder), "--checkpoint", str(run), "--top-k", "11").exit_code == USAGE
    assert invoke("predict", "--checkpoint", str(run)).exit_code == USAGE  # no picture given
    bad = invoke("predict", str(folder), "--checkpoint", str(tmp_path / "nowhere"), "--json")
    assert bad.exit_code == MODEL and bad.stdout == "" and "does not exist" in bad.stderr


def test_predict_step_traces_once_across_batch_sizes(run: Path) -> None:
    loaded = loading.load(run)
    for count, batch_size in ((3, 256), (11, 4), (1, 256)):
        items = [predict.Picture(f"{index}.png", png_bytes(bar_digit(index % 10))) for index in range(count)]
        results = predict.predict_pictures(loaded, items, batch_size=batch_size)
        assert [result.prediction for result in results] == [index % 10 for index in range(count)]
    assert loaded.predict_step.experimental_get_tracing_count() == 1


# --------------------------------------------------------------------------- real pictures, end to end

# Measured with this recipe (2 epochs of the convnet on the 10,000 real training digits):
# 96.9% on the MNIST test set, 98.5% on the first 200 test digits, 97.5% on the same 200
# digits drawn as pictures, and 8 of 10 typed digits (DejaVu Sans "1" reads as 2, "6" as 5).
TYPED_FLOOR = 7
PHOTO_FLOOR = 0.9


@pytest.mark.slow
def test_pictures_people_make_are_read_about_as_well_as_mnist(real_mnist_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "mnist").symlink_to(real_mnist_dir, target_is_directory=True)
    run_dir = tmp_path / "cnn"
    trained = invoke(
        "train", "--data-dir", str(data_dir), "--run-dir", str(run_dir), "--model", "cnn", "--loss", "xent",
        "--optimizer", "adam", "--lr", "0.001", "--epochs", "2", "--batch-size", "64", "--json", "--quiet",
    )  # fmt: skip
    assert trained.exit_code == 0, trained.stderr
    test_accuracy = json.loads(trained.stdout)["test_accuracy"]
    assert test_accuracy > 0.95

    images, labels = load_split(real_mnist_dir, "test")
    count = 200
    makers = list(pictures.VARIANTS.items())
    folder = tmp_path / "pictures"
    folder.mkdir()
    for index in range(count):
        name, make = makers[index % len(makers)]  # 25 of each kind
        picture = make(images[index], seed=index)
        fmt = "JPEG" if picture.mode == "CMYK" else "PNG"
        picture.save(folder / f"{index:03d}-{name}.{fmt.lower()}", format=fmt)
    entries = predict_json(str(folder), "--checkpoint", str(run_dir))
    assert len(entries) == count and not any("error" in entry for entry in entries)
    predicted = np.array([entry["prediction"] for entry in entries])
    picture_accuracy = float((predicted == labels[:count]).mean())

    originals = predict_json(*[_save(folder.parent / "raw", index, images[index]) for index in range(count)], "--checkpoint", str(run_dir))
    same_digits_accuracy = float((np.array([entry["prediction"] for entry in originals]) == labels[:count]).mean())
    # The pictures lose at most a few points against the same digits as MNIST gives them,
    # and against the model's accuracy on the whole test set.
    assert picture_accuracy >= same_digits_accuracy - 0.03, (picture_accuracy, same_digits_accuracy)
    assert picture_accuracy >= test_accuracy - 0.03, (picture_accuracy, test_accuracy)

    # The pictures that worked before photographs of paper were handled stay at 95% or better.
    assert picture_accuracy >= 0.95, picture_accuracy

    # Photographs of paper (issue 13): 50 each of uneven light, ruled and squared paper, the
    # first 150 test digits. Measured: uneven light 97.3%, ruled 95.3%, squared 92-98% over
    # 60-150 digits (the 4 of the first 150 misread here are misread as MNIST images too).
    photos = tmp_path / "photos"
    photos.mkdir()
    kinds = list(pictures.PHOTO_VARIANTS.items())
    for index in range(150):
        name, make = kinds[index % len(kinds)]
        make(images[index], seed=index).save(photos / f"{index:03d}-{name}.png")
    entries = predict_json(str(photos), "--checkpoint", str(run_dir))
    assert not any("error" in entry for entry in entries), [entry for entry in entries if "error" in entry][:3]
    for k, (name, _) in enumerate(kinds):
        read = np.array([entry["prediction"] for entry in entries[k :: len(kinds)]])
        rate = float((read == labels[:150][k :: len(kinds)]).mean())
        assert rate >= PHOTO_FLOOR, (name, rate)

    typed = tmp_path / "typed"
    typed.mkdir()
    for digit in range(10):
        pictures.typed_digit(digit, seed=digit).save(typed / f"{digit}.png")
    read = [entry["prediction"] for entry in predict_json(str(typed), "--checkpoint", str(run_dir))]
    assert sum(prediction == digit for digit, prediction in enumerate(read)) >= TYPED_FLOOR, read


def _save(directory: Path, index: int, image: np.ndarray) -> str:
    directory.mkdir(exist_ok=True)
    path = directory / f"{index:03d}.png"
    Image.fromarray(image).save(path)
    return str(path)
