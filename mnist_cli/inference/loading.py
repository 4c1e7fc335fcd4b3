"""Finding and loading a trained model: a run directory, a checkpoint directory or prefix, or a model.keras.

`resolve` decides what a target names without TensorFlow, so a wrong path fails in a
blink; `load` builds the network from the run's config.json and restores its weights.
Every way a target can be missing or broken ends in one `ModelError` line.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_cli.runs import checkpoint_state, layout, runs
from mnist_cli.core.config import TrainConfig
from mnist_cli.core.errors import ModelError, first_line
from mnist_cli.runs.layout import CHECKPOINT_STATE, CONFIG_FILE
from mnist_cli.model import float32 as float32_twin, keras_file
from mnist_cli.model.signature import INPUT_DTYPE, INPUT_SHAPE, LOGITS, OUTPUT_SHAPES

CHECKPOINT = "checkpoint"
KERAS = "keras"

_STEP = re.compile(r"-(\d+)$")
_DATA_SUFFIX = re.compile(r"\.data-\d+-of-\d+$")
_TARGETS = "a run directory, a checkpoint directory, a checkpoint prefix (runs/x/checkpoints/ckpt-7) or a model.keras file"


@dataclass(frozen=True)
class Target:
    """What a target names: a checkpoint prefix or a .keras file, and the config.json that goes with it."""

    kind: str  # CHECKPOINT or KERAS
    path: Path  # the checkpoint prefix, or the .keras file
    given: str  # the target as the user wrote it (or the run chosen by default)
    config_file: Path | None
    run_dir: Path | None
    best: bool = False  # the run's best checkpoint (by validation accuracy)


@dataclass(frozen=True)
class Source:
    """What was loaded, for people (`describe`) and for `--json` (`to_dict`)."""

    kind: str
    path: str
    target: str
    run_dir: str | None
    config_file: str | None
    best: bool
    epoch: int | None  # the epoch the checkpoint was saved in (at its end unless `partial`)
    step: int | None  # the optimizer step, from the checkpoint's name
    partial: bool = False  # saved part-way through `epoch` (--checkpoint-every)

    def describe(self) -> str:
        """One line, such as "runs/x/best/ckpt-17 (best checkpoint, epoch 1, step 17)"."""
        if self.kind == KERAS:
            what = "exported model" + ("" if self.config_file else ", no config.json beside it")
        else:
            what = "best checkpoint" if self.best else "checkpoint"
            if self.epoch is not None:
                what += f", {'part-way through ' if self.partial else ''}epoch {self.epoch}"
            if self.step is not None:
                what += f", step {self.step:,}"
        return f"{self.path} ({what})"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {
            "kind": self.kind,
            "path": self.path,
            "target": self.target,
            "run_dir": self.run_dir,
            "config_file": self.config_file,
            "best": self.best,
            "epoch": self.epoch,
            "step": self.step,
            "partial": self.partial,
        }


@dataclass(frozen=True, eq=False)
class Loaded:
    """A model ready to use, the config it was trained with, and where it came from."""

    model: Any
    config: TrainConfig
    source: Source
    config_known: bool  # False for a model.keras with no config.json beside it: the config is the default

    @property
    def dataset(self) -> str | None:
        """The data set the model was trained on, when its config is known."""
        return self.config.dataset if self.config_known else None

    @functools.cached_property
    def predict_step(self) -> Any:
        """The compiled logits function (built on first use, traced once)."""
        from mnist_cli.model import steps

        return steps.make_predict_step(self.model)

    def logits(self, images: Any, *, batch_size: int) -> Any:
        """Logits for uint8 images [N, 28, 28], batch by batch."""
        from mnist_cli.model import scoring

        return scoring.predict_logits(self.predict_step, images, batch_size=batch_size)

    @functools.cached_property
    def eval_step(self) -> Any:
        """The compiled (losses, logits) function with the run's loss (built on first use, traced once)."""
        from mnist_cli.model import steps

        return steps.make_eval_step(self.model, self.config)


