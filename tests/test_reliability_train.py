"""`mnist train` under faults: kill -9 at random moments and mid-checkpoint, a full disk, racing commands.

Each trial is a real `python -m mnist_cli train` process on tiny data with a checkpoint after every
step, so a random kill often lands while a checkpoint is being written.
"""

from __future__ import annotations

import json
import random
import sys
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from helpers import clean_env, fill, invoke, mnist_command, one_error_line, tmpfs

from mnist_cli.model import weights
from mnist_cli.core.config import TrainConfig
from mnist_cli.core.errors import BUSY, INTERRUPTED, LOCAL_IO, MODEL

pytestmark = pytest.mark.tiny_data(n_train=300, n_test=100)  # the `data_dir` of this module (conftest.py)
EPOCHS = 40  # never reached by the kill trials; the last resume stops one epoch later
STEPS_PER_EPOCH = 27  # 270 training images (300 less 10% validation) in batches of 10
TRAIN_ARGS = ["--batch-size", "10", "--log-every", "1", "--checkpoint-every", "1", "--hidden", "16", "--keep-checkpoints", "2"]


def _command(data_dir: Path, run: Path, *extra: str, epochs: int = EPOCHS) -> list[str]:
    resume = ["--resume"] if (run / "config.json").exists() else []
    return [*mnist_command(), "train", "--data-dir", str(data_dir), "--run-dir", str(run), "--epochs", str(epochs), *TRAIN_ARGS, *resume, *extra]


def _step(prefix: str | None) -> int:
    return int(prefix.rsplit("-", 1)[1]) if prefix else 0


