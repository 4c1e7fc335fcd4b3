"""Where a run's data came from: `data.json` beside `config.json`.

Kept apart from `config.json`, which holds only what rebuilds the model: the data's
location belongs to this machine, not to the network. Commands that take a run and
need data (`evaluate`, `train --resume`) read it when no `--data-dir` is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from mnist_cli.core.fileio import atomic_write_text
from mnist_cli.core.safeio import read_json
from mnist_cli.runs.layout import DATA_FILE

_MAX_BYTES = 64 * 1024  # a real data.json is a few hundred bytes


@dataclass(frozen=True)
class DataSource:
    """The data set a run used and the --data-dir folder that holds `<dataset>/`."""

    dataset: str
    data_dir: Path


def record(run_dir: Path, *, dataset: str, directory: Path) -> None:
    """Write `data.json`: the data set, and the absolute folder holding its four files."""
    directory = Path(directory).absolute()
    payload = {"dataset": dataset, "data_dir": str(directory.parent), "directory": str(directory)}
    atomic_write_text(Path(run_dir) / DATA_FILE, json.dumps(payload, indent=2) + "\n")


def read(run_dir: Path) -> DataSource | None:
    """The recorded data source, or None when the run has none or it is unreadable (never raises)."""
    try:
        data = read_json(Path(run_dir) / DATA_FILE, limit=_MAX_BYTES)
    except (OSError, ValueError):  # UnsafeFile is a ValueError: not a regular file, too large, not JSON
        return None
    if not isinstance(data, dict):
        return None
    dataset, folder = data.get("dataset"), data.get("data_dir")
    if not isinstance(dataset, str) or not isinstance(folder, str) or not folder or "\x00" in folder:
        return None
    return DataSource(dataset, Path(folder))


def data_dir_for(run_dir: Path | None, dataset: str, given: Path | None) -> tuple[Path | None, str | None]:
    """The --data-dir to use with a run, and a note to print when the recorded one is gone.

    An explicit `given` folder wins; else the folder the run recorded, while it still holds
    `<dataset>/`; else None (the usual location: MNIST_DATA_DIR or the user cache).
    """
    if given is not None or run_dir is None:
        return given, None
    source = read(run_dir)
    if source is None:
        return None, None
    if (source.data_dir / dataset).is_dir():
        return source.data_dir, None
    return None, f"the run's data folder {source.data_dir / dataset} is gone; using the usual data location"