def resolve(target: Path | str | None, *, runs_root: Path | None = None) -> Target:
    """Decide what `target` names (default: the most recent run under the runs root), without loading it."""
    if target is None:
        latest = runs.latest_run(runs.runs_root(runs_root))
        return _resolve_dir(latest, given=str(latest))
    given = str(target)
    path = Path(target)
    if path.is_dir():
        return _resolve_dir(path, given=given)
    if path.is_file():
        if path.suffix == ".keras":
            config = path.parent / CONFIG_FILE
            return Target(KERAS, path, given, config if config.is_file() else None, path.parent if config.is_file() else None)
        # `ckpt-7.index` or `ckpt-7.data-00000-of-00001` mean the checkpoint `ckpt-7`.
        if path.suffix == ".index":
            return _prefix_target(path.with_suffix(""), given=given)
        if _DATA_SUFFIX.search(path.name):
            return _prefix_target(path.with_name(_DATA_SUFFIX.sub("", path.name)), given=given)
        raise ModelError(f"{path} is not a model: give {_TARGETS}", "list your runs with `mnist runs`")
    if Path(f"{path}.index").is_file() or path.parent.is_dir() and _STEP.search(path.name) and _has_data(path):
        return _prefix_target(path, given=given)
    if path.exists():
        raise ModelError(f"{path} is neither a file nor a directory", f"give {_TARGETS}")
    raise ModelError(f"{path} does not exist", f"give {_TARGETS}; list your runs with `mnist runs`")


def load(target: Path | str | None, *, runs_root: Path | None = None, float32: bool = False) -> Loaded:
    """Resolve `target` and load its model (weights checked against the config), or raise ModelError.

    `float32` gives the network in float32 whatever precision it was trained in, as `mnist
    predict` runs it: a checkpoint's is built so (it holds float32 weights either way), a
    mixed-precision model.keras is copied layer by layer (`float32_copy`).
    """
    try:
        return load_resolved(resolve(target, runs_root=runs_root), float32=float32)
    except OSError as exc:  # a folder on the way that may not be read, for example
        from mnist_cli.core.fileio import io_error

        raise io_error(exc, f"reading {target if target is not None else 'the most recent run'}") from None


def load_resolved(target: Target, *, float32: bool = False) -> Loaded:
    """Load the model a resolved target names (see `load`)."""
    try:
        if target.kind == KERAS:
            return _load_keras(target, float32=float32)
        return _load_checkpoint(target, float32=float32)
    except OSError as exc:
        from mnist_cli.core.fileio import io_error

        raise io_error(exc, f"reading {target.given}") from None


def resolve_checked(target: Path | str | None, *, runs_root: Path | None = None) -> Target:
    """`resolve`, with an unreadable folder on the way reported as one error line."""
    try:
        return resolve(target, runs_root=runs_root)
    except OSError as exc:
        from mnist_cli.core.fileio import io_error

        raise io_error(exc, f"reading {target if target is not None else 'the most recent run'}") from None


# --- resolving ---------------------------------------------------------------------------


def _has_data(prefix: Path) -> bool:
    return any(prefix.parent.glob(f"{glob.escape(prefix.name)}.data-*"))


def _checkpoint_step(prefix: Path) -> int | None:
    match = _STEP.search(prefix.name)
    return int(match.group(1)) if match else None


def _newest_checkpoint(directory: Path) -> Path | None:
    """The checkpoint a directory's state file names (looked up inside the directory only), else its highest-numbered one."""
    state = checkpoint_state.read_checkpoint_state(directory)  # strict: a damaged state file is refused, listing what is there
    if state is not None:
        # Only the file name is used: a run that was moved keeps working, and a state file
        # can never send the loader outside the directory it sits in.
        name = Path(state.latest).name
        prefix = directory / name
        if not Path(f"{prefix}.index").is_file():
            present = checkpoint_state.checkpoints_in(directory)
            raise ModelError(
                f"{directory / CHECKPOINT_STATE} names {name}, but {prefix}.index is missing",
                "the checkpoint is partial; "
                + (f"point at another one in the directory ({', '.join(present)})" if present else "train again"),
            )
        return prefix
    present = checkpoint_state.checkpoints_in(directory)
    return directory / present[-1] if present else None


