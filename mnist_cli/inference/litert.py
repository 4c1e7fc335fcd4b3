"""Predicting without TensorFlow: the network as a LiteRT (TensorFlow Lite) model cached in the run.

Importing TensorFlow takes 2-3 s; the LiteRT runtime (`ai-edge-litert`) takes about 0.05 s
beyond numpy. The first `mnist predict` on a checkpoint converts its network (with
TensorFlow, through `export.py`'s TFLite export, checked against the model) into
`<run>/.cache/model-<checkpoint>-<digest>.tflite`, with a JSON sidecar; later ones only
open that file. The digest covers the checkpoint's index file (which holds a checksum of
every stored tensor), the sizes of its data files and the run's config.json, so a newer
checkpoint, a resumed run or an edited config never meets a stale file. A cached file is
verified before use (its sha256 against the sidecar, its signature's shapes and types) and
removed and rebuilt when it fails. Whatever the fast path cannot serve, the caller serves
with TensorFlow (`load`), saying why through `on_note`.

Everything here imports without TensorFlow; only `build` (conversion) imports it.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnist_cli.core.config import ENGINES, TrainConfig
from mnist_cli.core.errors import MnistError, ModelError, first_line
from mnist_cli.core.fileio import atomic_write_text
from mnist_cli.core.tf_setup import native_stderr_silenced
from mnist_cli.inference import loading
from mnist_cli.inference.loading import Loaded, Source, Target
from mnist_cli.model.signature import INPUT, INPUT_DTYPE, INPUT_SHAPE, LOGITS, OUTPUT_DTYPES, OUTPUT_SHAPES, SIGNATURE
from mnist_cli.runs.layout import CACHE_DIR
FORMAT = 1  # the sidecar's layout; another value is a cache from another version: rebuilt
KEEP = 4  # cached models kept per folder (one per checkpoint predicted with, newest first)
MAX_MODEL_BYTES = 256 * 2**20  # far above any network `mnist train` builds (the convnet is ~2 MB)
MAX_SIDECAR_BYTES = 64 * 2**10

OnNote = Callable[[str], None]
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class Unavailable(Exception):
    """The fast path cannot serve this target; the message says why (for --verbose)."""


@dataclass(eq=False)
class FastModel:
    """A network run by LiteRT: the same `config`, `source` and `logits` as a `loading.Loaded`."""

    config: TrainConfig
    source: Source
    config_known: bool
    path: Path  # the cached .tflite file
    _runner: Any = field(repr=False)

    @property
    def dataset(self) -> str | None:
        """The data set the model was trained on, when its config is known."""
        return self.config.dataset if self.config_known else None

    def logits(self, images: np.ndarray, *, batch_size: int) -> np.ndarray:
        """Logits for uint8 images [N, 28, 28], batch by batch."""
        images = np.ascontiguousarray(images, dtype=np.uint8)
        with native_stderr_silenced():  # the XNNPACK delegate announces itself on the first run
            parts = [
                np.array(self._runner(**{INPUT: images[start : start + batch_size]})[LOGITS], dtype=np.float32)
                for start in range(0, len(images), batch_size)
            ]
        return np.concatenate(parts) if parts else np.zeros((0, OUTPUT_SHAPES[LOGITS][-1]), OUTPUT_DTYPES[LOGITS])


def runtime_available() -> bool:
    """Whether the LiteRT runtime can be imported here."""
    try:
        _interpreter_class()
    except Unavailable:
        return False
    return True


def load(
    target: Path | str | None,
    *,
    runs_root: Path | None = None,
    engine: str = "auto",
    on_note: OnNote | None = None,
) -> FastModel | Loaded:
    """The model for `mnist predict`: the cached LiteRT model when it can serve, else TensorFlow (building the cache)."""
    note = on_note or (lambda _message: None)
    if engine not in ENGINES:
        from mnist_cli.core.errors import UsageError

        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    resolved = loading.resolve_checked(target, runs_root=runs_root)
    if engine == "tensorflow":
        note("TensorFlow: --engine tensorflow")
        return loading.load_resolved(resolved, float32=True)
    try:
        fast = open_cached(resolved)
        note(f"LiteRT: {fast.path}")
        return fast
    except Unavailable as why:
        reason = str(why)
    loaded = loading.load_resolved(resolved, float32=True)
    if not runtime_available():
        return _fallback(engine, loaded, reason, note)
    note(f"{reason}; converting {resolved.path} to LiteRT once (with TensorFlow)")
    try:
        build(loaded, resolved)
        fast = open_cached(resolved)
    except (Unavailable, MnistError) as exc:
        message = exc.message if isinstance(exc, MnistError) else str(exc)
        return _fallback(engine, loaded, f"the LiteRT conversion failed: {message}", note)
    except Exception as exc:  # noqa: BLE001 - the converter's own errors: the TensorFlow path still serves
        return _fallback(engine, loaded, f"the LiteRT conversion failed: {first_line(exc)}", note)
    note(f"LiteRT: {fast.path}")
    return fast


def _fallback(engine: str, loaded: Loaded, reason: str, note: OnNote) -> Loaded:
    if engine == "litert":
        raise ModelError(f"the LiteRT path cannot serve {loaded.source.path}: {reason}", "use --engine auto or --engine tensorflow")
    note(f"TensorFlow: {reason}")
    return loaded


# --- the cache --------------------------------------------------------------------------------


def cache_paths(target: Target) -> tuple[Path, Path]:
    """(model.tflite, sidecar.json) for exactly this checkpoint or model file and its config."""
    key = cache_key(target)
    folder = Path(target.run_dir) / CACHE_DIR if target.run_dir is not None else target.path.parent / CACHE_DIR
    stem = f"model-{_SAFE.sub('_', key['name'])}-{key['sha256'][:16]}"
    return folder / f"{stem}.tflite", folder / f"{stem}.json"


def cache_key(target: Target) -> dict[str, Any]:
    """What the cached model must have come from: the source's name, kind and a digest of its files."""
    digest = hashlib.sha256(f"{target.kind}\0{target.path.name}\0".encode())
    if target.kind == loading.CHECKPOINT:
        index = Path(f"{target.path}.index")
        _hash_file(digest, index)
        # The index holds each tensor's checksum; the data files' sizes catch a swapped shard.
        for shard in sorted(target.path.parent.glob(f"{glob.escape(target.path.name)}.data-*")):
            digest.update(f"{shard.name}\0{shard.stat().st_size}\0".encode())
    else:
        _hash_file(digest, target.path)
    if target.config_file is not None:
        _hash_file(digest, target.config_file)
    return {"kind": target.kind, "name": target.path.name, "sha256": digest.hexdigest()}


