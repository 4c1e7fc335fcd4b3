"""A run trained in `mixed-bf16` through every command that reads it: predict, export, evaluate, serve.

The TFLite converter has no bfloat16 kernels; predict and export convert such a network in
float32 (from its checkpoint, from its model.keras, and from a bare model.keras with no run
beside it) and never print a traceback.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import pictures
from conftest import _train_once
from mnist_cli.cli import app
from mnist_cli.core.errors import MODEL
from mnist_cli.data import load_split
from mnist_cli.inference import litert, loading
from mnist_cli.model import float32
from serving import ServerProcess

needs_litert = pytest.mark.skipif(not litert.runtime_available(), reason="ai-edge-litert has no wheel for this platform")


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


@pytest.fixture(scope="module")
def mixed_run_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a convnet trained with --precision mixed-bf16 on the tiny data set, its --data-dir)."""
    return _train_once(
        tmp_path_factory.mktemp("mixed"),
        "--model", "cnn", "--loss", "xent", "--optimizer", "adam", "--precision", "mixed-bf16", "--epochs", "2",
        "--log-every", "5",
    )  # fmt: skip


@pytest.fixture
def run(mixed_run_once: tuple[Path, Path], tmp_path: Path) -> Path:
    """Each test's own copy (predict caches files in the run)."""
    return Path(shutil.copytree(mixed_run_once[0], tmp_path / "run"))


@pytest.fixture
def bare_model(run: Path, tmp_path: Path) -> Path:
    """The run's model.keras alone in a folder: no config.json to rebuild it from."""
    folder = tmp_path / "bare"
    folder.mkdir()
    return Path(shutil.copy(run / "model.keras", folder / "model.keras"))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The tiny data set's bar digits as PNG files."""
    directory = tmp_path / "pictures"
    directory.mkdir()
    for label in range(10):
        image = np.zeros((28, 28), np.uint8)
        image[3 + 2 * label : 5 + 2 * label, 4:24] = 255
        (directory / f"{label}.png").write_bytes(pictures.encode(Image.fromarray(image), "PNG"))
    return directory


