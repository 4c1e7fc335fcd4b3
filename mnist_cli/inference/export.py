"""Exporting a trained model: a Keras file, a SavedModel with a serving signature, or TFLite.

Every export takes uint8 images [N, 28, 28] and scales them itself (the model does),
and is checked against the loaded model on a fixed batch before it takes its name.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_cli.core.errors import ModelError
from mnist_cli.core.fileio import fsync_dir, io_error
from mnist_cli.core.tf_setup import import_tensorflow, native_stderr_silenced
from mnist_cli.model import float32
from mnist_cli.model.signature import CLASSES, INPUT, INPUT_DTYPE, INPUT_SHAPE, LOGITS, PROBABILITIES, SIGNATURE
from mnist_cli.runs.layout import EXPORT_DIR, EXPORT_FILES as FORMATS

tf = import_tensorflow()

FLOAT32_FORMATS = ("savedmodel", "tflite")  # written in float32 whatever precision the network trained in
_CHECK_IMAGES = 64
TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportResult:
    """Where the export went and how closely it matches the source model."""

    path: str
    format: str
    bytes: int
    checked_images: int
    max_abs_logit_difference: float
    same_predictions: bool
    converted_to_float32: bool = False  # a mixed-precision network, written in float32 (FLOAT32_FORMATS)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return asdict(self)


def default_output(run_dir: Path | None, source_path: Path, export_format: str) -> Path:
    """`<run>/export/<file>` for a run, else beside the source model."""
    from mnist_cli.runs.runs import run_subdir

    # Never through a link: an export/ linked elsewhere would be written (and replaced) outside the run.
    base = run_subdir(run_dir, EXPORT_DIR) if run_dir is not None else Path(source_path).parent
    return base / FORMATS[export_format]


def check_images() -> np.ndarray:
    """A fixed batch of digit-like uint8 images for comparing a model with its export."""
    rng = np.random.default_rng(0)
    images = np.zeros((_CHECK_IMAGES, *INPUT_SHAPE[1:]), INPUT_DTYPE)
    for index in range(_CHECK_IMAGES):
        top, left = rng.integers(4, 12, size=2)
        images[index, top : top + 12, left : left + 12] = rng.integers(0, 256, size=(12, 12), dtype=np.uint8)
    return images


def export_model(model: Any, *, export_format: str, output: Path, overwrite: bool = False) -> ExportResult:
    """Write `model` in `export_format` to `output`, verified, replacing it only if `overwrite`."""
    if export_format not in FORMATS:
        from mnist_cli.core.errors import UsageError

        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {export_format!r}")
    output = Path(output)
    if output.exists() and not overwrite:
        from mnist_cli.core.errors import UsageError

        raise UsageError(f"{output} already exists", "pass --force to replace it, or choose another --output")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    except OSError as exc:
        raise io_error(exc, f"creating {output.parent}") from None
    # TFLite has no bfloat16 kernels, and a SavedModel in bfloat16 differs from itself by
    # 1e-3 between eager and graph runs (and crawls on CPUs without bf16): these exports are
    # for serving, where mixed precision buys nothing portable, so they are float32. A
    # .keras export keeps the network as trained.
    converted = export_format in FLOAT32_FORMATS and float32.is_mixed(model)
    if converted:
        model = float32.float32_copy(model)
    try:
        written = _write(model, export_format, scratch)
        images = check_images()
        expected = model(images, training=False).numpy()
        actual = _run_export(written, export_format, images)
        difference = float(np.abs(expected - actual).max())
        same = bool((expected.argmax(axis=1) == actual.argmax(axis=1)).all())
        if not same or difference > TOLERANCE * max(1.0, float(np.abs(expected).max())):
            raise ModelError(f"the {export_format} export does not reproduce the model (max |logit difference| {difference:.3g})")
        _replace(written, output)
    except OSError as exc:
        raise io_error(exc, f"writing {output}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    size = sum(path.stat().st_size for path in output.rglob("*") if path.is_file()) if output.is_dir() else output.stat().st_size
    return ExportResult(str(output), export_format, size, len(images), difference, same, converted)


def _write(model: Any, export_format: str, scratch: Path) -> Path:
    if export_format == "keras":
        path = scratch / FORMATS["keras"]
        model.save(path)
        return path
    saved = scratch / FORMATS["savedmodel"]
    _write_saved_model(model, saved)
    if export_format == "savedmodel":
        return saved
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=[SIGNATURE])
    try:
        with native_stderr_silenced():  # the converter logs its MLIR passes natively
            flatbuffer = converter.convert()
    except Exception as exc:  # noqa: BLE001 - ConverterError and others, each hundreds of lines of MLIR
        lines = str(exc).strip().splitlines()
        raise ModelError(
            f"the TFLite converter cannot convert {model.name!r}: {lines[0][:200] if lines else type(exc).__name__}",
            "export --format savedmodel instead, or use a model trained by `mnist train`",
        ) from None
    path = scratch / FORMATS["tflite"]
    path.write_bytes(flatbuffer)
    return path


def _write_saved_model(model: Any, path: Path) -> None:
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(images: Any) -> dict[str, Any]:
        logits = model(images, training=False)
        return {LOGITS: logits, PROBABILITIES: tf.nn.softmax(logits), CLASSES: tf.argmax(logits, axis=1)}

    archive.add_endpoint(SIGNATURE, serve, input_signature=[tf.TensorSpec([None, *INPUT_SHAPE[1:]], INPUT_DTYPE, name=INPUT)])
    with native_stderr_silenced():
        archive.write_out(str(path), verbose=False)


def _run_export(path: Path, export_format: str, images: np.ndarray) -> np.ndarray:
    if export_format == "keras":
        import keras

        return keras.saving.load_model(path, safe_mode=True, compile=False)(images, training=False).numpy()
    if export_format == "savedmodel":
        loaded = tf.saved_model.load(str(path))
        return loaded.signatures[SIGNATURE](**{INPUT: tf.constant(images)})[LOGITS].numpy()
    import warnings

    with warnings.catch_warnings(), native_stderr_silenced():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter announces its move to LiteRT
        interpreter = tf.lite.Interpreter(model_content=path.read_bytes())
        runner = interpreter.get_signature_runner(SIGNATURE)
        return runner(**{INPUT: images})[LOGITS]


def _replace(source: Path, output: Path) -> None:
    if output.is_dir() and not output.is_symlink():
        old = output.with_name(f".{output.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        output.rename(old)
        source.rename(output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        source.replace(output)
    fsync_dir(output.parent)
