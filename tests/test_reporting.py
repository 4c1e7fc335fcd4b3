"""Metrics and report pictures: numbers a user can check by hand, pictures laid out where expected."""

from __future__ import annotations

import errno
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_cli.report import metrics as report_metrics
from mnist_cli.report import text
from mnist_cli.data import DATASETS
from mnist_cli.core.errors import LOCAL_IO, LocalIOError
from mnist_cli.report.metrics import compute_metrics, misclassified
from mnist_cli.report.confusion import confusion_matrix_image
from mnist_cli.report.pictures import digit_grid, digit_grid_array, save_png, write_report

DIGITS = DATASETS["mnist"].class_names
FASHION = DATASETS["fashion-mnist"].class_names

# Four classes: class 2 is never predicted, class 3 never occurs in the labels.
LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 2])
PREDICTIONS = np.array([0, 0, 3, 1, 0, 0, 0, 1])


def _hand_metrics() -> report_metrics.Metrics:
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        return compute_metrics(LABELS, PREDICTIONS, class_names=["a", "b", "c", "d"], loss=0.5)


def test_metrics_match_hand_computed_values() -> None:
    metrics = _hand_metrics()
    assert metrics.count == 8 and metrics.errors == 5
    assert metrics.accuracy == pytest.approx(3 / 8)
    np.testing.assert_array_equal(metrics.confusion_matrix, [[2, 0, 0, 1], [1, 1, 0, 0], [2, 1, 0, 0], [0, 0, 0, 0]])
    assert metrics.confusion_matrix.dtype == np.int64
    a, b, c, d = metrics.per_class
    assert (a.name, a.support) == ("a", 3)
    assert a.precision == pytest.approx(2 / 5) and a.recall == pytest.approx(2 / 3) and a.f1 == pytest.approx(0.5)
    assert (b.precision, b.recall, b.f1, b.support) == pytest.approx((0.5, 0.5, 0.5, 2))
    # Never predicted: precision undefined -> 0, not NaN.
    assert (c.precision, c.recall, c.f1, c.support) == (0.0, 0.0, 0.0, 3)
    # No support: recall undefined -> 0, not NaN.
    assert (d.precision, d.recall, d.f1, d.support) == (0.0, 0.0, 0.0, 0)
    assert metrics.macro_f1 == pytest.approx((0.5 + 0.5 + 0 + 0) / 4)


def test_macro_f1_ignores_classes_absent_from_labels_and_predictions() -> None:
    metrics = compute_metrics(np.array([0, 1, 1]), np.array([0, 1, 1]), class_names=DIGITS)
    assert metrics.confusion_matrix.shape == (10, 10)
    assert metrics.accuracy == 1.0 and metrics.macro_f1 == 1.0


def test_confusion_matrix_rows_are_true_labels() -> None:
    metrics = compute_metrics(np.full(4, 7), np.full(4, 1), class_names=DIGITS)
    assert metrics.confusion_matrix[7, 1] == 4
    assert metrics.confusion_matrix[1, 7] == 0
    assert metrics.per_class[7].support == 4 and metrics.per_class[1].support == 0


def test_top_confusions_most_frequent_first_without_zeros_or_diagonal() -> None:
    assert _hand_metrics().top_confusions == ((2, 0, 2), (0, 3, 1), (1, 0, 1), (2, 1, 1))
    assert compute_metrics(np.arange(10), np.arange(10), class_names=DIGITS).top_confusions == ()


def test_to_dict_is_finite_json_that_round_trips() -> None:
    metrics = _hand_metrics()
    decoded = json.loads(json.dumps(metrics.to_dict(), allow_nan=False))
    assert decoded["accuracy"] == pytest.approx(0.375) and decoded["loss"] == 0.5 and decoded["count"] == 8
    assert decoded["confusion_matrix"] == metrics.confusion_matrix.tolist()
    never_predicted = {"class": 2, "name": "c", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 3}
    assert decoded["per_class"][2] == never_predicted
    top = decoded["top_confusions"][0]
    assert (top["true"], top["predicted"], top["count"], top["true_name"], top["predicted_name"]) == (2, 0, 2, "c", "a")
    assert decoded["macro_f1"] == pytest.approx(0.25)
    scores = [v for row in decoded["per_class"] for v in row.values() if isinstance(v, float)]
    numbers = [decoded["accuracy"], decoded["macro_f1"], *scores]
    assert all(math.isfinite(v) for v in numbers)