def _find_config(start: Path) -> Path | None:
    # A checkpoint sits in runs/x/checkpoints/ or runs/x/best/, so its config.json is one
    # directory up; a copied checkpoint may have it beside. Never further: a config.json
    # higher up belongs to something else.
    for directory in (start, start.parent):
        candidate = directory / CONFIG_FILE
        if candidate.is_file():
            return candidate
    return None


def _resolve_dir(directory: Path, *, given: str) -> Target:
    config = directory / CONFIG_FILE
    is_run = config.is_file() or (directory / layout.BEST_DIR).is_dir() or (directory / layout.CHECKPOINTS_DIR).is_dir()
    if is_run:
        for sub, best in ((layout.BEST_DIR, True), (layout.CHECKPOINTS_DIR, False)):
            if (directory / sub).is_dir():
                prefix = _newest_checkpoint(directory / sub)
                if prefix is not None:
                    return Target(CHECKPOINT, prefix, given, config if config.is_file() else None, directory, best=best)
        prefix = _newest_checkpoint(directory)
        if prefix is not None:
            return Target(CHECKPOINT, prefix, given, config if config.is_file() else None, directory)
        if (directory / layout.MODEL_FILE).is_file():
            return Target(KERAS, directory / layout.MODEL_FILE, given, config if config.is_file() else None, directory)
        raise ModelError(
            f"{directory} holds no checkpoint (nothing in {layout.BEST_DIR}/ or {layout.CHECKPOINTS_DIR}/)",
            f"finish its training with `mnist train --run-dir {directory} --resume`, or pick another run",
        )
    prefix = _newest_checkpoint(directory)
    if prefix is not None:
        config_file = _find_config(directory)
        return Target(CHECKPOINT, prefix, given, config_file, config_file.parent if config_file else None, best=directory.name == layout.BEST_DIR)
    if (directory / layout.MODEL_FILE).is_file():
        return Target(KERAS, directory / layout.MODEL_FILE, given, None, None)
    raise ModelError(f"{directory} holds no run, checkpoint or model.keras", f"give {_TARGETS}")


def _prefix_target(prefix: Path, *, given: str) -> Target:
    if not Path(f"{prefix}.index").is_file():
        raise ModelError(f"checkpoint {prefix} is partial: {prefix.name}.index is missing", "use another checkpoint, or train again")
    config_file = _find_config(prefix.parent)
    return Target(
        CHECKPOINT,
        prefix,
        given,
        config_file,
        config_file.parent if config_file else None,
        best=prefix.parent.name == layout.BEST_DIR,
    )


# --- loading ------------------------------------------------------------------------------


def _load_checkpoint(target: Target, *, float32: bool = False) -> Loaded:
    if target.config_file is None:
        raise ModelError(
            f"no {CONFIG_FILE} for checkpoint {target.path} (looked in {target.path.parent} and {target.path.parent.parent})",
            "a checkpoint needs the config.json of its run to rebuild the network; point at the run directory",
        )
    config = TrainConfig.load(target.config_file.parent)

    from mnist_cli.model import weights
    from mnist_cli.model.network import build_model
    from mnist_cli.core.tf_setup import import_tensorflow

    tf = import_tensorflow()
    # Mixed precision only speeds training up; its variables are float32 all the same.
    model = build_model(dataclasses.replace(config, precision="float32") if float32 else config)
    prefix = str(target.path)
    try:
        weights.restore_weights(model, prefix)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - TF's reader raises IndexError and others for truncated files
        raise ModelError(
            f"checkpoint {prefix} cannot be read: {first_line(exc)}",
            "it may be partial or corrupt; use another checkpoint or train again",
        ) from None
    # restore_weights checks each of the model's variables; a checkpoint with more
    # layers than the config describes would pass that, so the count is checked too.
    stored = [name for name, _ in tf.train.list_variables(prefix) if name.startswith("model/")]
    if len(stored) != len(model.variables):
        raise ModelError(
            f"checkpoint {prefix} does not fit the model in {target.config_file} "
            f"({len(stored)} stored variables, the config's model has {len(model.variables)})",
            "the checkpoint and config.json come from different runs",
        )
    completed, step_in_epoch = _stored_int(tf, prefix, "epoch"), _stored_int(tf, prefix, "step_in_epoch")
    partial = bool(step_in_epoch)
    epoch = (None if completed is None else completed + 1 if partial else completed) or None
    source = Source(
        kind=CHECKPOINT,
        path=prefix,
        target=target.given,
        run_dir=str(target.run_dir) if target.run_dir else None,
        config_file=str(target.config_file),
        best=target.best,
        epoch=epoch,
        step=_checkpoint_step(target.path),
        partial=partial,
    )
    return Loaded(model=model, config=config, source=source, config_known=True)


