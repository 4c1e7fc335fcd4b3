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
from helpers import IN_CI
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
def run(real_mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A convnet trained on real MNIST for two epochs (about 97% on the test set)."""
    data_dir = tmp_path_factory.mktemp("data")
    (data_dir / "mnist").symlink_to(real_mnist_dir, target_is_directory=True)
    run_dir = tmp_path_factory.mktemp("runs") / "cnn"
    trained = CliRunner().invoke(
        app,
        ["train", "--data-dir", str(data_dir), "--run-dir", str(run_dir), "--model", "cnn", "--loss", "xent",
         "--optimizer", "adam", "--epochs", "2", "--batch-size", "64", "--quiet"],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.stderr
    return run_dir


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
