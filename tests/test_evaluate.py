"""`mnist evaluate` and model loading: every kind of target, every broken one, and agreement with `mnist train`."""

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

from mnist_cli.model import scoring
from mnist_cli.inference import loading
from mnist_cli.data import load_split
from mnist_cli.core.errors import MODEL, USAGE, ModelError
from helpers import invoke

N_TEST = 1234  # not a multiple of the 1000-image batches: the remainder must be scored too
pytestmark = pytest.mark.tiny_data(n_train=600, n_test=N_TEST)  # the `data_dir` of this module (conftest.py)


@pytest.fixture(scope="module")
def run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run made by `mnist train`; one epoch at a low rate, so the test accuracy is far from 100%."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    result = invoke(
        "train", "--data-dir", str(data_dir), "--run-dir", str(run_dir),
        "--epochs", "2", "--lr", "0.003", "--log-every", "5", "--json", "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    test_accuracy = json.loads((run_dir / "result.json").read_text())["test_accuracy"]
    assert 0.2 < test_accuracy < 0.99, test_accuracy  # a figure that can disagree
    return run_dir


def evaluate_json(*args: str) -> dict[str, Any]:
    result = invoke("evaluate", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def test_images(data_dir: Path) -> np.ndarray:
    return load_split(data_dir / "mnist", "test")[0][:300]


def logits_of(loaded: loading.Loaded, images: np.ndarray) -> np.ndarray:
    return scoring.predict_logits(loaded.predict_step, images)


# --------------------------------------------------------------------------- targets


def test_every_kind_of_target_loads_the_same_best_weights(run: Path, test_images: np.ndarray) -> None:
    result = json.loads((run / "result.json").read_text())
    best = result["best_checkpoint"]
    by_run = loading.load(run)
    assert by_run.source.path == best and by_run.source.best and by_run.source.kind == "checkpoint"
    assert by_run.source.epoch == result["best_epoch"] and by_run.source.step == int(best.rsplit("-", 1)[1])
    assert by_run.config_known and by_run.dataset == "mnist"
    expected = logits_of(by_run, test_images)
    # model.keras is exported after the best checkpoint is restored, so all four hold the same weights.
    for target in (run / "best", Path(best), Path(best + ".index"), run / "model.keras"):
        loaded = loading.load(target)
        np.testing.assert_array_equal(logits_of(loaded, test_images), expected, err_msg=str(target))
    keras_model = loading.load(run / "model.keras")
    assert keras_model.source.kind == "keras" and keras_model.config_known  # config.json lies beside it


def test_checkpoints_directory_means_its_latest_checkpoint(run: Path) -> None:
    loaded = loading.load(run / "checkpoints")
    assert loaded.source.path == str(run / "checkpoints" / "ckpt-34")  # 2 epochs x 17 steps
    assert loaded.source.epoch == 2 and not loaded.source.best
    assert "checkpoint" in loaded.source.describe() and "epoch 2" in loaded.source.describe()


def test_default_target_is_the_most_recent_run(run: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    shutil.copytree(run, root / "older")
    shutil.copytree(run, root / "newer")
    result = json.loads((run / "result.json").read_text())
    for name, started in (("older", "2020-01-01T00:00:00+00:00"), ("newer", "2021-01-01T00:00:00+00:00")):
        (root / name / "result.json").write_text(json.dumps({**result, "started": started}))
    assert loading.load(None, runs_root=root).source.run_dir == str(root / "newer")


def test_a_run_without_best_falls_back_to_its_latest_checkpoint(run: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(run, tmp_path / "run")
    shutil.rmtree(copy / "best")
    assert loading.load(copy).source.path == str(copy / "checkpoints" / "ckpt-34")


def test_a_moved_run_still_loads(run: Path, tmp_path: Path) -> None:
    # The checkpoint state files name checkpoints relative to their folder; only the name is used.
    moved = shutil.copytree(run, tmp_path / "elsewhere" / "renamed")
    assert loading.load(moved).source.path.startswith(str(moved))


def _break(run: Path, tmp_path: Path, how: str) -> Path:
    """A copy of the run, broken one way; returns the target to load."""
    copy = shutil.copytree(run, tmp_path / "broken")
    best = copy / "best"
    prefix = next(best.glob("*.index")).with_suffix("")
    data_file = next(best.glob("*.data-*"))
    config = copy / "config.json"
    if how == "missing":
        return tmp_path / "no-such-run"
    if how == "empty-dir":
        (tmp_path / "empty").mkdir()
        return tmp_path / "empty"
    if how == "no-config":
        config.unlink()
    elif how == "malformed-config":
        config.write_text('{"model": "mlp",')
    elif how == "unknown-model":
        config.write_text(json.dumps({**json.loads(config.read_text()), "model": "resnet"}))
    elif how == "config-not-an-object":
        config.write_text("[1, 2]")
    elif how == "no-checkpoints":
        shutil.rmtree(best)
        shutil.rmtree(copy / "checkpoints")
        (copy / "model.keras").unlink()
    elif how == "state-names-missing-checkpoint":
        Path(f"{prefix}.index").unlink()
    elif how == "missing-data-file":
        data_file.unlink()
    elif how == "truncated-data-file":
        data_file.write_bytes(data_file.read_bytes()[:100])
    elif how == "corrupt-index":
        Path(f"{prefix}.index").write_bytes(b"\x00garbage" * 20)
    elif how == "prefix-without-index":
        Path(f"{prefix}.index").unlink()
        return prefix
    elif how == "wrong-architecture":
        config.write_text(json.dumps({**json.loads(config.read_text()), "hidden": [64]}))
    elif how == "fewer-layers-in-config":
        config.write_text(json.dumps({**json.loads(config.read_text()), "hidden": [256, 256]}))
        return prefix
    elif how == "checkpoint-without-config":
        loose = tmp_path / "loose"
        loose.mkdir()
        for file in best.glob("ckpt-*"):
            shutil.copy(file, loose / file.name)
        return loose / prefix.name
    elif how == "corrupt-keras":
        (copy / "model.keras").write_bytes(b"PK\x03\x04 not really a zip file")
        return copy / "model.keras"
    elif how == "zip-but-not-keras":
        import zipfile

        with zipfile.ZipFile(copy / "model.keras", "w") as archive:
            archive.writestr("readme.txt", "not a model")
        return copy / "model.keras"
    elif how == "foreign-keras":
        import keras

        foreign = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)])
        foreign.save(copy / "foreign.keras")
        return copy / "foreign.keras"
    elif how == "not-a-model":
        return config
    return copy


