"""`mnist export`: every format gives the same predictions as the checkpoint it came from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mnist_cli.cli import app
from mnist_cli.core.config import TrainConfig
from mnist_cli.data import load_splits

runner = CliRunner()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A convnet run with one checkpoint of its initial weights: an export must match whatever weights it has."""
    import keras

    from helpers import write_tiny_dataset
    from mnist_cli.core.tf_setup import import_tensorflow
    from mnist_cli.model import weights
    from mnist_cli.model.network import build_model

    tf = import_tensorflow()
    root = tmp_path_factory.mktemp("export")
    data = write_tiny_dataset(root / "data" / "mnist")
    config = TrainConfig(model="cnn", loss="xent", optimizer="adam")
    run = root / "run"
    run.mkdir()
    config.save(run)
    keras.utils.set_random_seed(config.seed)
    checkpoint = weights.checkpoint_of(build_model(config))
    tf.train.CheckpointManager(checkpoint, str(run / "checkpoints"), max_to_keep=1).save()
    return run, load_splits(data, dataset="mnist", val_split=0.1, seed=0).test_images


def _checkpoint_logits(run: Path, images: np.ndarray) -> np.ndarray:
    from mnist_cli.inference import loading

    return loading.load(run).model(images, training=False).numpy()


# The Keras format in the quick loop; each other format is a conversion of the convnet.
@pytest.mark.parametrize("export_format", ["keras", *(pytest.param(f, marks=pytest.mark.slow) for f in ("savedmodel", "tflite"))])
def test_export_gives_the_checkpoints_predictions(trained_run, export_format: str) -> None:
    run, images = trained_run
    result = runner.invoke(app, ["export", str(run), "--format", export_format, "--json", "--force"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    path = Path(payload["path"])
    assert path.parent == run / "export" and payload["same_predictions"]
    expected = _checkpoint_logits(run, images)
    if export_format == "keras":
        import keras

        actual = keras.saving.load_model(path, safe_mode=True, compile=False)(images).numpy()
    elif export_format == "savedmodel":
        import tensorflow as tf

        serving = tf.saved_model.load(str(path)).signatures["serving_default"]
        assert serving.structured_input_signature[1]["images"].dtype == tf.uint8  # raw pixels in
        outputs = serving(images=tf.constant(images))
        actual = outputs["logits"].numpy()
        np.testing.assert_array_equal(outputs["classes"].numpy(), expected.argmax(axis=1))
    else:
        import tensorflow as tf

        runner_fn = tf.lite.Interpreter(model_content=path.read_bytes()).get_signature_runner("serving_default")
        actual = runner_fn(images=images)["logits"]
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(actual.argmax(axis=1), expected.argmax(axis=1))


def test_export_refuses_to_overwrite_without_force_and_reports_a_missing_target(trained_run, tmp_path: Path) -> None:
    run, _ = trained_run
    output = tmp_path / "m.keras"
    assert runner.invoke(app, ["export", str(run), "--format", "keras", "-o", str(output)]).exit_code == 0
    again = runner.invoke(app, ["export", str(run), "--format", "keras", "-o", str(output)])
    assert again.exit_code == 2 and "already exists" in again.stderr
    missing = runner.invoke(app, ["export", str(tmp_path / "nope")])
    assert missing.exit_code == 7 and "does not exist" in missing.stderr and "Traceback" not in missing.output


def test_the_readmes_export_folder_is_ignored_by_git() -> None:
    import shutil
    import subprocess

    root = Path(__file__).resolve().parent.parent
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    # README: mnist export RUN --format savedmodel --output models/mnist/1
    done = subprocess.run(["git", "check-ignore", "-q", "models/mnist/1/saved_model.pb"], cwd=root, check=False)
    assert done.returncode == 0, "models/ is not in .gitignore"


def test_the_formats_offered_are_the_ones_written() -> None:
    from mnist_cli.cli.export import Format
    from mnist_cli.inference import export

    assert [choice.value for choice in Format] == list(export.FORMATS)