def test_non_finite_loss_becomes_null_in_json() -> None:
    metrics = compute_metrics(np.array([1]), np.array([1]), class_names=DIGITS, loss=float("nan"))
    assert json.loads(json.dumps(metrics.to_dict(), allow_nan=False))["loss"] is None


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="labels but"):
        compute_metrics(np.array([0, 1]), np.array([0]), class_names=DIGITS)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        compute_metrics(np.array([0]), np.array([10]), class_names=DIGITS)


def test_misclassified_in_data_set_order_or_by_confidence() -> None:
    labels = np.array([0, 1, 2, 3, 4, 5])
    predictions = np.array([0, 2, 2, 1, 0, 5])
    np.testing.assert_array_equal(misclassified(labels, predictions, limit=10), [1, 3, 4])
    np.testing.assert_array_equal(misclassified(labels, predictions, limit=2), [1, 3])
    assert misclassified(labels, labels, limit=10).size == 0
    probabilities = np.full((6, 6), 0.1)
    probabilities[1, 2], probabilities[3, 1], probabilities[4, 0] = 0.5, 0.9, 0.5
    # Most confidently wrong first; equal confidences keep data-set order.
    np.testing.assert_array_equal(misclassified(labels, predictions, limit=10, probabilities=probabilities), [3, 1, 4])


def _known_digit() -> np.ndarray:
    digit = np.zeros((28, 28), np.uint8)
    digit[4:24, 12:16] = 255  # a "1"
    digit[4:8, 8:12] = 128
    return digit


def test_digit_grid_geometry_and_pixels_where_expected() -> None:
    images = np.zeros((12, 28, 28), np.uint8)
    images[7] = _known_digit()
    grid = digit_grid(images, columns=5, scale=3, gap=6)
    tile = 28 * 3
    assert grid.size == (5 * tile + 6 * 6, 3 * tile + 4 * 6)  # 5 columns, 3 rows
    pixels = np.asarray(grid)
    # Index 7 is row 1, column 2; NEAREST upscaling repeats each pixel 3x3.
    x, y = 6 + 2 * (tile + 6), 6 + 1 * (tile + 6)
    expected = np.repeat(np.repeat(_known_digit(), 3, axis=0), 3, axis=1)
    for channel in range(3):
        np.testing.assert_array_equal(pixels[y : y + tile, x : x + tile, channel], expected)
    assert pixels[6 : 6 + tile, 6 : 6 + tile].max() == 0  # index 0 is a black tile
    assert (pixels[0:6] == 255).all()  # the margin is white paper
    # Floats in [0, 1] (what the model sees) come out as the same picture.
    as_floats = digit_grid(images.astype(np.float32) / 255, columns=5, scale=3, gap=6)
    np.testing.assert_array_equal(np.asarray(as_floats), pixels)


def test_digit_grid_captions_add_readable_text_under_each_tile() -> None:
    images = np.zeros((3, 28, 28), np.uint8)
    plain = digit_grid(images, columns=3, scale=2)
    captions = ["7 → 1", "Ankle boot\n→ Sneaker\n#12", "a caption far too long for one tile"]
    captioned = digit_grid(images, captions=captions, columns=3, scale=2)
    assert captioned.width == plain.width and captioned.height > plain.height
    below = np.asarray(captioned)[6 + 56 :, :, 0]
    assert (below < 128).sum() > 50  # dark text on the white paper below the tiles
    array = digit_grid_array(images, captions=["1", "2", "3"])
    assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3
    with pytest.raises(ValueError, match="captions"):
        digit_grid(images, captions=["only one"])


def test_pictures_fall_back_to_pillows_font_without_system_fonts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text, "FONT_FILES", {False: (), True: ()})
    text.sans_font.cache_clear()
    try:
        grid = digit_grid(np.zeros((2, 28, 28), np.uint8), captions=["7 → 1", "3 → 5"])
        matrix = confusion_matrix_image(compute_metrics(np.arange(10), np.arange(10), class_names=FASHION))
        assert grid.height > 28 * 3 and matrix.width > 300
    finally:
        text.sans_font.cache_clear()


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of True in a 1-D mask."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2], edges[1::2], strict=True))