BROKEN = [
    ("missing", "does not exist"),
    ("empty-dir", "holds no run, checkpoint or model.keras"),
    ("no-config", "config.json"),
    ("malformed-config", "not valid JSON"),
    ("unknown-model", "resnet"),
    ("config-not-an-object", "config.json"),
    ("no-checkpoints", "holds no checkpoint"),
    ("state-names-missing-checkpoint", "index is missing"),
    ("missing-data-file", "cannot be read"),
    ("truncated-data-file", "cannot be read"),
    ("corrupt-index", "cannot be read"),
    ("prefix-without-index", "partial"),
    ("wrong-architecture", "does not fit"),
    ("fewer-layers-in-config", "does not fit"),
    ("checkpoint-without-config", "no config.json"),
    ("corrupt-keras", "is not a Keras model file"),
    ("zip-but-not-keras", "cannot be loaded as a Keras model"),
    ("foreign-keras", "does not take 28x28 uint8 images"),
    ("not-a-model", "is not a model"),
]


@pytest.mark.parametrize(("how", "says"), BROKEN, ids=[how for how, _ in BROKEN])
def test_a_broken_target_is_one_clear_model_error(run: Path, data_dir: Path, tmp_path: Path, how: str, says: str) -> None:
    target = _break(run, tmp_path, how)
    with pytest.raises(ModelError) as caught:
        loading.load(target)
    assert says in caught.value.message
    result = invoke("evaluate", str(target), "--data-dir", str(data_dir))
    assert result.exit_code == MODEL
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error:") and says in lines[0]
    assert len(lines) <= 2 and (len(lines) == 1 or lines[1].startswith("hint:"))


