"""TensorBoard summaries of a run: `tensorboard --logdir runs` shows every run.

Layout follows Keras' TensorBoard callback: `<run>/train` and `<run>/validation`
hold scalars with the same tags so the curves overlay; the run directory itself
holds the HParams session, the config as text and the test figures.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from mnist_cli.core.config import DATASET_NAMES, LOSSES, MODELS, OPTIMIZERS, PRECISIONS, RECIPES, SCHEDULES, TrainConfig, format_hidden
from mnist_cli.report.metrics import misclassified
from mnist_cli.report.pictures import digit_grid_array
from mnist_cli.core.tf_setup import import_tensorflow

tf = import_tensorflow()

_GRID_LIMIT = 40


def _histogram(tag: str, values: np.ndarray, *, step: int, buckets: int = 30) -> None:
    # tf.summary.histogram buckets with a one-hot matrix of values x buckets in eager
    # ops: 70 ms per epoch for the MLP's weights. numpy does the same in 3 ms, and the
    # result is written in the histogram plugin's own [left, right, count] format.
    from tensorboard.plugins.histogram import metadata

    counts, edges = np.histogram(values.astype(np.float64).ravel(), bins=buckets)
    tensor = np.stack([edges[:-1], edges[1:], counts.astype(np.float64)], axis=1)
    tf.summary.write(tag, tensor, step=step, metadata=metadata.create_summary_metadata(display_name=None, description=None))


# The figures the HParams dashboard sets beside the hyperparameters: (tag, run group, name).
# Without this declaration TensorBoard lists every scalar it finds, batch_* included.
HPARAMS_METRICS = (
    ("epoch_accuracy", "validation", "validation accuracy"),
    ("epoch_loss", "validation", "validation loss"),
    ("epoch_accuracy", "train", "train accuracy"),
    ("epoch_loss", "train", "train loss"),
    ("test/accuracy", "", "test accuracy"),
    ("test/loss", "", "test loss"),
)
# Hyperparameters that mean something for one network only.
_MODEL_ONLY = {"hidden": "mlp"}
_CHOICES = {
    "dataset": DATASET_NAMES,
    "model": MODELS,
    "loss": LOSSES,
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "precision": PRECISIONS,
    "precision_downgraded_from": PRECISIONS,
    "recipe": (*RECIPES, "none"),
    "augment": (False, True),
}


def _hparams(config: TrainConfig) -> dict[str, Any]:
    values = config.to_dict()
    values["hidden"] = format_hidden(config.hidden)
    values["recipe"] = config.recipe or "none"  # HParams takes no null values; the others unset are left out
    return {
        name: value
        for name, value in values.items()
        if value is not None and _MODEL_ONLY.get(name, config.model) == config.model
    }


def _hparams_config() -> Any:
    """The experiment: every hyperparameter a run may have, and the metrics that matter (HPARAMS_METRICS).

    TensorBoard reads one experiment for the whole logdir, from whichever run it finds first,
    so every run writes the same one.
    """
    from tensorboard.plugins.hparams import api as hp

    names = [field.name for field in dataclasses.fields(TrainConfig)]
    hparams = [hp.HParam(name, hp.Discrete(list(_CHOICES[name])) if name in _CHOICES else None) for name in names]
    metrics = [hp.Metric(tag, group=group or None, display_name=name) for tag, group, name in HPARAMS_METRICS]
    return hp.hparams_config(hparams=hparams, metrics=metrics)


def run_name(run_dir: Path) -> str:
    """The run's name as `mnist runs` lists it: its folder, after its study's for a `mnist tune` trial."""
    from mnist_cli.runs.layout import STUDY_FILE

    run_dir = Path(run_dir)
    return f"{run_dir.parent.name}/{run_dir.name}" if (run_dir.parent / STUDY_FILE).is_file() else run_dir.name


def middle_step(step: int, steps: int) -> int:
    """The global step in the middle of the `steps` steps that end at `step`."""
    return int(round(step - (steps - 1) / 2))


class RunSummaries:
    """Writers for one run; every write happens in the Python loop, never in a compiled step."""

    def __init__(self, run_dir: Path, config: TrainConfig, class_names: tuple[str, ...]) -> None:
        self.config = config
        self.class_names = class_names
        self.name = run_name(run_dir)
        from mnist_cli.runs.layout import TENSORBOARD_TRAIN_DIR, TENSORBOARD_VALIDATION_DIR
        from mnist_cli.runs.runs import run_subdir

        self.root = tf.summary.create_file_writer(str(run_dir))
        # run_subdir refuses a link: event files are written only inside the run.
        self.train = tf.summary.create_file_writer(str(run_subdir(run_dir, TENSORBOARD_TRAIN_DIR)))
        self.validation = tf.summary.create_file_writer(str(run_subdir(run_dir, TENSORBOARD_VALIDATION_DIR)))

    def start(self, *, sample_images: np.ndarray, sample_labels: np.ndarray, resumed: bool) -> None:
        """Record the hyperparameters, the config and a grid of sample inputs."""
        from tensorboard.plugins.hparams import api as hp

        with self.root.as_default():
            _hparams_config()
            # The run's name as the dashboard's row, where TensorBoard would show a hash of the values.
            hp.hparams(_hparams(self.config), trial_id=self.name)
            if not resumed:
                text = "```json\n" + json.dumps(self.config.to_dict(), indent=2) + "\n```"
                tf.summary.text("config", text, step=0)
        if not resumed:
            with self.train.as_default():
                captions = [self.class_names[int(label)] for label in sample_labels]
                grid = digit_grid_array(sample_images, captions=captions, columns=10, scale=2)
                tf.summary.image("sample_inputs", grid[None], step=0)
        self.flush()

    def steps(
        self, *, step: int, loss: float, accuracy: float, learning_rate: float, samples_per_second: float, steps: int = 1
    ) -> None:
        """Scalars of the chunk of `steps` steps that ended at global step `step`, between compiled calls."""
        # A chunk's means are plotted in the middle of the steps they average: chunks of unequal
        # length (200 steps, then the epoch's last 82) would otherwise lag the curve by different
        # amounts and draw a saw-tooth.
        middle = middle_step(step, steps)
        with self.train.as_default():
            tf.summary.scalar("batch_loss", loss, step=middle)
            tf.summary.scalar("batch_accuracy", accuracy, step=middle)
            tf.summary.scalar("learning_rate", learning_rate, step=step)
            tf.summary.scalar("samples_per_second", samples_per_second, step=step)

    def epoch(
        self,
        *,
        epoch: int,
        train: dict[str, float],
        val: dict[str, float] | None,
        model: Any,
        val_images: np.ndarray | None = None,
        val_labels: np.ndarray | None = None,
        val_predictions: np.ndarray | None = None,
    ) -> None:
        """Epoch scalars, weight histograms and misclassified validation digits; flushed."""
        with self.train.as_default():
            tf.summary.scalar("epoch_loss", train["loss"], step=epoch)
            tf.summary.scalar("epoch_accuracy", train["accuracy"], step=epoch)
            tf.summary.scalar("epoch_samples_per_second", train["samples_per_second"], step=epoch)
            for variable in model.trainable_variables:
                _histogram(variable.path, variable.numpy(), step=epoch)
        if val is not None:
            with self.validation.as_default():
                tf.summary.scalar("epoch_loss", val["loss"], step=epoch)
                tf.summary.scalar("epoch_accuracy", val["accuracy"], step=epoch)
                if val_images is not None and val_labels is not None and val_predictions is not None:
                    wrong = misclassified(val_labels, val_predictions, limit=_GRID_LIMIT)
                    if len(wrong):
                        captions = [
                            f"{self.class_names[int(val_labels[i])]}→{self.class_names[int(val_predictions[i])]}" for i in wrong
                        ]
                        grid = digit_grid_array(val_images[wrong], captions=captions, columns=10, scale=2)
                        tf.summary.image("misclassified", grid[None], step=epoch)
        self.flush()

    def test(self, *, epoch: int, accuracy: float, loss: float) -> None:
        """The final test figures, which the HParams dashboard shows beside the hyperparameters."""
        with self.root.as_default():
            tf.summary.scalar("test/accuracy", accuracy, step=epoch)
            tf.summary.scalar("test/loss", loss, step=epoch)
        self.flush()

    def flush(self) -> None:
        """Make everything written so far visible to a running TensorBoard."""
        for writer in (self.root, self.train, self.validation):
            writer.flush()

    def close(self) -> None:
        """Flush and close the event files."""
        for writer in (self.root, self.train, self.validation):
            writer.close()
