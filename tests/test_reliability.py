"""Reliability and security (issue 6): untrusted files, and what RELIABILITY.md promises about them.

RELIABILITY.md maps every fault and bad input to the test that proves what the tool does.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import invoke, one_error_line

import mnist_cli

from mnist_cli.inference import loading
from mnist_cli.core.config import CONFIG_FILE, TrainConfig
from mnist_cli.core.errors import MODEL, USAGE, ModelError, UsageError

PACKAGE = Path(mnist_cli.__file__).parent

# Untrusted files -------------------------------------------------------------------------


def _sources() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(encoding="utf-8"))) for path in sorted(PACKAGE.rglob("*.py"))]


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def test_no_pickle_and_no_code_from_data_anywhere_in_the_package() -> None:
    unsafe_modules = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
    found: list[str] = []
    np_loads = 0
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [f"{path.name}: import {a.name}" for a in node.names if a.name.split(".")[0] in unsafe_modules]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in unsafe_modules:
                found.append(f"{path.name}: from {node.module} import")
            elif isinstance(node, ast.Call):
                name = _dotted(node.func)
                keywords = {k.arg: k.value for k in node.keywords}
                if name in ("eval", "exec", "compile", "__import__"):
                    found.append(f"{path.name}:{node.lineno}: {name}()")
                if name.endswith(("np.load", "numpy.load")):
                    np_loads += 1
                    value = keywords.get("allow_pickle")
                    if not (isinstance(value, ast.Constant) and value.value is False):
                        found.append(f"{path.name}:{node.lineno}: np.load without allow_pickle=False")
                if name.endswith("load_model"):
                    value = keywords.get("safe_mode")
                    if not (isinstance(value, ast.Constant) and value.value is True):
                        found.append(f"{path.name}:{node.lineno}: load_model without safe_mode=True")
                if name.endswith(("enable_unsafe_deserialization", "yaml.load", "yaml.unsafe_load")):
                    found.append(f"{path.name}:{node.lineno}: {name}()")
                if name.endswith("Lambda"):
                    found.append(f"{path.name}:{node.lineno}: a Lambda layer in the project's own models")
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    # Pillow's guards stay as Pillow sets them.
                    if _dotted(target).endswith(("MAX_IMAGE_PIXELS", "LOAD_TRUNCATED_IMAGES")):
                        found.append(f"{path.name}:{node.lineno}: sets {_dotted(target)}")
    assert found == []
    assert len(_sources()) > 20  # the walk really saw the package


def _lambda_model(path: Path, marker: Path) -> None:
    """Save a model whose Lambda layer holds Python bytecode that would write `marker` when run."""
    import keras

    # A real lambda: Keras stores its bytecode in the file (a named function is stored by name only).
    # It runs once here, while the model is built; that marker is removed before the load is tried.
    layer = keras.layers.Lambda(lambda x, marker=str(marker): (__import__("pathlib").Path(marker).write_text("ran"), x)[1])
    model = keras.Sequential([keras.Input((28, 28), dtype="uint8"), layer, keras.layers.Flatten(), keras.layers.Dense(10)])
    model.save(path)
    assert marker.exists()
    marker.unlink()


def test_a_keras_file_with_a_lambda_layer_is_refused_and_its_code_never_runs(tmp_path: Path, tiny_data_dir: Path) -> None:
    model_file = tmp_path / "crafted" / "model.keras"
    model_file.parent.mkdir()
    marker = tmp_path / "ran"
    _lambda_model(model_file, marker)
    picture = tmp_path / "digit.png"
    from PIL import Image

    Image.fromarray(np.pad(np.full((12, 4), 255, np.uint8), 8)).save(picture)
    for args in (
        ["evaluate", str(model_file), "--data-dir", str(tiny_data_dir)],
        ["predict", "--checkpoint", str(model_file), str(picture)],
    ):
        result = invoke(*args)
        assert result.exit_code == MODEL, result.output
        line = one_error_line(result.stderr)
        assert "cannot be loaded as a Keras model" in line and "lambda" in line.lower()
    assert not marker.exists()
    with pytest.raises(ModelError):
        loading.load(model_file)
    assert not marker.exists()


HOSTILE_CONFIGS = [
    ({"model": "__import__('os').system('touch pwned')"}, "--model must be one of"),
    ({"epochs": "10"}, "'epochs' must be a int"),
    ({"hidden": "256,256"}, "'hidden' must be a list of integers"),
    ({"hidden": [256, True]}, "'hidden' must be a list of integers"),
    ({"lr": float("inf")}, "holds Infinity"),  # refused by the reader; from_dict says "--lr must be a finite number"
    ({"epochs": 10**100}, "--epochs must be >= 1 and <= 100000"),  # an int, but past what any run can do
    ({"__class__": "os.system", "model": "mlp"}, "unknown config field(s): __class__"),
    ({"py/object": "subprocess.Popen"}, "unknown config field(s): py/object"),
    ({"dataset": {"$ref": "/etc/passwd"}}, "'dataset' must be a str"),
]


HOSTILE_IDS = ["code-in-a-string", "number-as-string", "hidden-as-string", "bool-in-hidden", "infinite-lr", "huge-int", "dunder-field", "jsonpickle-tag", "object-for-string"]


@pytest.mark.parametrize(("fields", "says"), HOSTILE_CONFIGS, ids=HOSTILE_IDS)
def test_config_json_is_checked_field_by_field_never_evaluated(tmp_path: Path, fields: dict, says: str | None) -> None:
    run = tmp_path / "run"
    run.mkdir()
    # (JSON has no infinity; Python's json writes and reads back the non-standard `Infinity`.)
    text = json.dumps({**TrainConfig().to_dict(), **fields})
    (run / CONFIG_FILE).write_text(text)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        if says is None:
            assert TrainConfig.load(run).epochs == 10**100
            return
        with pytest.raises(ModelError) as caught:
            TrainConfig.load(run)
        assert says in caught.value.message and str(run / CONFIG_FILE) in caught.value.message
        with pytest.raises(UsageError):
            TrainConfig.from_dict(json.loads(text))
    finally:
        os.chdir(cwd)
    assert not (tmp_path / "pwned").exists()


def test_a_hostile_config_json_fails_evaluate_predict_and_resume_with_one_line(
    run_to_damage: tuple[Path, Path], tmp_path: Path
) -> None:
    run, data_dir = run_to_damage
    (run / CONFIG_FILE).write_text(json.dumps({"model": "mlp", "loss": {"__reduce__": ["os.system", ["touch pwned"]]}}))
    picture = tmp_path / "digit.png"
    from PIL import Image

    Image.fromarray(np.pad(np.full((12, 4), 255, np.uint8), 8)).save(picture)
    for args in (
        ["evaluate", str(run), "--data-dir", str(data_dir)],
        ["predict", "--checkpoint", str(run), str(picture)],
        ["train", "--run-dir", str(run), "--resume", "--data-dir", str(data_dir)],
    ):
        result = invoke(*args)
        assert result.exit_code == MODEL and "'loss' must be a str" in one_error_line(result.stderr), args
    result = invoke("train", "--config", str(run / CONFIG_FILE), "--data-dir", str(data_dir))
    # (config.read_config_file passes on a field error without a hint: reported to the lead.)
    assert result.exit_code == USAGE and "'loss' must be a str" in one_error_line(result.stderr, hint=False)
    assert not Path("pwned").exists()


def _state(latest: str, paths: list[str]) -> str:
    lines = [f'model_checkpoint_path: "{latest}"']
    lines += [f'all_model_checkpoint_paths: "{path}"' for path in paths]
    lines += ["all_model_checkpoint_timestamps: 9999999999.0" for _ in paths]
    return "\n".join([*lines, "last_preserved_timestamp: 1.0"]) + "\n"


@pytest.mark.parametrize("how", ["relative", "absolute", "old-entry"])
def test_a_checkpoint_state_file_cannot_lead_outside_its_run(
    finished_run: tuple[Path, Path], tmp_path: Path, how: str
) -> None:
    from mnist_cli.model import weights

    source, data_dir = finished_run
    run = tmp_path / "run"
    shutil.copytree(source, run)
    own = Path(weights.latest_in(run / "checkpoints")).name
    # Checkpoint-shaped files elsewhere: a CheckpointManager deletes old entries it is told about.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for path in (run / "checkpoints").glob(f"{own}.*"):
        shutil.copy(path, elsewhere / path.name.replace(own, "ckpt-1"))
    before = sorted(p.name for p in elsewhere.iterdir())
    outside = {"relative": "../../elsewhere/ckpt-1", "absolute": str(elsewhere / "ckpt-1"), "old-entry": str(elsewhere / "ckpt-1")}[how]
    latest = own if how == "old-entry" else outside
    for sub in ("checkpoints", "best"):
        name = Path(weights.latest_in(source / sub)).name
        (run / sub / "checkpoint").write_text(_state(latest if sub == "checkpoints" else (name if how == "old-entry" else outside), [outside, latest]))

    with pytest.raises(ModelError, match="outside"):
        weights.latest_in(run / "checkpoints")
    result = invoke("train", "--run-dir", str(run), "--resume", "--epochs", "2", "--data-dir", str(data_dir))
    assert result.exit_code == MODEL
    assert "outside" in one_error_line(result.stderr)
    assert sorted(p.name for p in elsewhere.iterdir()) == before  # nothing outside the run was deleted
    if how != "old-entry":
        # evaluate takes only the file name from a state file, so it looks inside the run, finds nothing, says so.
        result = invoke("evaluate", str(run), "--data-dir", str(data_dir))
        assert result.exit_code == MODEL and "ckpt-1.index is missing" in one_error_line(result.stderr)
