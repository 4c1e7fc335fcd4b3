"""`mnist predict` on LiteRT: a cache keyed to the checkpoint, no TensorFlow once it exists, the same answers, fallbacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import pictures
from helpers import invoke
from mnist_cli.core.errors import MODEL
from mnist_cli.data import load_split
from mnist_cli.inference import litert, loading
from mnist_cli.inference.predict import Picture, predict_pictures

pytestmark = [
    pytest.mark.skipif(not litert.runtime_available(), reason="ai-edge-litert has no wheel for this platform"),
    pytest.mark.tiny_data(n_train=300, n_test=50),  # the `data_dir` of this module (conftest.py)
]

TOLERANCE = 1e-5  # probabilities, LiteRT against TensorFlow
ROOT = Path(__file__).resolve().parent.parent


def train(data_dir: Path, run_dir: Path, *extra: str) -> Path:
    result = invoke("train", "--data-dir", str(data_dir), "--run-dir", str(run_dir), "--log-every", "5", "--quiet", *extra)
    assert result.exit_code == 0, result.stderr
    return run_dir


@pytest.fixture(scope="module")
def trained(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small MLP that reads the tiny data set's bars; each test predicts with its own copy."""
    return train(data_dir, tmp_path_factory.mktemp("runs") / "mlp", "--hidden", "32,32", "--epochs", "2")


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


