"""Reliability round two (issue 11): files the tool did not write, and values past the framework's limits.

Run-directory files that are damaged, hand-edited or hostile; checkpoint state files; IDX and
.keras bombs; option and config ranges. Each case is one line with its exit code, never a
traceback or a hang (pytest-timeout would fail a hang).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers import clean_env, invoke, make_run, mnist_command, one_error_line

from mnist_cli.core import safeio
from mnist_cli.core.config import CONFIG_FILE, TrainConfig
from mnist_cli.core.errors import DATA, LOCAL_IO, MODEL, USAGE, DataError, ModelError
from mnist_cli.runs.listing import list_runs
from mnist_cli.runs.layout import HISTORY_FILE, LOCK_FILE, RESULT_FILE
from mnist_cli.runs.runs import load_history
from mnist_cli.data import idx

# Hostile run-directory files ------------------------------------------------------------


def _deep(path: Path) -> None:
    path.write_text("[" * 100_000 + "]" * 100_000)


def _deep_object(path: Path) -> None:
    path.write_text('{"a":' * 50_000 + "1" + "}" * 50_000)


def _dev_zero(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.symlink_to("/dev/zero")


def _fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def _directory(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.mkdir()


def _symlink_loop(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.symlink_to(path.name)


def _huge(path: Path) -> None:
    with open(path, "wb") as handle:
        handle.truncate(safeio.JSON_LIMIT + 1)  # sparse: costs no disk


def _writes(text: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(text)


_ENTRY = {"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.8, "val_loss": 0.4, "val_accuracy": 0.9, "lr": 0.01,
          "seconds": 1.0, "samples": 100, "samples_per_second": 100.0}  # fmt: skip

RUN_FILE_FAULTS: list[tuple[str, str, Callable[[Path], None], str]] = [
    ("config-deeply-nested", CONFIG_FILE, _deep, "is nested deeper than 32 levels"),
    ("config-deep-object", CONFIG_FILE, _deep_object, "is nested deeper than 32 levels"),
    ("config-fifo", CONFIG_FILE, _fifo, "is a FIFO, not a regular file"),
    ("config-dev-zero", CONFIG_FILE, _dev_zero, "is a character device, not a regular file"),
    ("config-directory", CONFIG_FILE, _directory, "is a directory, not a regular file"),
    ("config-symlink-loop", CONFIG_FILE, _symlink_loop, "cannot be read"),
    ("config-over-the-size-cap", CONFIG_FILE, _huge, "is larger than 4 MiB"),
    ("config-nan", CONFIG_FILE, _writes('{"lr": NaN}'), "holds NaN"),
    ("config-huge-number", CONFIG_FILE, _writes('{"lr": 1e999}'), "a number too large"),
    ("config-hidden-too-big", CONFIG_FILE, _writes('{"hidden": [100000000]}'), "--hidden must be positive layer sizes"),
    ("config-seed-past-2-32", CONFIG_FILE, _writes('{"seed": 4294967296}'), "--seed must be >= 0 and <= 4294967295"),
    ("config-batch-too-big", CONFIG_FILE, _writes('{"batch_size": 100000000}'), "--batch-size must be"),
    ("result-deeply-nested", RESULT_FILE, _deep, "result.json is nested deeper"),
    ("result-dev-zero", RESULT_FILE, _dev_zero, "result.json is a character device"),
    ("result-fifo", RESULT_FILE, _fifo, "result.json is a FIFO"),
    ("history-deeply-nested", HISTORY_FILE, _deep, "history.json is nested deeper"),
    ("history-fifo", HISTORY_FILE, _fifo, "history.json is a FIFO"),
    ("history-nan", HISTORY_FILE, _writes(json.dumps([_ENTRY]).replace("0.5", "NaN")), "history.json holds NaN"),
    ("history-missing-keys", HISTORY_FILE, _writes('[{"epoch": 1}]'), "history.json entry 1: 'train_loss' must be"),
    ("history-list-of-numbers", HISTORY_FILE, _writes("[1, 2, 3]"), "history.json entry 1 is not an object"),
    ("history-wrong-epoch", HISTORY_FILE, _writes(json.dumps([{**_ENTRY, "epoch": 7}])), "entry 1 is for epoch 7"),
    ("history-string-figures", HISTORY_FILE, _writes(json.dumps([{**_ENTRY, "seconds": "1"}])), "'seconds' must be"),
]


@pytest.mark.parametrize(("how", "name", "damage", "says"), RUN_FILE_FAULTS, ids=[case[0] for case in RUN_FILE_FAULTS])
def test_a_hostile_run_file_makes_that_run_broken_and_the_others_are_listed(
    tmp_path: Path, how: str, name: str, damage: Callable[[Path], None], says: str
) -> None:
    make_run(tmp_path, "good", val=[0.9], test_accuracy=0.9, started="2025-01-01T00:00:00+00:00")
    bad = make_run(tmp_path, "hostile", val=[0.8], test_accuracy=0.8, started="2025-06-01T00:00:00+00:00")
    damage(bad / name)

    summaries = {run.name: run for run in list_runs(tmp_path)}
    assert summaries["good"].status == "finished"
    assert summaries["hostile"].status == "broken" and says in (summaries["hostile"].reason or "")

    result = invoke("runs", "--root", str(tmp_path))
    assert result.exit_code == 0 and "good" in result.stdout and "broken" in result.stdout
    if how.endswith(("fifo", "dev-zero")):
        # The real command, in a process of its own: a hang would be a timeout, not a stuck test run.
        done = subprocess.run(
            [*mnist_command(), "runs", "--root", str(tmp_path)], capture_output=True, text=True, timeout=120, env=clean_env()
        )
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
        assert "good" in done.stdout and "hostile" in done.stdout and "broken" in done.stdout
    if how in ("config-deeply-nested", "result-fifo"):
        # evaluate with no target picks the newest run: one line, exit 7 (it holds no checkpoint).
        result = invoke("evaluate", "--runs-root", str(tmp_path))
        assert result.exit_code == MODEL and "hostile" in one_error_line(result.stderr)


def test_load_history_checks_every_field_and_names_the_file(tmp_path: Path) -> None:
    (tmp_path / HISTORY_FILE).write_text(json.dumps([_ENTRY, {**_ENTRY, "epoch": 2, "val_accuracy": None}]))
    assert [entry["epoch"] for entry in load_history(tmp_path)] == [1, 2]
    assert load_history(tmp_path / "nothing-here") == []
    (tmp_path / HISTORY_FILE).write_text(json.dumps([{**_ENTRY, "samples": 1.5}]))
    with pytest.raises(ModelError, match=r"history\.json entry 1: 'samples' must be a non-negative integer"):
        load_history(tmp_path)


@pytest.mark.parametrize("kind", ["directory", "symlink-loop", "fifo"])
def test_a_strange_lock_file_does_not_stop_the_listing(tmp_path: Path, kind: str) -> None:
    run = make_run(tmp_path, "odd-lock", val=[0.9], test_accuracy=0.9)
    {"directory": _directory, "symlink-loop": _symlink_loop, "fifo": _fifo}[kind](run / LOCK_FILE)
    (summary,) = list_runs(tmp_path)
    assert summary.status == "finished"


def test_safe_json_reader_refuses_what_json_would_choke_on(tmp_path: Path) -> None:
    assert safeio.loads_json('{"a": "[[[[[[", "b": [1, 2.5]}') == {"a": "[[[[[[", "b": [1, 2.5]}
    assert safeio.json_depth('["\\"[[[", {"x": [[]]}]') == 4
    for text, says in [("[NaN]", "NaN"), ("[-Infinity]", "-Infinity"), ("[1e400]", "too large"), ("[" * 33 + "]" * 33, "deeper")]:
        with pytest.raises(safeio.UnsafeFile, match=says):
            safeio.loads_json(text)


# Checkpoint state files -----------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    ["not a state file at all\n", 'model_checkpoint_path: "ckpt-1"\n\x00\x01\x02junk\n', "", "fifo"],
    ids=["garbage", "junk-after-a-record", "empty", "fifo"],
)
def test_a_garbage_checkpoint_state_file_refuses_resume_and_evaluate_and_lists_the_checkpoints(
    run_to_damage: tuple[Path, Path], tmp_path: Path, garbage: str
) -> None:
    run, data_dir = run_to_damage
    state = run / "checkpoints" / "checkpoint"
    present = sorted(path.stem for path in (run / "checkpoints").glob("ckpt-*.index"))
    assert present
    if garbage == "fifo":
        _fifo(state)
    else:
        state.write_text(garbage)
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file() and path.name != ".lock"}

    result = invoke("train", "--run-dir", str(run), "--resume", "--data-dir", str(data_dir), "--epochs", "2", "--quiet")
    assert result.exit_code == MODEL
    line = one_error_line(result.stderr)
    assert "refusing to use it" in line and str(state) in line
    assert present[-1] in result.stderr  # the hint says which checkpoints exist
    after = {path: path.read_bytes() for path in run.rglob("*") if path.is_file() and path.name != ".lock"}
    assert after == before  # nothing overwritten: config, history, checkpoints

    result = invoke("evaluate", str(run / "checkpoints"), "--data-dir", str(data_dir))
    assert result.exit_code == MODEL and "refusing to use it" in one_error_line(result.stderr)


def test_a_state_file_naming_a_checkpoint_that_is_gone_refuses_resume(run_to_damage: tuple[Path, Path], tmp_path: Path) -> None:
    run, data_dir = run_to_damage
    for path in (run / "checkpoints").glob("ckpt-*"):
        path.unlink()
    config_before = (run / CONFIG_FILE).read_bytes()
    result = invoke("train", "--run-dir", str(run), "--resume", "--data-dir", str(data_dir), "--epochs", "2", "--quiet")
    assert result.exit_code == MODEL
    assert "whose files are missing" in one_error_line(result.stderr)
    assert (run / CONFIG_FILE).read_bytes() == config_before


# Bounded work ---------------------------------------------------------------------------


def _idx_header(magic: int, dims: tuple[int, ...]) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)


def test_an_idx_gzip_bomb_is_refused_after_reading_what_its_header_promises(tmp_path: Path) -> None:
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    # Ten images promised, 256 MiB of zeros behind them (a 250 kB file).
    with gzip.open(bomb, "wb", compresslevel=1) as handle:
        handle.write(_idx_header(2051, (10, 28, 28)))
        zeros = bytes(1 << 20)
        for _ in range(256):
            handle.write(zeros)
    assert bomb.stat().st_size < 2 << 20
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="holds more bytes than its header promises"):
            idx.read_idx_images(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20  # read 7,841 bytes past the header, not 256 MiB

    huge = tmp_path / "huge.gz"
    huge.write_bytes(gzip.compress(_idx_header(2051, (4_000_000_000, 28, 28))))
    with pytest.raises(DataError, match="more than any MNIST-style file"):
        idx.read_idx_images(huge)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_an_idx_file_that_is_not_a_regular_file_is_refused_unread(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    (_fifo if kind == "fifo" else _dev_zero)(path)
    with pytest.raises(DataError, match="not a regular file") as info:
        idx.read_idx_labels(path)
    assert info.value.exit_code == DATA


def _keras_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


@pytest.mark.parametrize(
    ("members", "says"),
    [
        ({"metadata.json": b"{}", "config.json": b" " * (5 << 20)}, "over the 4,194,304-byte cap"),
        ({"metadata.json": b"{}", "../../escape.json": b"{}"}, "unsafe name"),
        ({"/etc/passwd": b"x"}, "unsafe name"),
        ({f"assets/{i}": b"" for i in range(300)}, "300 files"),
    ],
    ids=["config-member-over-the-cap", "dot-dot-member", "absolute-member", "too-many-members"],
)
def test_a_keras_file_is_checked_from_its_zip_directory_before_keras_reads_it(
    tmp_path: Path, members: dict[str, bytes], says: str
) -> None:
    from mnist_cli.model import keras_file

    model = _keras_zip(tmp_path / "model.keras", members)
    assert model.stat().st_size < 1 << 20
    with pytest.raises(ModelError, match=says):
        keras_file.check_archive(model)
    result = invoke("predict", "--checkpoint", str(model), str(model))
    assert result.exit_code == MODEL and says in one_error_line(result.stderr)


def test_a_keras_file_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    from mnist_cli.model import keras_file

    model = tmp_path / "model.keras"
    _fifo(model)
    with pytest.raises(ModelError, match="is a FIFO"):
        keras_file.check_archive(model)


# Values past the framework's limits -----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--hidden", "100000000"], "--hidden must be positive layer sizes"),
        (["--hidden", "16384,16384,16384"], "weights, more than the 200,000,000 allowed"),
        (["--hidden", ",".join(["8"] * 33)], "at most 32 layers"),
        (["--seed", "4294967296"], "--seed must be >= 0 and <= 4294967295"),
        (["--batch-size", "100000000"], "--batch-size must be >= 1 and <= 65536"),
        (["--epochs", "10000000"], "--epochs must be >= 1 and <= 100000"),
        (["--lr", "1e300"], "--lr must be > 0.0 and <= 100.0"),
        (["--keep-checkpoints", "100000"], "--keep-checkpoints must be"),
        (["--log-every", str(2**40)], "--log-every must be"),
    ],
)
def test_values_past_the_frameworks_limits_exit_2_before_anything_is_written(tmp_path: Path, args: list[str], says: str) -> None:
    root = tmp_path / "runs"
    result = invoke("train", "--runs-root", str(root), "--data-dir", str(tmp_path / "no-data"), *args)
    assert result.exit_code == USAGE
    assert says in one_error_line(result.stderr, hint=False)
    assert not root.exists() and not (tmp_path / "no-data").exists()


def test_a_config_file_past_the_limits_is_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "big.toml"
    config.write_text("hidden = [100000000]\nseed = 4294967296\n")
    result = invoke("train", "--config", str(config), "--runs-root", str(tmp_path / "runs"))
    assert result.exit_code == USAGE and "--hidden must be positive" in one_error_line(result.stderr)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 10_000 + "]" * 10_000)
    result = invoke("train", "--config", str(deep), "--runs-root", str(tmp_path / "runs"))
    assert result.exit_code == USAGE and "nested deeper" in one_error_line(result.stderr)
    assert not (tmp_path / "runs").exists()


def test_every_config_field_has_an_upper_bound() -> None:
    for name, value in [("seed", 2**32), ("epochs", 10**6), ("batch_size", 10**6), ("checkpoint_every", 2**40)]:
        with pytest.raises(Exception, match=f"--{name.replace('_', '-')} must be"):
            TrainConfig(**{name: value})
    assert TrainConfig(seed=2**32 - 1, batch_size=65_536).seed == 2**32 - 1
    assert np.random.default_rng(2**32 - 1) is not None


# Writing through links ------------------------------------------------------------------


@pytest.mark.parametrize("sub", ["checkpoints", "best", "export"])
def test_a_run_folder_linked_to_another_run_is_never_written_or_pruned_through(
    finished_run: tuple[Path, Path], tmp_path: Path, sub: str
) -> None:
    source, data_dir = finished_run
    victim, run = tmp_path / "victim", tmp_path / "run"
    shutil.copytree(source, victim)
    shutil.copytree(source, run)
    (victim / "export").mkdir(exist_ok=True)
    shutil.rmtree(run / sub, ignore_errors=True)
    (run / sub).symlink_to(victim / sub)
    before = {path: path.read_bytes() for path in victim.rglob("*") if path.is_file()}

    if sub == "export":
        result = invoke("export", str(run / "checkpoints"), "--format", "keras")
    else:
        result = invoke("train", "--run-dir", str(run), "--resume", "--data-dir", str(data_dir), "--epochs", "2", "--quiet")
    assert result.exit_code == LOCAL_IO
    line = one_error_line(result.stderr)
    assert "is a symbolic link" in line and "refusing to write or delete through it" in line
    after = {path: path.read_bytes() for path in victim.rglob("*") if path.is_file()}
    assert after == before


# Resuming a run whose files are damaged -------------------------------------------------


def _resume(run: Path, data_dir: Path):  # noqa: ANN202 - click's Result
    return invoke("train", "--run-dir", str(run), "--resume", "--data-dir", str(data_dir), "--epochs", "2", "--quiet")


def _contents(run: Path) -> dict[Path, bytes]:
    # The lock file is the one thing a refused resume may create.
    return {path: path.read_bytes() for path in sorted(run.rglob("*")) if path.is_file() and not path.is_symlink() and path.name != LOCK_FILE}


@pytest.mark.parametrize(
    ("how", "damage", "code", "says"),
    [
        ("nan", lambda run: (run / HISTORY_FILE).write_text(json.dumps([_ENTRY]).replace("0.5", "NaN")), MODEL, "holds NaN"),
        ("history-list-of-numbers", lambda run: (run / HISTORY_FILE).write_text("[1, 2]"), MODEL, "entry 1 is not an object"),
        ("history-missing-keys", lambda run: (run / HISTORY_FILE).write_text('[{"epoch": 1}]'), MODEL, "'train_loss' must be"),
        ("history-fifo", lambda run: _fifo(run / HISTORY_FILE), MODEL, "is a FIFO"),
        ("lock-directory", lambda run: _directory(run / LOCK_FILE), LOCAL_IO, "is a directory, not a lock file"),
        ("lock-symlink-loop", lambda run: _symlink_loop(run / LOCK_FILE), LOCAL_IO, "is a symbolic link, not a lock file"),
        ("lock-fifo", lambda run: _fifo(run / LOCK_FILE), LOCAL_IO, "is a FIFO, not a lock file"),
    ],
    ids=["history-nan", "history-list-of-numbers", "history-missing-keys", "history-fifo", "lock-directory", "lock-symlink-loop", "lock-fifo"],
)
def test_resume_with_a_damaged_run_file_refuses_with_one_line_and_changes_nothing(
    run_to_damage: tuple[Path, Path], tmp_path: Path, how: str, damage: Callable[[Path], None], code: int, says: str
) -> None:
    run, data_dir = run_to_damage
    (run / LOCK_FILE).unlink(missing_ok=True)
    damage(run)
    before = _contents(run)
    result = _resume(run, data_dir)
    assert result.exit_code == code
    assert says in one_error_line(result.stderr)
    assert _contents(run) == before


def test_resume_on_a_read_only_run_directory_is_one_line(finished_run: tuple[Path, Path], tmp_path: Path) -> None:
    source, data_dir = finished_run
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)]).returncode == 0
    try:
        run = disk / "run"
        shutil.copytree(source, run)
        if mounted:
            subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        else:
            for path in (run, *run.rglob("*")):
                path.chmod(0o555 if path.is_dir() else 0o444)
            if os.access(run, os.W_OK):
                pytest.skip("cannot make a read-only directory here")
        result = _resume(run, data_dir)
        assert result.exit_code == LOCAL_IO
        line = one_error_line(result.stderr)
        assert "permission denied" in line or "read-only" in line.lower(), line
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(disk)], check=False)


def test_out_of_memory_while_building_or_training_is_one_line(
    tmp_path: Path, tiny_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tensorflow as tf

    from mnist_cli.model import network

    def no_memory(config: TrainConfig) -> None:
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[784,100000000]")

    monkeypatch.setattr(network, "build_model", no_memory)
    result = invoke("train", "--data-dir", str(tiny_data_dir), "--run-dir", str(tmp_path / "run"), "--epochs", "1", "--quiet")
    assert result.exit_code == LOCAL_IO
    line = one_error_line(result.stderr)
    assert "out of memory while training mlp" in line