def test_no_runs_at_all_is_a_model_error(tmp_path: Path, data_dir: Path) -> None:
    result = invoke("evaluate", "--data-dir", str(data_dir), env={"MNIST_RUNS_DIR": str(tmp_path / "runs")})
    assert result.exit_code == MODEL and "no runs in" in result.stderr


# --------------------------------------------------------------------------- evaluate


def test_evaluate_agrees_exactly_with_what_train_reported(run: Path, data_dir: Path) -> None:
    trained = json.loads((run / "result.json").read_text())
    payload = evaluate_json(str(run), "--data-dir", str(data_dir))
    assert payload["count"] == N_TEST
    assert payload["accuracy"] == trained["test_accuracy"]
    assert payload["loss"] == pytest.approx(trained["test_loss"], rel=1e-6)
    # The validation split is held out exactly as in training, so its figure matches too.
    val = evaluate_json(str(run), "--data-dir", str(data_dir), "--split", "val")
    assert val["count"] == 60 and val["accuracy"] == trained["best_val_accuracy"]
    train = evaluate_json(str(run), "--data-dir", str(data_dir), "--split", "train")
    assert train["count"] == 540


def test_batch_size_does_not_change_what_is_counted(run: Path, data_dir: Path) -> None:
    payload = evaluate_json(str(run), "--data-dir", str(data_dir), "--batch-size", "500")
    assert payload["count"] == N_TEST == sum(sum(row) for row in payload["confusion_matrix"])
    reference = evaluate_json(str(run), "--data-dir", str(data_dir))
    assert payload["confusion_matrix"] == reference["confusion_matrix"]


def test_json_has_every_figure(run: Path, data_dir: Path) -> None:
    payload = evaluate_json(str(run), "--data-dir", str(data_dir))
    for key in ("accuracy", "loss", "count", "per_class", "confusion_matrix", "top_confusions", "target", "split", "dataset", "seconds", "model"):
        assert key in payload, key
    assert payload["target"] == str(run) and payload["split"] == "test" and payload["dataset"] == "mnist"
    assert payload["model"]["best"] is True and payload["loss_function"] == "mse"
    matrix = np.array(payload["confusion_matrix"])
    assert matrix.shape == (10, 10)
    labels = load_split(data_dir / "mnist", "test")[1]
    assert matrix.sum(axis=1).tolist() == np.bincount(labels, minlength=10).tolist()
    assert payload["accuracy"] == pytest.approx(np.trace(matrix) / N_TEST)
    assert [entry["support"] for entry in payload["per_class"]] == matrix.sum(axis=1).tolist()
    top = payload["top_confusions"][0]
    off = matrix - np.diag(np.diag(matrix))
    assert top["count"] == off.max() and matrix[top["true"], top["predicted"]] == off.max()


def test_plain_output_shows_the_scores_the_matrix_and_the_confusions(run: Path, data_dir: Path) -> None:
    payload = evaluate_json(str(run), "--data-dir", str(data_dir))
    result = invoke("evaluate", str(run), "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert f"{payload['accuracy']:.2%}" in out and f"{payload['loss']:.4f}" in out
    for heading in ("precision", "recall", "F1", "support", "confusion matrix", "most frequent confusions"):
        assert heading in out, heading
    top = payload["top_confusions"][0]
    confusions = out.split("most frequent confusions")[1].splitlines()
    assert any(line.split() == ["│", top["true_name"], "│", top["predicted_name"], "│", f"{top['count']:,}", "│", f"{top['count'] / payload['per_class'][top['true']]['support']:.1%}", "│"] for line in confusions)
    assert "scoring the 1,234 test images" in result.stderr
    assert "\x1b[" not in out  # no colour codes in a pipe


def test_confusion_matrix_colours_errors_by_count() -> None:
    from mnist_cli.cli import evaluate as command
    from mnist_cli.inference import evaluation
    from mnist_cli.report.metrics import compute_metrics

    # A result made by hand: the colours depend on the counts, not on any network.
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 2], dtype=np.uint8)
    predicted = np.array([0, 1, 1, 1, 2, 1, 1, 2], dtype=np.uint8)
    logits = np.eye(10, dtype=np.float32)[predicted]
    source = loading.Source(kind="checkpoint", path="runs/x/best/ckpt-7", target="runs/x", run_dir="runs/x",
                            config_file="runs/x/config.json", best=True, epoch=1, step=7)  # fmt: skip
    result = evaluation.Evaluation(
        metrics=compute_metrics(labels, predicted, class_names=tuple("0123456789"), loss=0.5), source=source,
        dataset="mnist", split="test", loss_function="xent", seconds=0.1,
        images=np.zeros((8, 28, 28), np.uint8), labels=labels, logits=logits,
    )  # fmt: skip
    console = Console(file=io.StringIO(), force_terminal=True, color_system="truecolor", width=120)
    command.render(console, result)
    text = console.file.getvalue()
    assert "\x1b[" in text and "32m" in text  # the diagonal in green
    many, few = command._error_style(9, 9), command._error_style(1, 9)
    assert many.bgcolor.triplet.red > few.bgcolor.triplet.red  # more errors, brighter red