class _Reader:
    """Collects a child's standard error lines; says when training steps have begun."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.training = threading.Event()
        self.thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stderr:  # type: ignore[union-attr]
            self.lines.append(line.rstrip("\n"))
            if " step " in line:
                self.training.set()
        self.training.set()

    def started_from(self, run: Path) -> tuple[bool, str | None]:
        """(whether the run started at all, the checkpoint it resumed from)."""
        self.thread.join(10)
        for line in self.lines:
            match = re.match(rf"resuming {re.escape(str(run))} from (\S+):", line)
            if match:
                return True, match.group(1)
            if line.startswith(f"run {run}:"):
                return True, None
        return False, None


def _interrupted_saves(run: Path, latest: str | None) -> bool:
    """Whether a kill left a checkpoint half-written: a temporary shard folder or files past the recorded one."""
    for folder in (run / "checkpoints", run / "best"):
        if any(folder.glob("*_temp*")):
            return True
    return any(_step(str(index.with_suffix(""))) > _step(latest) for index in (run / "checkpoints").glob("ckpt-*.index"))


def _check_usable(run: Path, data_dir: Path) -> str | None:
    """After a kill: the recorded checkpoint restores into the run's model, and `mnist evaluate` works on the run."""
    latest = weights.latest_in(run / "checkpoints")
    if latest is None:
        assert not (run / "best").exists() or weights.latest_in(run / "best") is None
        if (run / "config.json").exists():
            result = invoke("evaluate", str(run), "--data-dir", str(data_dir), "--quiet")
            assert result.exit_code == MODEL and "holds no checkpoint" in one_error_line(result.stderr)
        return None
    from mnist_cli.model.network import build_model

    weights.restore_weights(build_model(TrainConfig.load(run)), latest)
    result = invoke("evaluate", str(run), "--data-dir", str(data_dir), "--json", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert 0.0 <= json.loads(result.stdout)["accuracy"] <= 1.0
    return latest


# The riskiest moments, made certain: the child kills itself at a chosen point inside a checkpoint save
# (the nth time it gets there, counting only paths that contain KILL_IN).
_KILL_LAUNCH = """
import os, signal, sys
point, nth = os.environ["KILL_POINT"], int(os.environ["KILL_NTH"])
count = [0]
def hit(path=""):
    if os.environ.get("KILL_IN", "") in str(path):
        count[0] += 1
        if count[0] == nth:
            os.kill(os.getpid(), signal.SIGKILL)
from mnist_cli.core.tf_setup import import_tensorflow
import_tensorflow()
from tensorflow.python.checkpoint import checkpoint_management as cm, functional_saver as fs
if point == "shards-written-not-merged":
    real_merge = fs.gen_io_ops.merge_v2_checkpoints
    def merge(*args, **kwargs):
        hit(args[1] if len(args) > 1 else kwargs.get("destination_prefix"))
        return real_merge(*args, **kwargs)
    fs.gen_io_ops.merge_v2_checkpoints = merge
elif point == "written-not-recorded":
    real_update = cm.update_checkpoint_state_internal
    def update(save_dir, *args, **kwargs):
        hit(save_dir)
        return real_update(save_dir, *args, **kwargs)
    cm.update_checkpoint_state_internal = update
elif point == "old-one-half-deleted":
    real_delete = cm._delete_file_if_exists
    def delete(filespec):
        real_delete(filespec)
        if filespec.endswith(".index"):
            hit(filespec)
    cm._delete_file_if_exists = delete
elif point == "history-written-checkpoint-not":
    from mnist_cli.runs import runs
    real_write = runs.atomic_write_text
    def write(path, text):
        real_write(path, text)
        if path.name == "history.json":
            hit(path)
    runs.atomic_write_text = write
sys.argv = ["mnist", *sys.argv[1:]]
from mnist_cli.cli import main
main()
"""

CHOSEN_KILLS = {
    # First, while validation accuracy still improves at every epoch end, so that best/ is written.
    0: ("written-not-recorded", "best", 1),  # best/ got its first checkpoint, but no state file names it
    4: ("shards-written-not-merged", "checkpoints", 5),  # shards in ckpt-N_temp, never merged to ckpt-N
    8: ("written-not-recorded", "checkpoints", 9),  # ckpt-N complete, the state file still names N-1
    12: ("old-one-half-deleted", "checkpoints", 3),  # the oldest kept checkpoint lost its .index only
}


@pytest.mark.slow  # about two minutes: twenty trainings killed and resumed
def test_kill_9_at_random_moments_then_resume_continues_from_the_last_complete_checkpoint(
    tmp_path: Path, data_dir: Path
) -> None:
    run = tmp_path / "run"
    env = clean_env()
    rng = random.Random(6)
    expected: str | None = None  # the newest complete checkpoint, as the test saw it after the last kill
    kills = checked = mid_save = 0
    for trial in range(20):
        point = CHOSEN_KILLS.get(trial)
        if point is None:
            process = subprocess.Popen(_command(data_dir, run), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True)
        else:  # the child kills itself at a chosen point inside a checkpoint save
            command = [sys.executable, "-c", _KILL_LAUNCH, *_command(data_dir, run)[len(mnist_command()) :]]
            name, where, nth = point
            chosen = clean_env(KILL_POINT=name, KILL_IN=where, KILL_NTH=str(nth))
            process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=chosen, text=True)
        reader = _Reader(process)
        if point is not None:
            process.wait(120)
            assert process.returncode == -signal.SIGKILL, reader.lines[-5:]
        elif rng.random() < 0.25:
            time.sleep(rng.uniform(0, 2.0))  # start-up: imports, restoring, tracing
        else:
            reader.training.wait(60)
            time.sleep(rng.uniform(0, 0.4))  # steps, each followed by a checkpoint; epoch ends
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(10)
        kills += process.returncode == -signal.SIGKILL
        started, resumed_from = reader.started_from(run)
        if started:
            assert resumed_from == expected, reader.lines[:3]
            checked += 1
        latest = _check_usable(run, data_dir)
        assert _step(latest) >= _step(expected)  # never behind what was already saved
        mid_save += _interrupted_saves(run, latest)
        if point is not None and point[0] == "shards-written-not-merged":
            assert _interrupted_saves(run, latest)
        expected = latest
    assert kills >= 20
    # Finish the run one epoch after where it stands (only --epochs may change on resume), to keep this test short.
    import tensorflow as tf

    epochs = int(tf.train.load_variable(expected, "epoch/.ATTRIBUTES/VARIABLE_VALUE")) + 1
    final = subprocess.run(_command(data_dir, run, "--json", epochs=epochs), capture_output=True, text=True, env=env, timeout=300)
    assert final.returncode == 0, final.stderr
    assert f"resuming {run} from {expected}:" in final.stderr
    result = json.loads(final.stdout)
    assert result["epochs"] == epochs
    history = json.loads((run / "history.json").read_text())
    assert [entry["epoch"] for entry in history][-1] == epochs
    evaluated = invoke("evaluate", str(run), "--data-dir", str(data_dir), "--json", "--quiet")
    assert json.loads(evaluated.stdout)["accuracy"] == pytest.approx(result["test_accuracy"])
    # Resuming a finished run says it is finished and how to train on, instead of silently scoring it again.
    again = subprocess.run(_command(data_dir, run, "--json", epochs=epochs), capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 2 and "WARNING" not in again.stderr, again.stderr
    assert "is finished" in one_error_line(again.stderr) and f"--epochs {2 * epochs}" in again.stderr
    print(f"train kill -9: {kills} kills ({len(CHOSEN_KILLS)} at chosen points), {checked} resumes checked, {mid_save} left a checkpoint half-written")


@pytest.mark.slow
def test_a_kill_between_the_epoch_history_and_checkpoint_loses_no_epoch(tmp_path: Path, data_dir: Path) -> None:
    run = tmp_path / "run"
    command = _command(data_dir, run, epochs=2)[len(mnist_command()) :]
    killed = subprocess.run(
        [sys.executable, "-c", _KILL_LAUNCH, *command],
        env=clean_env(KILL_POINT="history-written-checkpoint-not", KILL_NTH="1", KILL_IN="history"),
        capture_output=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL
    # Epoch 1's entry was written but its checkpoint was not: resume redoes epoch 1.
    assert [entry["epoch"] for entry in json.loads((run / "history.json").read_text())] == [1]
    final = subprocess.run(_command(data_dir, run, "--json", epochs=2), capture_output=True, text=True, env=clean_env(), timeout=300)
    assert final.returncode == 0, final.stderr
    history = json.loads((run / "history.json").read_text())
    assert [entry["epoch"] for entry in history] == [1, 2]


# A full disk -------------------------------------------------------------------------------


@pytest.mark.slow
def test_full_disk_while_checkpointing_exits_6_and_keeps_the_previous_checkpoint(tmp_path: Path, data_dir: Path) -> None:
    with tmpfs(tmp_path / "disk", "2m") as disk:
        run = disk / "run"
        process = subprocess.Popen(_command(data_dir, run, epochs=3), stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=clean_env(), text=True)
        deadline = time.monotonic() + 120
        while not (run / "checkpoints" / "ckpt-20.index").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        filler = fill(disk)
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == LOCAL_IO, stderr[-2000:]
        line = one_error_line(stderr)
        assert "no space left on the device" in line and "checkpoint" in line
        assert "--resume" in stderr
        latest = weights.latest_in(run / "checkpoints")
        # The disk may fill after ckpt-20's files but before the state file records it: then
        # ckpt-20 is the unrecorded save that is removed, and ckpt-19 the previous one.
        assert _step(latest) >= 19
        assert not list((run / "checkpoints").glob("*_temp*"))  # the half-written save gave its space back
        _check_usable(run, data_dir)
        filler.unlink()
        final = subprocess.run(_command(data_dir, run, "--json", epochs=3), capture_output=True, text=True, env=clean_env(), timeout=300)
        assert final.returncode == 0, final.stderr
        assert f"resuming {run} from {latest}:" in final.stderr


def test_full_disk_injected_into_a_checkpoint_save_is_exit_6_and_the_previous_one_is_intact(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tensorflow as tf

    calls = []
    real_save = tf.train.CheckpointManager.save

    def save(self, *args, **kwargs):  # noqa: ANN001, ANN202
        calls.append(1)
        if len(calls) == 10:
            # What TF raises when the disk is full (seen on a real full tmpfs).
            raise tf.errors.ResourceExhaustedError(None, None, f"{self.directory}/ckpt_temp/part-00000; No space left on device")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", save)
    run = tmp_path / "run"
    result = invoke("train", "--data-dir", str(data_dir), "--run-dir", str(run), "--epochs", "1", *TRAIN_ARGS)
    assert result.exit_code == LOCAL_IO
    assert "no space left on the device" in one_error_line(result.stderr)
    assert weights.latest_in(run / "checkpoints").endswith("ckpt-9")
    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    _check_usable(run, data_dir)


# Racing commands ----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_train_on_a_busy_run_refuses_with_exit_9_and_evaluate_meanwhile_works(tmp_path: Path, data_dir: Path) -> None:
    run = tmp_path / "run"
    first = subprocess.Popen(_command(data_dir, run), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=clean_env(), text=True)
    reader = _Reader(first)
    assert reader.training.wait(120)
    second = subprocess.run(_command(data_dir, run), capture_output=True, text=True, env=clean_env(), timeout=120)
    assert first.poll() is None, "the first training ended too soon to race it"
    assert second.returncode == BUSY
    assert "another `mnist train` is writing to" in one_error_line(second.stderr)
    # Meanwhile evaluate reads the run as it is being written: each time it works or says clearly why not.
    outcomes = []
    for _ in range(6):
        result = invoke("evaluate", str(run), "--data-dir", str(data_dir), "--json", "--quiet")
        assert result.exit_code in (0, MODEL), result.output
        if result.exit_code == MODEL:
            one_error_line(result.stderr)
        outcomes.append(result.exit_code)
    assert first.poll() is None
    first.send_signal(signal.SIGINT)  # as Ctrl-C: saves, says how to resume, exits 130
    assert first.wait(60) == INTERRUPTED
    reader.thread.join(10)
    assert any("resume with: mnist train --run-dir" in line for line in reader.lines)
    assert outcomes.count(0) >= 1
    _check_usable(run, data_dir)
    print(f"evaluate during training: {len(outcomes)} runs, {outcomes.count(MODEL)} refused clearly")
