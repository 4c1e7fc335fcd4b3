"""The drawing page in a real headless Chromium (Debian's chromium and chromium-driver) driven by Selenium.

Strokes for a 1, a 7 and a 0 are drawn with pointer events on the canvas and must be read
right by a convnet trained on real MNIST in this session; clear (button and key) empties
the page; an uploaded photo gives what `mnist predict` gives for the file.
Set MNIST_SCREENSHOT=path to save a screenshot of the page with a digit on it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import pictures
from helpers import IN_CI, train_cli
from mnist_cli.cli import app
from mnist_cli.data import load_split
from serving import ServerProcess

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SIZE = 280  # the canvas, in CSS pixels


def _need(condition: bool, what: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is missing in CI: .ci/run must install it")
    pytest.skip(f"{what} is not available here")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Any:
    _need(os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER), "chromium and chromium-driver (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
    except ImportError:
        _need(False, "selenium (pip install -e '.[dev]')")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", "--window-size=820,760",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def run(real_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A convnet trained on real MNIST for two epochs (about 97% on the test set)."""
    run_dir = tmp_path_factory.mktemp("runs") / "cnn"
    return train_cli(real_data_dir, run_dir, "--model", "cnn", "--loss", "xent", "--optimizer", "adam", "--epochs", "2", "--batch-size", "64")


@pytest.fixture(scope="module")
def page(browser: Any, run: Path) -> Any:
    server = ServerProcess(str(run), "--port", "0", "--quiet").start()
    try:
        browser.get(server.url)
        _settle(browser)
        yield browser
    finally:
        assert server.stop() == 0


def _settle(driver: Any) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    # The page says when the prediction shown is for what is on the pad (no fixed waits).
    WebDriverWait(driver, 120, poll_frequency=0.05).until(
        lambda d: d.execute_script("return !!(window.mnist && window.mnist.shown === window.mnist.version && !window.mnist.busy)")
    )


