"""What TensorBoard shows of a run, read back from its event files: smooth batch curves and the HParams dashboard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import write_tiny_dataset
from mnist_cli.core.config import TrainConfig
from mnist_cli.data import load_splits

summaries = pytest.importorskip("mnist_cli.training.summaries")
from mnist_cli.training import trainer  # noqa: E402


def scalars(directory: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of every `tag` summary in a folder's event files, in the order written."""
    import tensorflow as tf

    found = []
    for path in sorted(directory.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == tag:
                    found.append((event.step, float(tf.make_ndarray(value.tensor))))
    return found


def hparams_plugin_data(run_dir: Path) -> dict[str, object]:
    """The HParams plugin's records in a run's own event files, by kind (experiment, session_start_info)."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import plugin_data_pb2

    records: dict[str, object] = {}
    for path in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    records[data.WhichOneof("data")] = getattr(data, data.WhichOneof("data"))
    return records


def test_batch_curves_are_smooth_when_chunks_of_200_and_82_steps_alternate(tmp_path: Path) -> None:
    # An epoch of 282 steps logged every 200: chunks of 200 and 82 steps. The accuracy rises by the
    # same amount every step, so each chunk's mean is the accuracy in its middle; a smooth curve
    # puts every point on one straight line.
    writer = summaries.RunSummaries(tmp_path / "run", TrainConfig(), tuple("0123456789"))
    step, slope = 0, 1e-4
    for _ in range(5):
        for length in (200, 82):
            first, step = step + 1, step + length
            mean = slope * (first + step) / 2
            writer.steps(step=step, steps=length, loss=1 - mean, accuracy=mean, learning_rate=0.01, samples_per_second=1.0)
    writer.close()
    points = scalars(tmp_path / "run" / "train", "batch_accuracy")
    assert len(points) == 10
    steps, values = np.array(points).T
    assert (np.diff(steps) > 0).all() and steps[-1] <= step
    # Within half a step of the line (steps are whole numbers); at the chunks' ends the 82-step
    # points would sit 59 steps above the 200-step ones.
    residual = values - slope * steps
    assert np.abs(residual).max() <= slope * 0.5 + 1e-9, residual / slope
    # The rate and the speed stay at the step they were measured after.
    assert [point[0] for point in scalars(tmp_path / "run" / "train", "learning_rate")][:2] == [200, 282]


@pytest.fixture(scope="module")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder with an MLP run, a convnet run and a trial of a `mnist tune` study."""
    root = tmp_path_factory.mktemp("tensorboard")
    data = write_tiny_dataset(root / "data" / "mnist", n_train=200, n_test=40)
    splits = load_splits(data, dataset="mnist", val_split=0.1, seed=0)
    runs = root / "runs"
    trainer.fit(TrainConfig(epochs=1, log_every=2, hidden=(16,)), splits, run_dir=runs / "an-mlp")
    trainer.fit(TrainConfig(epochs=1, model="cnn", loss="xent", optimizer="adam", batch_size=60), splits, run_dir=runs / "a-cnn")
    (runs / "study").mkdir()
    (runs / "study" / "study.json").write_text("{}")
    trainer.fit(TrainConfig(epochs=1, hidden=(8,)), splits, run_dir=runs / "study" / "trial-0000")
    return runs


def test_hparams_rows_are_named_after_the_runs(logdir: Path) -> None:
    names = {
        run: hparams_plugin_data(logdir / run)["session_start_info"].group_name  # type: ignore[attr-defined]
        for run in ("an-mlp", "a-cnn", "study/trial-0000")
    }
    assert names == {"an-mlp": "an-mlp", "a-cnn": "a-cnn", "study/trial-0000": "study/trial-0000"}


def test_a_convnet_lists_no_mlp_only_hyperparameter(logdir: Path) -> None:
    mlp = hparams_plugin_data(logdir / "an-mlp")["session_start_info"].hparams  # type: ignore[attr-defined]
    cnn = hparams_plugin_data(logdir / "a-cnn")["session_start_info"].hparams  # type: ignore[attr-defined]
    assert mlp["hidden"].string_value == "16" and "hidden" not in cnn
    assert cnn["model"].string_value == "cnn" and cnn["optimizer"].string_value == "adam"
    assert cnn["recipe"].string_value == "none" and "precision_downgraded_from" not in cnn


def test_the_experiment_declares_the_metrics_that_matter_and_every_hyperparameter(logdir: Path) -> None:
    experiments = [hparams_plugin_data(logdir / run)["experiment"] for run in ("an-mlp", "a-cnn", "study/trial-0000")]
    assert experiments[0] == experiments[1] == experiments[2]  # TensorBoard reads whichever it finds first
    metrics = {(info.name.group, info.name.tag): info.display_name for info in experiments[0].metric_infos}  # type: ignore[attr-defined]
    assert metrics == {
        ("validation", "epoch_accuracy"): "validation accuracy",
        ("validation", "epoch_loss"): "validation loss",
        ("train", "epoch_accuracy"): "train accuracy",
        ("train", "epoch_loss"): "train loss",
        ("", "test/accuracy"): "test accuracy",
        ("", "test/loss"): "test loss",
    }
    hparams = {info.name: info for info in experiments[0].hparam_infos}  # type: ignore[attr-defined]
    assert {"hidden", "model", "lr", "precision", "recipe"} <= set(hparams)
    assert {value.string_value for value in hparams["model"].domain_discrete.values} == {"mlp", "cnn"}
    # Each declared metric is there to be read where the declaration says.
    for group, tag in metrics:
        assert scalars(logdir / "a-cnn" / group if group else logdir / "a-cnn", tag), (group, tag)
