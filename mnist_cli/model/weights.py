"""A model's weights on disk: reading them from checkpoints, and saving the `.keras` file.

Shared by the trainer (which saves and resumes) and by inference (which only restores),
so that loading a model never needs the training loop.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mnist_cli.core.errors import ModelError
from mnist_cli.core.fileio import fsync_dir, io_error
from mnist_cli.core.tf_setup import import_tensorflow
from mnist_cli.runs import checkpoint_state
from mnist_cli.runs.layout import CHECKPOINT_STATE

tf = import_tensorflow()


def checkpoint_of(model: Any, optimizer: Any | None = None, state: Any | None = None) -> Any:
    """A tf.train.Checkpoint of the model's variables (and the optimizer's and loop state's, when given)."""
    # Keras 3 models are not tracked as tf.train.Checkpoint children, so their
    # variables are listed explicitly (the order is fixed by the architecture).
    parts: dict[str, Any] = {"model": list(model.variables)}
    if optimizer is not None:
        parts["optimizer"] = list(optimizer.variables)
    if state is not None:
        parts.update(state.variables())
    return tf.train.Checkpoint(**parts)


def stored_number(path: str, name: str) -> float | None:
    try:
        return float(tf.train.load_variable(path, f"{name}/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.OpError, ValueError, TypeError):
        return None


def save_keras_model(model: Any, path: Path) -> None:
    """Export the model as a `.keras` file, atomically: a crash never leaves half a file under its name."""
    # Keras insists on the .keras suffix, so the temporary file keeps it.
    temporary = path.with_name(f".{path.stem}.tmp.keras")
    try:
        model.save(temporary)
        temporary.replace(path)
        fsync_dir(path.parent)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise io_error(exc, f"writing {path}") from None


def restore(checkpoint: Any, path: str) -> None:
    # Every variable of the run must match; the checkpoint's own save counter is only
    # restored once the manager saves again, which a finished run never does, and TF
    # would then log a warning about it on exit.
    _read(checkpoint, path).assert_existing_objects_matched().expect_partial()


def _read(checkpoint: Any, path: str) -> Any:
    try:
        return checkpoint.read(path)
    # A truncated .data file surfaces as an IndexError ("Read less bytes than requested").
    except (tf.errors.OpError, ValueError, AssertionError, IndexError) as exc:
        message = getattr(exc, "message", str(exc)).splitlines()[0]
        raise ModelError(f"checkpoint {path} cannot be read: {message}", "it may be partial or corrupt; use another checkpoint or train again") from None


def restore_weights(model: Any, path: str) -> None:
    """Load only the model's weights from a checkpoint prefix, checking that every one matches."""
    try:
        stored = dict(tf.train.list_variables(path))
    except (tf.errors.OpError, ValueError) as exc:
        message = getattr(exc, "message", str(exc)).splitlines()[0]
        raise ModelError(f"checkpoint {path} cannot be read: {message}", "it may be partial or corrupt; use another checkpoint or train again") from None
    for index, variable in enumerate(model.variables):
        key = f"model/{index}/.ATTRIBUTES/VARIABLE_VALUE"
        if key not in stored or list(stored[key]) != list(variable.shape):
            raise ModelError(
                f"checkpoint {path} does not fit the model in its config.json (variable {index}: {variable.path})",
                "the checkpoint and config.json come from different runs",
            )
    _read(checkpoint_of(model), path).expect_partial()


def latest_in(directory: Path) -> str | None:
    """The newest checkpoint prefix recorded in a checkpoint directory, if any; never one outside it.

    A state file that is damaged, or that records a checkpoint whose files are gone, is a
    ModelError: starting again from nothing would overwrite a run that only needs repair.
    """
    state = check_state(directory)
    if state is None:
        return None
    try:
        path = tf.train.latest_checkpoint(str(directory))
    except (tf.errors.OpError, ValueError):
        path = None
    if path is None:
        raise checkpoint_state.state_refused(Path(directory) / CHECKPOINT_STATE, f"names {state.latest}, whose files are missing")
    return path


def check_state(directory: Path) -> checkpoint_state.CheckpointState | None:
    """Refuse a checkpoint state file that is damaged or names files outside its own directory."""
    # Parsed strictly without TF first: TF would block on a FIFO, read a huge file whole,
    # and treat an unparsable file as "no checkpoint" (logging a warning).
    state = checkpoint_state.read_checkpoint_state(directory)
    if state is None:
        return None
    inside = os.path.normpath(str(directory))
    # TF joins relative paths to the directory itself; an absolute path or `..` leads elsewhere.
    for path in state.paths:
        joined = path if os.path.isabs(path) else os.path.join(str(directory), path)
        if os.path.dirname(os.path.normpath(joined)) != inside:
            raise ModelError(
                f"{Path(directory) / 'checkpoint'} names {path}, outside {directory}; refusing to use it",
                "the run directory was altered or is not from `mnist train`; train again, or point at a checkpoint prefix inside it",
            )
    return state