def _draw(driver: Any, strokes: list[list[tuple[float, float]]], *, kind: str = "mouse") -> None:
    """Each stroke as pointer down, moves and up, in canvas coordinates (0-280)."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    canvas = driver.find_element("id", "pad")
    pointer = PointerInput(interaction.POINTER_PEN if kind == "pen" else interaction.POINTER_MOUSE, kind)
    actions = ActionBuilder(driver, mouse=pointer, duration=10)
    for stroke in strokes:
        # W3C actions measure element offsets from the element's centre.
        first = stroke[0]
        actions.pointer_action.move_to(canvas, round(first[0] - SIZE / 2), round(first[1] - SIZE / 2))
        actions.pointer_action.pointer_down()
        for x, y in stroke[1:]:
            actions.pointer_action.move_to(canvas, round(x - SIZE / 2), round(y - SIZE / 2))
        actions.pointer_action.pointer_up()
    actions.perform()
    _settle(driver)


def _line(start: tuple[float, float], end: tuple[float, float], steps: int = 12) -> list[tuple[float, float]]:
    return [(start[0] + (end[0] - start[0]) * i / steps, start[1] + (end[1] - start[1]) * i / steps) for i in range(steps + 1)]


ONE = [_line((150, 45), (135, 235))]
SEVEN = [_line((75, 60), (205, 60)) + _line((205, 60), (115, 235))[1:]]
ZERO = [[(140 + 55 * math.sin(2 * math.pi * i / 40), 140 - 90 * math.cos(2 * math.pi * i / 40)) for i in range(41)]]


def _shown(driver: Any) -> tuple[str, str]:
    return driver.find_element("id", "prediction").text, driver.find_element("id", "probability").text


def _clear_with(driver: Any, how: str) -> None:
    if how == "button":
        driver.find_element("id", "clear").click()
    else:
        from selenium.webdriver.common.keys import Keys

        driver.find_element("tag name", "body").send_keys("c" if how == "key" else Keys.ESCAPE)
    _settle(driver)


def _is_cleared(driver: Any) -> bool:
    blank = driver.execute_script(
        "const c = document.getElementById('pad'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "return d.every(v => v === 255);"
    )
    bars = [e.text for e in driver.find_elements("css selector", "#bars .pct")]
    return bool(blank) and _shown(driver)[0] == "–" and all(text == "" for text in bars)


@pytest.mark.parametrize(
    ("digit", "strokes", "kind", "clear"),
    [("1", ONE, "mouse", "button"), ("7", SEVEN, "mouse", "key"), ("0", ZERO, "pen", "escape")],
    ids=["one-mouse", "seven-mouse", "zero-pen"],
)
def test_a_digit_drawn_with_pointer_events_is_read_and_clear_empties_the_page(
    page: Any, digit: str, strokes: list[list[tuple[float, float]]], kind: str, clear: str
) -> None:
    _draw(page, strokes, kind=kind)
    predicted, probability = _shown(page)
    assert predicted == digit, (predicted, probability)
    bars = {e.get_attribute("data-class"): e for e in page.find_elements("css selector", "#bars .row")}
    assert "top" in bars[digit].get_attribute("class")
    # The 28x28 digit the network saw is drawn, from the server's preprocessing.
    assert page.execute_script("return document.getElementById('seen').getContext('2d').getImageData(0, 0, 28, 28).data.some(v => v > 0 && v < 255)")
    if digit == "7" and os.environ.get("MNIST_SCREENSHOT"):
        page.save_screenshot(os.environ["MNIST_SCREENSHOT"])
    _clear_with(page, clear)
    assert _is_cleared(page)


def test_the_page_names_the_model_it_serves(page: Any, run: Path) -> None:
    text = page.find_element("id", "model").text
    accuracy = json.loads((run / "result.json").read_text())["test_accuracy"]
    assert f"run {run.name}" in text and "mnist" in text and f"{accuracy:.2%}" in text


def test_an_uploaded_photo_gives_what_mnist_predict_gives(page: Any, run: Path, real_mnist_dir: Path, tmp_path: Path) -> None:
    images, _ = load_split(real_mnist_dir, "test")
    photo = tmp_path / "photo-of-a-digit.png"
    pictures.photographed(images[1], seed=1).save(photo)
    expected = json.loads(CliRunner().invoke(app, ["predict", str(photo), "--checkpoint", str(run), "--json"]).stdout)[0]
    page.find_element("id", "file").send_keys(str(photo))
    _settle(page)
    assert _shown(page) == (expected["name"], f"{expected['probability'] * 100:.1f}%")
    assert page.find_element("id", "status").text == f"read {photo.name}"
    _clear_with(page, "button")
    assert _is_cleared(page)


def _save_screenshot(driver: Any, name: str) -> None:
    """With MNIST_PLAYGROUND_SHOTS=folder (docs/ for the README), a small palette PNG of the page as it is."""
    folder = os.environ.get("MNIST_PLAYGROUND_SHOTS")
    if not folder:
        return
    import io

    from PIL import Image

    shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    shot.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(Path(folder) / name, optimize=True)


def _has_ink(driver: Any, selector: str) -> bool:
    """Whether every canvas matching `selector` shows something other than one flat colour."""
    return bool(
        driver.execute_script(
            "const all = Array.from(document.querySelectorAll(arguments[0]));"
            "return all.length > 0 && all.every(c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "  for (let i = 4; i < d.length; i += 4) if (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2]) return true; return false; });",
            selector,
        )
    )


def test_a_drawing_shows_each_layer_the_saliency_map_and_the_first_layer_weights(page: Any) -> None:
    page.set_window_size(1280, 900)
    try:
        _draw(page, SEVEN)
        assert _shown(page)[0] == "7"
        explained = page.execute_script("return window.mnist.explained")
        assert explained["layers"] == ["conv_1", "conv_2", "conv_3", "dense_1"]
        assert len(page.find_elements("css selector", "#layers canvas")) == 4 and _has_ink(page, "#layers canvas")
        captions = [e.text for e in page.find_elements("css selector", "#layers figcaption")]
        assert captions[0].startswith("conv_1: 32 feature maps of 28×28") and captions[3].startswith("dense_1: 128 units")
        # Red (raises the score) or blue (lowers it) over the grey digit: the saliency map is drawn in colour.
        assert page.execute_script(
            "const d = document.getElementById('saliency').getContext('2d').getImageData(0, 0, 28, 28).data;"
            "for (let i = 0; i < d.length; i += 4) if (d[i] !== d[i + 1]) return true; return false;"
        )
        assert _has_ink(page, "#weights") and page.execute_script("return window.mnist.weightsVersion") == 1
        assert page.find_element("id", "version").text == "version 1"
        assert "gradient of the predicted class's logit" in page.find_element("css selector", ".seen abbr").get_attribute("title")
        _save_screenshot(page, "playground-draw.png")
    finally:
        page.set_window_size(820, 760)
        _clear_with(page, "button")


def test_a_failed_upload_empties_the_square_and_a_read_note_is_not_an_error(page: Any, tmp_path: Path) -> None:
    _draw(page, ONE)
    broken = tmp_path / "not-a-picture.png"
    broken.write_bytes(b"this is text")
    page.find_element("id", "file").send_keys(str(broken))
    _settle(page)
    status = page.find_element("id", "status")
    assert "not a PNG" in status.text and "error" in status.get_attribute("class")
    assert page.execute_script(
        "const c = document.getElementById('pad'); return c.getContext('2d').getImageData(0, 0, c.width, c.height).data.every(v => v === 255);"
    ), "the square still shows the previous drawing beside the error"
    _clear_with(page, "button")


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 740)], ids=["desktop", "phone"])
def test_the_prediction_is_in_sight_beside_the_pad_on_wide_and_phone_screens(page: Any, width: int, height: int) -> None:
    page.set_window_size(width, height)
    try:
        inner = page.execute_script("return [window.innerWidth, window.innerHeight]")
        prediction = page.find_element("id", "prediction").rect
        pad = page.find_element("id", "pad").rect
        assert prediction["y"] + prediction["height"] <= inner[1], "the prediction is below the fold"
        if inner[0] >= 1200:
            # Side by side, using the width: the pad, the answer and the inside of the network.
            assert prediction["x"] > pad["x"] + pad["width"] and page.find_element("css selector", ".inside").rect["x"] > inner[0] / 2
    finally:
        page.set_window_size(820, 760)


def test_following_a_live_run_the_curves_gain_points_and_the_version_changes(
    browser: Any, real_mnist_dir: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    from selenium.webdriver.support.ui import WebDriverWait

    from serving import REPO

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "mnist").symlink_to(real_mnist_dir, target_is_directory=True)
    run = tmp_path / "live-mlp"

    def train(epochs: int, *more: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "mnist_cli", "train", "--data-dir", str(data_dir), "--run-dir", str(run),
             "--epochs", str(epochs), "--hidden", "64", "--quiet", *more],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip

    # The run's first epoch, then the page, then the run goes on while the page watches: the test
    # sets the pace, so a fast machine cannot finish the run before the page has looked.
    assert train(1).wait(timeout=600) == 0
    server = ServerProcess(str(run), "--follow", "--port", "0", "--quiet").start()
    going_on = None
    try:
        browser.set_window_size(1280, 900)
        browser.get(server.url)
        wait = WebDriverWait(browser, 300, poll_frequency=0.1)
        wait.until(lambda d: d.execute_script("return window.mnist.modelVersion !== null && window.mnist.points === 1"))
        _draw(browser, SEVEN)
        first_version = browser.execute_script("return window.mnist.answeredBy")
        going_on = train(4, "--resume")
        wait.until(lambda d: d.execute_script("return window.mnist.points") > 1)
        wait.until(lambda d: d.execute_script("return window.mnist.answeredBy") != first_version)
        _settle(browser)
        # The drawing was read again by the new version, and its weights were fetched.
        later = browser.execute_script("return window.mnist.answeredBy")
        assert later > first_version and browser.find_element("id", "version").text == f"version {later}"
        wait.until(lambda d: d.execute_script("return window.mnist.weightsVersion") == later)
        assert "following the run" in browser.find_element("id", "run-note").text
        assert going_on.wait(timeout=600) == 0
        wait.until(lambda d: d.execute_script("return window.mnist.points") == 4)
        _settle(browser)
        _save_screenshot(browser, "playground-follow.png")
    finally:
        browser.set_window_size(820, 760)
        if going_on is not None and going_on.poll() is None:
            going_on.kill()
        assert server.stop() == 0