def bar_digit(label: int) -> np.ndarray:
    """A clean digit of the tiny data set: 28x28, light on black, kept as it is by preprocessing."""
    image = np.zeros((28, 28), np.uint8)
    image[3 + 2 * label : 5 + 2 * label, 4:24] = 255
    return image


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Each bar digit as it is, and drawn dark on a big light canvas (which goes through all of preprocessing)."""
    directory = tmp_path / "pictures"
    directory.mkdir()
    for label in range(10):
        (directory / f"{label}.png").write_bytes(pictures.encode(Image.fromarray(bar_digit(label)), "PNG"))
        canvas = pictures.large_canvas(bar_digit(label), seed=label, size=(240, 180))
        (directory / f"{label}-canvas.png").write_bytes(pictures.encode(canvas, "PNG"))
    return directory


def predict(run: Path, folder: Path, *extra: str) -> tuple[list[dict[str, Any]], str]:
    result = invoke("predict", str(folder), "--checkpoint", str(run), "--json", "--verbose", *extra)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def predict_in_child(run: Path, folder: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """`mnist predict` in a fresh interpreter, reporting which heavy modules it imported."""
    code = (
        "import json, sys\n"
        "from mnist_cli.cli import app\n"
        "try:\n"
        "    app(sys.argv[1:], prog_name='mnist')\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "heavy = sorted({name.split('.')[0] for name in sys.modules} & {'tensorflow', 'keras', 'tf_keras'})\n"
        "sys.stderr.write('\\nMODULES ' + json.dumps({'code': code, 'heavy': heavy}) + '\\n')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-c", code, "predict", str(folder), "--checkpoint", str(run), "--json", "--verbose"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    report = json.loads(done.stderr.rsplit("MODULES ", 1)[1])
    assert report["code"] in (0, None), done.stderr
    return json.loads(done.stdout), report | {"stderr": done.stderr}


def assert_same(fast: list[dict[str, Any]], reference: list[dict[str, Any]]) -> None:
    assert [entry["path"] for entry in fast] == [entry["path"] for entry in reference]
    assert [entry["prediction"] for entry in fast] == [entry["prediction"] for entry in reference]
    difference = np.abs(np.array([e["probabilities"] for e in fast]) - np.array([e["probabilities"] for e in reference]))
    assert difference.max() <= TOLERANCE, difference.max()


def cached_models(run: Path) -> list[Path]:
    return sorted((run / litert.CACHE_DIR).glob("model-*.tflite"))


# --------------------------------------------------------------------------- the fast path


def test_the_first_predict_caches_a_litert_model_and_later_ones_never_import_tensorflow(run: Path, folder: Path) -> None:
    reference, notes = predict(run, folder, "--engine", "tensorflow")
    assert "TensorFlow" in notes and not (run / litert.CACHE_DIR).exists()

    first, notes = predict(run, folder)
    assert "converting" in notes and "LiteRT:" in notes
    (model,) = cached_models(run)
    assert model.with_suffix(".json").is_file()
    assert_same(first, reference)

    fast, report = predict_in_child(run, folder)
    assert report["heavy"] == [], report  # neither TensorFlow nor Keras was imported
    assert f"LiteRT: {model}" in report["stderr"] and "XNNPACK" not in report["stderr"]
    assert_same(fast, reference)
    assert cached_models(run) == [model]


def test_without_verbose_nothing_is_said_about_the_engine(run: Path, folder: Path) -> None:
    result = invoke("predict", str(folder / "3.png"), "--checkpoint", str(run))
    assert result.exit_code == 0 and "engine" not in result.stderr and "LiteRT" not in result.stderr
    assert result.stderr.strip() == ""


@pytest.mark.slow  # two trainings and two conversions
def test_a_newer_checkpoint_never_uses_the_cached_model_of_an_older_one(run: Path, folder: Path, data_dir: Path) -> None:
    predict(run, folder)
    (old,) = cached_models(run)
    before = loading.resolve(run).path
    train(data_dir, run, "--resume", "--epochs", "3")  # one more epoch: a new best or latest checkpoint
    after = loading.resolve(run).path
    assert after != before
    fast, notes = predict(run, folder)
    assert f"no cached LiteRT model for {after.name} yet" in notes
    reference, _ = predict(run, folder, "--engine", "tensorflow")
    assert_same(fast, reference)
    assert len(cached_models(run)) == 2 and old in cached_models(run)


def test_an_edited_checkpoint_or_config_gets_a_new_key(run: Path) -> None:
    target = loading.resolve(run)
    key = litert.cache_key(target)
    text = (run / "config.json").read_text()
    (run / "config.json").write_text(json.dumps({**json.loads(text), "loss": "xent"}))
    assert litert.cache_key(target) != key
    (run / "config.json").write_text(text)
    assert litert.cache_key(target) == key
    index = Path(f"{target.path}.index")
    index.write_bytes(index.read_bytes() + b"\0")
    assert litert.cache_key(target) != key


# One kind of damage in the quick loop; each costs a conversion.
@pytest.mark.parametrize(
    "damage",
    ["flipped bytes", *(pytest.param(damage, marks=pytest.mark.slow) for damage in ("truncated", "foreign file, digest forged", "sidecar garbage"))],
)
def test_a_corrupt_cached_model_is_never_used_and_is_rebuilt(run: Path, folder: Path, damage: str) -> None:
    reference, _ = predict(run, folder, "--engine", "tensorflow")
    predict(run, folder)
    (model,) = cached_models(run)
    sidecar = model.with_suffix(".json")
    blob = bytearray(model.read_bytes())
    if damage == "flipped bytes":
        blob[len(blob) // 2 : len(blob) // 2 + 64] = bytes(64)
        model.write_bytes(bytes(blob))
    elif damage == "truncated":
        model.write_bytes(bytes(blob[: len(blob) // 3]))
    elif damage == "foreign file, digest forged":
        import hashlib

        garbage = b"TFL3" + bytes(range(256)) * 16
        model.write_bytes(garbage)
        record = json.loads(sidecar.read_text())
        sidecar.write_text(json.dumps({**record, "model_bytes": len(garbage), "model_sha256": hashlib.sha256(garbage).hexdigest()}))
    else:
        sidecar.write_text("{not json")
    fast, notes = predict(run, folder)
    assert "was removed" in notes and "rebuilding" in notes, notes
    assert_same(fast, reference)
    assert cached_models(run) == [model]
    record = json.loads(sidecar.read_text())
    import hashlib

    assert record["model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    again, notes = predict(run, folder)
    assert "converting" not in notes and f"LiteRT: {model}" in notes
    assert_same(again, reference)


# --------------------------------------------------------------------------- fallbacks


def test_without_the_runtime_predict_falls_back_to_tensorflow(run: Path, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference, _ = predict(run, folder, "--engine", "tensorflow")

    def missing() -> Any:
        raise litert.Unavailable("the LiteRT runtime (ai-edge-litert) cannot be imported (ModuleNotFoundError: test)")

    monkeypatch.setattr(litert, "_interpreter_class", missing)
    entries, notes = predict(run, folder)
    assert "TensorFlow: the LiteRT runtime (ai-edge-litert) cannot be imported" in notes
    assert entries == reference and not (run / litert.CACHE_DIR).exists()
    strict = invoke("predict", str(folder), "--checkpoint", str(run), "--engine", "litert")
    assert strict.exit_code == MODEL and "LiteRT path cannot serve" in strict.stderr


def test_a_failed_conversion_falls_back_to_tensorflow(run: Path, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mnist_cli.core.errors import ModelError
    from mnist_cli.inference import export

    reference, _ = predict(run, folder, "--engine", "tensorflow")

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise ModelError("the tflite export does not reproduce the model (max |logit difference| 1)")

    monkeypatch.setattr(export, "export_model", refuse)
    entries, notes = predict(run, folder)
    assert "TensorFlow: the LiteRT conversion failed: the tflite export does not reproduce the model" in notes
    assert entries == reference and cached_models(run) == []


def test_a_run_where_the_cache_cannot_be_written_is_predicted_with_tensorflow(run: Path, folder: Path) -> None:
    reference, _ = predict(run, folder, "--engine", "tensorflow")
    (run / litert.CACHE_DIR).write_text("a file where the cache folder belongs")
    entries, notes = predict(run, folder)
    assert "TensorFlow: the LiteRT conversion failed: File exists while creating" in notes, notes
    assert entries == reference


# --------------------------------------------------------------------------- same answers, every network and precision


@pytest.mark.slow  # a training and a conversion for each
@pytest.mark.parametrize(
    ("model", "precision"),
    [("mlp", "mixed-fp16"), ("cnn", "float32"), ("cnn", "mixed-bf16")],
)
def test_litert_and_tensorflow_agree_for_every_network_and_precision(
    model: str, precision: str, data_dir: Path, tmp_path: Path, folder: Path
) -> None:
    extra = ["--hidden", "32,32"] if model == "mlp" else ["--loss", "xent", "--optimizer", "adam"]
    run = train(data_dir, tmp_path / "run", "--model", model, "--precision", precision, "--epochs", "1", *extra)
    reference, _ = predict(run, folder, "--engine", "tensorflow")
    fast, notes = predict(run, folder, "--engine", "litert")
    assert "LiteRT:" in notes
    assert_same(fast, reference)


# --------------------------------------------------------------------------- real data, end to end


def _items(images: np.ndarray) -> list[Picture]:
    return [Picture(f"{index:05d}.png", pictures.encode(Image.fromarray(image), "PNG")) for index, image in enumerate(images)]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "extra"),
    [("mlp", []), ("cnn", ["--loss", "xent", "--optimizer", "adamw", "--batch-size", "128", "--precision", "mixed-bf16"])],
)
def test_the_full_mnist_test_split_gets_the_same_classes_on_both_paths(
    model: str, extra: list[str], real_mnist_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "mnist").symlink_to(real_mnist_dir, target_is_directory=True)
    run = train(data, tmp_path / model, "--model", model, "--epochs", "1", *extra)
    images, labels = load_split(real_mnist_dir, "test")
    items = _items(images)
    tensorflow = predict_pictures(litert.load(run, engine="tensorflow"), items)
    fast_model = litert.load(run, engine="litert")
    assert isinstance(fast_model, litert.FastModel)
    fast = predict_pictures(fast_model, items)
    reference = np.stack([entry.probabilities for entry in tensorflow])
    probabilities = np.stack([entry.probabilities for entry in fast])
    assert (probabilities.argmax(axis=1) == reference.argmax(axis=1)).all()
    assert np.abs(probabilities - reference).max() <= TOLERANCE
    assert (probabilities.argmax(axis=1) == labels).mean() > 0.8  # one epoch: MLP 82.6%, convnet ~96%
