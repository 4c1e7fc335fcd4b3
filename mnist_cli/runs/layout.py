"""Every name inside a run directory and a study's folder, in one place.

    runs/                       the runs root (runs.runs_root: --runs-root, $MNIST_RUNS_DIR, ./runs)
      <run>/
        config.json             the hyperparameters (core/config.py writes and reads it)
        data.json               where the run's data came from (rundata.py)
        history.json            one entry per epoch
        result.json             written when training finishes
        status.json             a `mnist tune` trial its pruner stopped
        model.keras             the final network
        .lock                   held while `mnist train` writes the run
        checkpoints/ best/      tf.train.CheckpointManager folders, each with its `checkpoint` state file
        train/ validation/      TensorBoard event files (the run itself holds the HParams session)
        .cache/                 LiteRT models built for `mnist predict`
        export/                 `mnist export`'s default destination
      <study>.db (+ .lock)      a study's default SQLite storage
      <study>/
        study.json              marks the folder as a study's
        best-config.json        the best trial's config, for `mnist train --config`
        .workers/               the workers' logs and stop files
        trial-0000/ ...         one run directory per trial

Names only: reading and writing them is runs.py's, listing.py's and their callers' job.
"""

from __future__ import annotations

from pathlib import Path

# config.json is defined beside TrainConfig, whose save and load need it (core sits below runs).
from mnist_cli.core.config import CONFIG_FILE

DATA_FILE = "data.json"
HISTORY_FILE = "history.json"
RESULT_FILE = "result.json"
STATUS_FILE = "status.json"
MODEL_FILE = "model.keras"
LOCK_FILE = ".lock"
CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"
CHECKPOINT_STATE = "checkpoint"  # the text file tf.train.CheckpointManager keeps in each checkpoint directory
# Keras' TensorBoard callback's names, so the curves of both overlay under the same tags.
TENSORBOARD_TRAIN_DIR = "train"
TENSORBOARD_VALIDATION_DIR = "validation"
CACHE_DIR = ".cache"  # also made beside a checkpoint or model file outside a run
EXPORT_DIR = "export"
# `mnist export --format` and the file (or folder) each one writes.
EXPORT_FILES = {"keras": MODEL_FILE, "savedmodel": "saved_model", "tflite": "model.tflite"}
EXPORT_FORMATS = tuple(EXPORT_FILES)  # the choices of `mnist export --format`

STUDY_FILE = "study.json"
BEST_CONFIG_FILE = "best-config.json"
WORKERS_DIR = ".workers"

__all__ = [
    "BEST_CONFIG_FILE",
    "BEST_DIR",
    "CACHE_DIR",
    "CHECKPOINTS_DIR",
    "CHECKPOINT_STATE",
    "CONFIG_FILE",
    "DATA_FILE",
    "EXPORT_DIR",
    "EXPORT_FILES",
    "EXPORT_FORMATS",
    "HISTORY_FILE",
    "LOCK_FILE",
    "MODEL_FILE",
    "RESULT_FILE",
    "STATUS_FILE",
    "STUDY_FILE",
    "TENSORBOARD_TRAIN_DIR",
    "TENSORBOARD_VALIDATION_DIR",
    "WORKERS_DIR",
    "study_database",
    "trial_dir",
    "worker_log",
    "worker_stop_file",
]


def study_database(runs_root: Path, study: str) -> Path:
    """The SQLite file in the runs root that holds a study by default."""
    return Path(runs_root) / f"{study}.db"


def trial_dir(study_dir: Path, number: int) -> Path:
    """The run directory of a study's trial `number`."""
    return Path(study_dir) / f"trial-{number:04d}"


def worker_log(study_dir: Path, parent_pid: int, index: int) -> Path:
    """The log file of the `index`-th worker a `mnist tune` (process `parent_pid`) started."""
    return Path(study_dir) / WORKERS_DIR / f"worker-{parent_pid}-{index}.log"


def worker_stop_file(study_dir: Path, parent_pid: int) -> Path:
    """The file an interrupted `mnist tune` (process `parent_pid`) leaves for its workers: start no new trial."""
    return Path(study_dir) / WORKERS_DIR / f"stop-{parent_pid}"