def predict(target: Path, folder: Path, *extra: str) -> tuple[list[dict[str, Any]], str]:
    result = invoke("predict", str(folder), "--checkpoint", str(target), "--json", "--verbose", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr


def test_the_run_is_mixed_precision(run: Path) -> None:
    model = loading.load(run / "model.keras").model
    assert float32.is_mixed(model)
    assert json.loads((run / "config.json").read_text())["precision"] == "mixed-bf16"


@needs_litert
@pytest.mark.parametrize("which", ["run", "model.keras", "bare model.keras"])
def test_predict_converts_a_mixed_precision_network_to_litert_in_float32(run: Path, bare_model: Path, folder: Path, which: str) -> None:
    target = {"run": run, "model.keras": run / "model.keras", "bare model.keras": bare_model}[which]
    # The TensorFlow path runs the same float32 network (see loading.load).
    reference, _ = predict(target, folder, "--engine", "tensorflow")
    fast, notes = predict(target, folder)
    assert "LiteRT: " in notes and "conversion failed" not in notes, notes
    assert [entry["prediction"] for entry in fast] == [entry["prediction"] for entry in reference]
    difference = np.abs(np.array([e["probabilities"] for e in fast]) - np.array([e["probabilities"] for e in reference]))
    assert difference.max() < 1e-5
    trained, _ = predict(run, folder, "--engine", "tensorflow")  # a bare model.keras takes the default loss's probabilities
    assert [entry["prediction"] for entry in fast] == [entry["prediction"] for entry in trained]
    again, notes = predict(target, folder)  # the cached model serves from now on
    assert "converting" not in notes and again == fast


def test_a_mixed_model_keras_is_run_by_tensorflow_in_float32(bare_model: Path) -> None:
    mixed = loading.load(bare_model).model
    converted = loading.load(bare_model, float32=True).model
    assert not float32.is_mixed(converted) and converted.inputs[0].dtype == "uint8"
    assert {layer.dtype_policy.name for layer in converted.layers} == {"float32"}
    images = np.random.default_rng(0).integers(0, 256, size=(16, 28, 28), dtype=np.uint8)
    for original, copy in zip(mixed.get_weights(), converted.get_weights()):
        np.testing.assert_array_equal(original, copy)
    np.testing.assert_allclose(converted(images).numpy(), mixed(images).numpy(), atol=0.05)


@pytest.mark.parametrize("which", ["run", "model.keras", "bare model.keras"])
def test_export_tflite_of_a_mixed_precision_network_is_float32_and_gives_its_predictions(
    run: Path, bare_model: Path, tmp_path: Path, which: str
) -> None:
    import tensorflow as tf

    target = {"run": run, "model.keras": run / "model.keras", "bare model.keras": bare_model}[which]
    output = tmp_path / "out" / "model.tflite"
    result = invoke("export", str(target), "--format", "tflite", "-o", str(output), "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["same_predictions"] and payload["converted_to_float32"]
    images, _ = load_split(Path(json.loads((run / "data.json").read_text())["directory"]), "test")
    expected = loading.load(run, float32=True).model(images, training=False).numpy()
    interpreter = tf.lite.Interpreter(model_content=output.read_bytes())
    logits = interpreter.get_signature_runner("serving_default")(images=images)["logits"]
    np.testing.assert_array_equal(logits.argmax(axis=1), expected.argmax(axis=1))
    np.testing.assert_allclose(logits, expected, atol=1e-4)


@pytest.mark.slow  # a SavedModel export of the convnet
def test_export_savedmodel_of_a_mixed_precision_run_is_float32(run: Path) -> None:
    result = invoke("export", str(run), "--format", "savedmodel", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["same_predictions"] and payload["converted_to_float32"] and payload["max_abs_logit_difference"] < 1e-4


def test_export_keras_keeps_the_network_as_trained(run: Path, tmp_path: Path) -> None:
    output = tmp_path / "copy.keras"
    result = invoke("export", str(run), "--format", "keras", "-o", str(output), "--json")
    assert result.exit_code == 0, result.output
    assert not json.loads(result.stdout)["converted_to_float32"]
    assert float32.is_mixed(loading.load(output).model)


def test_a_converter_failure_is_one_error_line(run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorflow as tf

    class Refusing:
        def convert(self) -> bytes:
            raise RuntimeError("Could not translate MLIR to FlatBuffer\n" + "loc(...): error\n" * 600)

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_saved_model", staticmethod(lambda *args, **kwargs: Refusing()))
    result = invoke("export", str(run), "--format", "tflite", "-o", str(tmp_path / "m.tflite"))
    assert result.exit_code == MODEL
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: the TFLite converter cannot convert") and "Could not translate" in lines[0]
    assert lines[1].startswith("hint:") and len(lines) == 2
    assert not (tmp_path / "m.tflite").exists()


@needs_litert
def test_predict_falls_back_to_tensorflow_when_the_converter_fails(run: Path, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mnist_cli.inference import export

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("'tf.Mul' op is neither a custom op nor a flex op\n" + "more\n" * 600)

    monkeypatch.setattr(export, "export_model", failing)
    answers, notes = predict(run / "model.keras", folder)
    assert len(answers) == 10
    fallback = [line for line in notes.splitlines() if "TensorFlow:" in line]
    assert len(fallback) == 1 and "neither a custom op" in fallback[0], notes


def test_evaluate_gives_the_test_accuracy_training_reported(mixed_run_once: tuple[Path, Path]) -> None:
    run, data_dir = mixed_run_once
    result = invoke("evaluate", str(run), "--data-dir", str(data_dir), "--json")
    assert result.exit_code == 0, result.output
    trained = json.loads((run / "result.json").read_text())
    payload = json.loads(result.stdout)
    # The same network in the same precision on the same batches: the same figures, to the bit.
    assert payload["accuracy"] == trained["test_accuracy"] and payload["loss"] == trained["test_loss"]


def test_serve_answers_predict_and_tf_serving_requests(run: Path, folder: Path) -> None:
    expected, _ = predict(run, folder, "--engine", "tensorflow")
    server = ServerProcess(str(run), "--port", "0").start()
    try:
        with server.client() as client:
            answer = client.post("/predict", content=(folder / "3.png").read_bytes(), headers={"Content-Type": "image/png"})
            assert answer.status_code == 200, answer.text
            assert answer.json()[0]["prediction"] == expected[3]["prediction"]
            # Served in float32 as predict runs it: the same probabilities.
            assert answer.json()[0]["probabilities"] == pytest.approx(expected[3]["probabilities"], abs=1e-6)
            digits = [np.asarray(Image.open(folder / f"{label}.png")).tolist() for label in (1, 7)]
            rows = client.post("/v1/models/mnist:predict", json={"instances": digits})
            assert rows.status_code == 200, rows.text
            predictions = rows.json()["predictions"]
            assert [row["classes"] for row in predictions] == [expected[1]["prediction"], expected[7]["prediction"]]
            for row in predictions:
                assert sum(row["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    finally:
        assert server.stop() == 0