def _stored_int(tf: Any, prefix: str, name: str) -> int | None:
    try:
        return int(tf.train.load_variable(prefix, f"{name}/.ATTRIBUTES/VARIABLE_VALUE"))
    except Exception:  # noqa: BLE001 - a checkpoint without the loop's state (saved by other code) is fine
        return None


def _load_keras(target: Target, *, float32: bool = False) -> Loaded:
    config = TrainConfig.load(target.config_file.parent) if target.config_file else TrainConfig()
    keras_file.check_archive(target.path)  # before TensorFlow is imported: a bad file fails in a blink
    from mnist_cli.core.tf_setup import import_tensorflow, native_stderr_silenced

    import_tensorflow()
    import keras

    try:
        # Keras warns (on stderr) about members it skips; check_archive refused those already.
        with warnings.catch_warnings(), native_stderr_silenced():  # h5py/HDF5 diagnostics too
            warnings.simplefilter("ignore")
            model = keras.saving.load_model(target.path, safe_mode=True, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for damaged or foreign files
        raise ModelError(
            f"{target.path} cannot be loaded as a Keras model: {first_line(exc)}",
            "it may be corrupt or from another program; export it again with `mnist export`, or use the run's checkpoints",
        ) from None
    _check_io(model, target.path)
    if float32 and float32_twin.is_mixed(model):
        model = float32_twin.float32_copy(model)
    source = Source(
        kind=KERAS,
        path=str(target.path),
        target=target.given,
        run_dir=str(target.run_dir) if target.run_dir else None,
        config_file=str(target.config_file) if target.config_file else None,
        best=False,
        epoch=None,
        step=None,
    )
    return Loaded(model=model, config=config, source=source, config_known=target.config_file is not None)


def _check_io(model: Any, path: Path) -> None:
    """A model that does not map uint8 [N, 28, 28] pixels to 10 logits would give silent nonsense."""
    try:
        inputs = list(model.inputs)
        outputs = list(model.outputs)
        shapes = (tuple(inputs[0].shape), str(inputs[0].dtype), tuple(outputs[0].shape))
    except Exception:  # noqa: BLE001 - a subclassed model has no symbolic inputs
        shapes = None
    expected = (_keras_shape(INPUT_SHAPE), INPUT_DTYPE, _keras_shape(OUTPUT_SHAPES[LOGITS]))
    if shapes is None or len(inputs) != 1 or len(outputs) != 1 or shapes != expected:
        found = "an unknown signature" if shapes is None else f"{shapes[1]} {list(shapes[0])} -> {list(shapes[2])}"
        raise ModelError(
            f"{path} does not take 28x28 uint8 images and return 10 logits (it has {found})",
            "use a model.keras written by `mnist train` or `mnist export`",
        )


def _keras_shape(shape: tuple[int, ...]) -> tuple[int | None, ...]:
    """A contract shape as Keras writes it: None, not -1, for any size."""
    return tuple(None if size == -1 else size for size in shape)