def open_cached(target: Target) -> FastModel:
    """The cached LiteRT model of `target`, verified; raise Unavailable (after removing a bad one) otherwise."""
    interpreter_class = _interpreter_class()
    try:
        model_path, sidecar_path = cache_paths(target)
    except OSError as exc:
        raise Unavailable(f"the checkpoint's files cannot be read ({exc.strerror or exc})") from None
    if not sidecar_path.is_file() or not model_path.is_file():
        raise Unavailable(f"no cached LiteRT model for {target.path.name} yet")
    try:
        sidecar = _read_sidecar(sidecar_path)
        blob = _read_model(model_path, sidecar)
        runner = _check_runner(interpreter_class, blob)
    except Unavailable as why:
        _remove(model_path, sidecar_path)
        raise Unavailable(f"the cached LiteRT model {model_path} was removed ({why}); rebuilding it") from None
    config = TrainConfig.load(target.config_file.parent) if target.config_file else TrainConfig()
    source = Source(**{**sidecar["source"], "target": target.given})
    _touch(model_path)
    return FastModel(config=config, source=source, config_known=target.config_file is not None, path=model_path, _runner=runner)


def build(loaded: Loaded, target: Target) -> Path:
    """Convert the loaded (float32) network to LiteRT, checked against it, and cache it atomically."""
    from mnist_cli.core.fileio import io_error
    from mnist_cli.inference import export  # imports TensorFlow

    try:
        model_path, sidecar_path = cache_paths(target)
        result = export.export_model(loaded.model, export_format="tflite", output=model_path, overwrite=True)
        blob = model_path.read_bytes()
    except OSError as exc:
        raise io_error(exc, f"caching the LiteRT model of {target.path}") from None
    sidecar = {
        "format": FORMAT,
        "key": cache_key(target),
        "model_file": model_path.name,
        "model_bytes": len(blob),
        "model_sha256": hashlib.sha256(blob).hexdigest(),
        "max_abs_logit_difference": result.max_abs_logit_difference,
        "source": {**loaded.source.to_dict(), "target": None},
    }
    # The model is in place before its sidecar: a reader that finds the sidecar finds its model,
    # and a crash between the two leaves a model without sidecar, which is never used.
    atomic_write_text(sidecar_path, json.dumps(sidecar, indent=2) + "\n")
    _prune(model_path.parent, keep={model_path.name, sidecar_path.name})
    return model_path


# --- verification --------------------------------------------------------------------------------


def _interpreter_class() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from ai_edge_litert.interpreter import Interpreter
    except Exception as exc:  # noqa: BLE001 - missing, or a wheel that does not load on this platform
        raise Unavailable(f"the LiteRT runtime (ai-edge-litert) cannot be imported ({type(exc).__name__}: {exc})") from None
    return Interpreter


