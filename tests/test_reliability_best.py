"""Reliability round two (issue 11): a full disk at the worst moment never gives a silently wrong result.

The disk fills (a real small tmpfs, filled to the last byte just before the chosen write; an
injected ENOSPC where no tmpfs can be mounted) while history.json, a checkpoint, best/,
model.keras or result.json is written at the end of the run. After space is freed, `--resume`
finishes, and the recorded best epoch, its validation accuracy, the checkpoint scored and
model.keras agree with each other and with an uninterrupted run of the same seed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import fill, invoke, one_error_line

from mnist_cli.runs import layout, runs
from mnist_cli.core.errors import LOCAL_IO
from mnist_cli.model import weights
from mnist_cli.training import checkpoints

pytestmark = pytest.mark.tiny_data(n_train=400, n_test=100)  # the `data_dir` of this module (conftest.py)

ARGS = ["--batch-size", "20", "--hidden", "16", "--log-every", "100", "--lr", "0.05", "--quiet", "--json"]


def _train(data_dir: Path, run: Path, epochs: int, *extra: str):  # noqa: ANN202 - click's Result
    return invoke("train", "--data-dir", str(data_dir), "--run-dir", str(run), "--epochs", str(epochs), *ARGS, *extra)


@pytest.fixture(scope="module")
def reference(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict]:
    """result.json of uninterrupted runs of 1 and 2 epochs (bit-identical on CPU with the same seed)."""
    results = {}
    for epochs in (1, 2):
        run = tmp_path_factory.mktemp("reference") / "run"
        result = _train(data_dir, run, epochs)
        assert result.exit_code == 0, result.output
        results[epochs] = json.loads(result.stdout)
    return results


@contextlib.contextmanager
def _small_disk(path: Path) -> Iterator[tuple[Path, bool]]:
    """(a folder on a real 16 MB tmpfs, True) where one can be mounted, else (a plain folder, False)."""
    path.mkdir(parents=True)
    if os.geteuid() == 0 and shutil.which("mount"):
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path)], capture_output=True)
        if done.returncode == 0:
            try:
                yield path, True
            finally:
                subprocess.run(["umount", "-l", str(path)], check=False)
            return
    yield path, False


def _disk_full_now(disk: Path, real: bool, where: str) -> None:
    if real:
        fill(disk)  # the real write that follows hits a real ENOSPC
    else:
        raise OSError(errno.ENOSPC, "No space left on device", where)


# Each moment: (what to patch, a predicate on the call that says "now").
MOMENTS = ["history", "checkpoint", "best", "model.keras", "result.json"]


def _arm(monkeypatch: pytest.MonkeyPatch, moment: str, epochs: int, trigger: Callable[[str], None]) -> None:
    fired = []

    def once(where: str) -> None:
        if not fired:
            fired.append(where)
            trigger(where)

    if moment in ("history", "result.json"):
        real_write = runs.write_json
        name = layout.HISTORY_FILE if moment == "history" else layout.RESULT_FILE

        def write_json(path: Path, payload: object) -> None:
            if Path(path).name == name and (moment != "history" or len(payload) == epochs):  # type: ignore[arg-type]
                once(str(path))
            real_write(path, payload)

        monkeypatch.setattr(runs, "write_json", write_json)
    elif moment in ("checkpoint", "best"):
        real_save = checkpoints.RunCheckpoints.save

        def save(self: checkpoints.RunCheckpoints, *, step: int, best: bool = False) -> str:
            end_of_last = int(self.state.epoch.numpy()) == epochs and int(self.state.step_in_epoch.numpy()) == 0
            if end_of_last and best == (moment == "best"):
                once(moment)
            return real_save(self, step=step, best=best)

        monkeypatch.setattr(checkpoints.RunCheckpoints, "save", save)
    else:
        real_export = weights.save_keras_model

        def save_keras_model(model: object, path: Path) -> None:
            once(str(path))
            real_export(model, path)

        monkeypatch.setattr(weights, "save_keras_model", save_keras_model)


def _stored_epoch(prefix: str) -> int:
    import tensorflow as tf

    return int(tf.train.load_variable(prefix, "epoch/.ATTRIBUTES/VARIABLE_VALUE"))


# The quick loop fills the disk at the issue's own moment (writing best/); CI tries them all.
@pytest.mark.parametrize(
    ("moment", "epochs"),
    [
        *(pytest.param(moment, 2, marks=() if moment == "best" else pytest.mark.slow) for moment in MOMENTS),
        pytest.param("best", 1, marks=pytest.mark.slow),
    ],
    ids=[*(f"{moment}-epoch-2" for moment in MOMENTS), "best-only-epoch"],
)
def test_a_full_disk_at_each_moment_then_resume_gives_the_uninterrupted_result(
    tmp_path: Path, data_dir: Path, reference: dict[int, dict], monkeypatch: pytest.MonkeyPatch, moment: str, epochs: int
) -> None:
    expected = reference[epochs]
    assert expected["best_epoch"] == epochs, "the tiny run must improve every epoch for this test to bite"
    with _small_disk(tmp_path / "disk") as (disk, real):
        run = disk / "run"
        _arm(monkeypatch, moment, epochs, lambda where: _disk_full_now(disk, real, where))
        failed = _train(data_dir, run, epochs)
        assert failed.exit_code == LOCAL_IO, failed.output
        assert "no space left on the device" in one_error_line(failed.stderr)
        monkeypatch.undo()
        with contextlib.suppress(FileNotFoundError):
            (disk / "filler").unlink()

        resumed = _train(data_dir, run, epochs, "--resume")
        assert resumed.exit_code == 0, resumed.output
        result = json.loads(resumed.stdout)
        on_disk = json.loads((run / layout.RESULT_FILE).read_text())
        history = json.loads((run / layout.HISTORY_FILE).read_text())

        assert on_disk == result
        assert [entry["epoch"] for entry in history] == list(range(1, epochs + 1))
        # The recorded best, its accuracy and the checkpoint scored agree, and match the uninterrupted run.
        for field in ("best_epoch", "best_val_accuracy", "test_accuracy", "test_loss", "epochs"):
            assert result[field] == expected[field], field
        assert result["best_checkpoint"] is not None
        assert _stored_epoch(result["best_checkpoint"]) == result["best_epoch"]
        assert history[result["best_epoch"] - 1]["val_accuracy"] == result["best_val_accuracy"]
        # model.keras is the best checkpoint's model: evaluate gives train's test figures for both.
        for target in (run / layout.MODEL_FILE, run):
            scored = invoke("evaluate", str(target), "--data-dir", str(data_dir), "--json", "--quiet")
            assert scored.exit_code == 0, scored.output
            assert json.loads(scored.stdout)["accuracy"] == pytest.approx(result["test_accuracy"]), target
    print(f"{moment} (epochs {epochs}): {'real tmpfs' if real else 'injected ENOSPC'}")