def test_report_writes_pictures_that_open(run: Path, data_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    result = invoke("evaluate", str(run), "--data-dir", str(data_dir), "--report", str(report))
    assert result.exit_code == 0, result.stderr
    for name in ("confusion_matrix.png", "misclassified.png"):
        with Image.open(report / name) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 200
    assert json.loads((report / "metrics.json").read_text())["count"] == N_TEST
    assert str(report) in result.stdout
    payload = evaluate_json(str(run), "--data-dir", str(data_dir), "--report", str(tmp_path / "again"))
    assert {Path(path).name for path in payload["report"]} == {"confusion_matrix.png", "misclassified.png", "metrics.json"}


def test_val_split_of_a_run_without_one_is_a_usage_error(run: Path, data_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(run, tmp_path / "run")
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "val_split": 0.0}))
    result = invoke("evaluate", str(copy), "--data-dir", str(data_dir), "--split", "val")
    assert result.exit_code == USAGE and "no validation split" in result.stderr


def test_a_bare_model_keras_is_evaluated_on_mnist_or_the_dataset_asked_for(run: Path, data_dir: Path, tmp_path: Path) -> None:
    bare = tmp_path / "exported"
    bare.mkdir()
    shutil.copy(run / "model.keras", bare / "model.keras")
    loaded = loading.load(bare / "model.keras")
    assert not loaded.config_known and loaded.dataset is None
    trained = json.loads((run / "result.json").read_text())
    result = invoke("evaluate", str(bare / "model.keras"), "--data-dir", str(data_dir), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["accuracy"] == trained["test_accuracy"]
    assert "assuming --dataset mnist" in result.stderr
    result = invoke("evaluate", str(bare / "model.keras"), "--data-dir", str(data_dir), "--split", "val")
    assert result.exit_code == USAGE and "config.json" in result.stderr


def test_eval_step_traces_once_across_batch_sizes(run: Path, data_dir: Path) -> None:
    from mnist_cli.inference import evaluation

    loaded = loading.load(run)
    images, labels = load_split(data_dir / "mnist", "test")
    for batch_size in (1000, 333, 7):  # 1000 + 234, 333 x 3 + 235, many 7s and a 2
        evaluation.evaluate(loaded, images, labels, dataset="mnist", split="test", batch_size=batch_size)
    assert loaded.eval_step.experimental_get_tracing_count() == 1


@pytest.mark.parametrize(
    "args",
    [
        ["evaluate", "no/such/run"],
        ["evaluate", "--runs-root", "no/such/root"],
        ["predict", "--checkpoint", "no/such/run", "digit.png"],
        ["export", "no/such/run"],
    ],
)
def test_a_wrong_target_fails_before_tensorflow_is_imported(tmp_path: Path, args: list[str]) -> None:
    # A mistyped path is answered in a blink: no 2-3 s TensorFlow import before the error.
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from mnist_cli.cli import app\n"
        f"try:\n    app({args!r})\nexcept SystemExit as exc:\n    code = exc.code\n"
        "print(code, 'tensorflow' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == [str(MODEL), "False"], done.stdout + done.stderr
    assert "error:" in done.stderr