def _read_sidecar(path: Path) -> dict[str, Any]:
    from mnist_cli.core.safeio import read_json

    try:
        if path.stat().st_size > MAX_SIDECAR_BYTES:
            raise Unavailable("its sidecar is too large")
        sidecar = read_json(path, limit=MAX_SIDECAR_BYTES)
    except (OSError, ValueError) as exc:  # UnsafeFile is a ValueError
        raise Unavailable(f"its sidecar cannot be read: {exc}") from None
    if not isinstance(sidecar, dict) or sidecar.get("format") != FORMAT:
        raise Unavailable("its sidecar is from another version")
    source = sidecar.get("source")
    if not isinstance(source, dict) or set(source) != set(Source.__dataclass_fields__):
        raise Unavailable("its sidecar does not describe the checkpoint")
    if not isinstance(sidecar.get("model_sha256"), str) or not isinstance(sidecar.get("model_bytes"), int):
        raise Unavailable("its sidecar has no digest")
    return sidecar


def _read_model(path: Path, sidecar: dict[str, Any]) -> bytes:
    try:
        if not path.is_file() or path.is_symlink():
            raise Unavailable("it is not a regular file")
        if path.stat().st_size != sidecar["model_bytes"] or sidecar["model_bytes"] > MAX_MODEL_BYTES:
            raise Unavailable("its size differs from the one recorded")
        blob = path.read_bytes()
    except OSError as exc:
        raise Unavailable(f"it cannot be read: {exc.strerror or exc}") from None
    if hashlib.sha256(blob).hexdigest() != sidecar["model_sha256"]:
        raise Unavailable("its sha256 differs from the one recorded: corrupt")
    return blob


def _check_runner(interpreter_class: Any, blob: bytes) -> Any:
    """The signature runner, once the flatbuffer loads and keeps the exported contract (model/signature.py)."""
    try:
        with warnings.catch_warnings(), native_stderr_silenced():  # the XNNPACK delegate announces itself
            warnings.simplefilter("ignore")
            interpreter = interpreter_class(model_content=blob)
            signatures = interpreter.get_signature_list()
            if SIGNATURE not in signatures or INPUT not in signatures[SIGNATURE]["inputs"]:
                raise Unavailable(f"it has no {SIGNATURE} signature taking images")
            if LOGITS not in signatures[SIGNATURE]["outputs"]:
                raise Unavailable(f"its {SIGNATURE} signature returns no logits")
            runner = interpreter.get_signature_runner(SIGNATURE)
            inputs, outputs = runner.get_input_details()[INPUT], runner.get_output_details()[LOGITS]
    except Unavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - the runtime raises ValueError/RuntimeError for damaged flatbuffers
        raise Unavailable(f"LiteRT cannot load it: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    shapes = (list(inputs["shape"][1:]), np.dtype(inputs["dtype"]), int(outputs["shape"][-1]), np.dtype(outputs["dtype"]))
    contract = (list(INPUT_SHAPE[1:]), np.dtype(INPUT_DTYPE), OUTPUT_SHAPES[LOGITS][-1], np.dtype(OUTPUT_DTYPES[LOGITS]))
    if shapes != contract:
        raise Unavailable(
            f"it does not map {INPUT_DTYPE} {_spelled(INPUT_SHAPE)} images to {OUTPUT_DTYPES[LOGITS]} {_spelled(OUTPUT_SHAPES[LOGITS])} logits ({shapes})"
        )
    return runner


# --- files -------------------------------------------------------------------------------------


def _spelled(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join("N" if size == -1 else str(size) for size in shape) + "]"



def _hash_file(digest: Any, path: Path) -> None:
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    digest.update(b"\0")


def _remove(*paths: Path) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only run: the bad file stays, and is checked (and refused) again next time


def _touch(path: Path) -> None:
    # Pruning keeps the most recently used models, so the one in use is marked as such.
    try:
        os.utime(path)
    except OSError:
        pass


def _prune(folder: Path, *, keep: set[str]) -> None:
    """Keep the KEEP most recently used cached models in `folder` (with their sidecars); remove the rest."""
    try:
        models = sorted(folder.glob("model-*.tflite"), key=lambda path: path.stat().st_mtime_ns, reverse=True)
    except OSError:
        return
    for path in [path for path in models if path.name not in keep][KEEP - 1 :]:
        _remove(path, path.with_suffix(".json"))


__all__ = [
    "CACHE_DIR", "ENGINES", "FastModel", "Unavailable", "build", "cache_key", "cache_paths", "load",
    "open_cached", "runtime_available",
]