def _fashion_metrics() -> report_metrics.Metrics:
    labels = np.repeat(np.arange(10), 50)
    predictions = labels.copy()
    predictions[:5] = 6  # five T-shirts taken for shirts
    return compute_metrics(labels, predictions, class_names=FASHION)


def test_confusion_matrix_image_colours_errors_red_and_correct_blue() -> None:
    image = confusion_matrix_image(_fashion_metrics(), title="fashion-mnist")
    pixels = np.asarray(image).astype(int)
    red, blue = pixels[..., 0], pixels[..., 2]
    # The diagonal cells are the dark blue squares; their columns and rows give the grid.
    dark_blue = (blue > 90) & (red < 60)
    columns, rows = _runs(dark_blue.any(axis=0)), _runs(dark_blue.any(axis=1))
    assert len(columns) == len(rows) == 10

    def cell_colour(true: int, predicted: int) -> np.ndarray:
        (x0, _), (y0, _) = columns[predicted], rows[true]
        return pixels[y0 + 2, x0 + 2]  # a corner, away from the count written in the middle

    r, g, b = cell_colour(0, 6)  # T-shirt/top predicted as Shirt: 10% of the row
    assert r > g + 40 and r > b + 40, "an off-diagonal cell with errors is reddish"
    r, g, b = cell_colour(1, 6)  # no errors there: neutral, not red
    assert abs(int(r) - int(b)) < 15


def test_confusion_matrix_image_without_errors_has_no_red() -> None:
    perfect = compute_metrics(np.arange(10), np.arange(10), class_names=DIGITS)
    pixels = np.asarray(confusion_matrix_image(perfect)).astype(int)
    reddish = (pixels[..., 0] > pixels[..., 1] + 40) & (pixels[..., 0] > pixels[..., 2] + 40)
    assert not reddish.any()


def _report_inputs(errors: bool) -> dict:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 3)
    predictions = labels.copy()
    if errors:
        predictions[[0, 4, 9]] = [6, 7, 5]
    return dict(
        metrics=compute_metrics(labels, predictions, class_names=DIGITS, loss=0.25),
        images=rng.integers(0, 256, size=(len(labels), 28, 28), dtype=np.uint8),
        labels=labels,
        predictions=predictions,
        class_names=DIGITS,
    )


@pytest.mark.parametrize("errors", [True, False])
def test_write_report_writes_valid_pngs_and_metrics(tmp_path: Path, errors: bool) -> None:
    inputs = _report_inputs(errors)
    paths = write_report(tmp_path / "report", **inputs)
    assert [p.name for p in paths] == ["confusion_matrix.png", "misclassified.png", "metrics.json"]
    for path in paths[:2]:
        with Image.open(path) as image:
            image.verify()
            assert image.format == "PNG"
    with Image.open(paths[1]) as grid:
        # With errors: a grid of 28x3-pixel tiles; without: a small picture that says so.
        assert (grid.height >= 84) == errors
    assert json.loads(paths[2].read_text()) == json.loads(json.dumps(inputs["metrics"].to_dict()))
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == sorted(p.name for p in paths)  # no .part left


def test_save_png_failure_keeps_the_old_file_and_leaves_no_part(tmp_path: Path) -> None:
    target = save_png(Image.new("RGB", (4, 4)), tmp_path / "picture.png")
    before = target.read_bytes()

    class DiskFull:
        def save(self, handle, format: str) -> None:
            handle.write(b"\x89PNG half")
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(LocalIOError, match="no space"):
        save_png(DiskFull(), target)  # type: ignore[arg-type]
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["picture.png"]


def test_write_report_into_unwritable_directory_is_a_local_io_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the report directory should go")
    with pytest.raises(LocalIOError) as caught:
        write_report(blocker / "report", **_report_inputs(True))
    assert caught.value.exit_code == LOCAL_IO
    assert "report directory" in caught.value.message and caught.value.hint
