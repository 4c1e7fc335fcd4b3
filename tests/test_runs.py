"""`mnist runs` and the run-directory helpers: what a user sees for finished, interrupted, running and broken runs."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import make_run, outcome
from typer.testing import CliRunner

from mnist_cli.cli import app
from mnist_cli.core.config import CONFIG_FILE, TrainConfig
from mnist_cli.core.errors import USAGE, LocalIOError, ModelError
from mnist_cli.runs.listing import list_runs
from mnist_cli.runs.runs import HISTORY_FILE, LOCK_FILE, RESULT_FILE, RUNS_DIR_ENV, latest_run


def by_name(root: Path) -> dict[str, Any]:
    return {run.name: run for run in list_runs(root)}


invoke = functools.partial(outcome, "runs")


# --------------------------------------------------------------------------- latest_run


def test_latest_run_prefers_the_newest_start_over_directory_order(tmp_path: Path) -> None:
    make_run(tmp_path, "a-finished-long-ago", val=[0.9], test_accuracy=0.9, started="2020-01-01T00:00:00+00:00")
    make_run(tmp_path, "b-older-mtime", mtime=time.time() - 3600)
    newest = make_run(tmp_path, "0-newest-mtime", mtime=time.time())
    (tmp_path / "not-a-run").mkdir()  # no config.json: never chosen
    assert latest_run(tmp_path) == newest


def test_latest_run_uses_result_started_over_config_mtime(tmp_path: Path) -> None:
    finished = make_run(tmp_path, "finished", val=[0.9], test_accuracy=0.9, started="2999-01-01T00:00:00+00:00")
    make_run(tmp_path, "fresh", mtime=time.time())
    assert latest_run(tmp_path) == finished


@pytest.mark.parametrize("setup", ["missing", "empty", "no-config"])
def test_latest_run_without_runs_says_how_to_make_one(tmp_path: Path, setup: str) -> None:
    root = tmp_path / "runs"
    if setup != "missing":
        root.mkdir()
    if setup == "no-config":
        (root / "half-made").mkdir()
    with pytest.raises(ModelError) as caught:
        latest_run(root)
    assert "mnist train" in (caught.value.hint or "")


# --------------------------------------------------------------------------- list_runs


def test_finished_and_interrupted_runs_show_progress_and_accuracy(tmp_path: Path) -> None:
    make_run(tmp_path, "done", config=TrainConfig(epochs=3), val=[0.9, 0.95, 0.93], test_accuracy=0.941)
    make_run(tmp_path, "stopped", config=TrainConfig(epochs=10, optimizer="adam", lr=0.001), val=[0.8, None, 0.85])
    make_run(tmp_path, "no-epoch-yet", config=TrainConfig(epochs=5))
    runs = by_name(tmp_path)

    done = runs["done"]
    assert (done.status, done.epochs_done, done.epochs_planned) == ("finished", 3, 3)
    assert (done.best_val_accuracy, done.test_accuracy, done.seconds) == (0.95, 0.941, 123.0)
    assert done.started is not None and done.started.year == 2025

    stopped = runs["stopped"]
    assert (stopped.status, stopped.epochs_done, stopped.epochs_planned) == ("interrupted", 3, 10)
    assert (stopped.best_val_accuracy, stopped.test_accuracy, stopped.seconds) == (0.85, None, 30.0)
    assert stopped.config is not None and stopped.config.optimizer == "adam"

    fresh = runs["no-epoch-yet"]
    assert (fresh.status, fresh.epochs_done, fresh.best_val_accuracy) == ("interrupted", 0, None)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({}, "config.json is missing"),
        ({CONFIG_FILE: "{not json"}, "config.json is not valid JSON"),
        ({CONFIG_FILE: json.dumps({"lr": -1.0})}, "config.json: --lr must be > 0.0"),
        ({CONFIG_FILE: json.dumps({"colour": "red"})}, "config.json: unknown config field(s): colour"),
        ({RESULT_FILE: "\x00\x01garbage"}, "result.json is not valid JSON"),
        ({RESULT_FILE: "[1, 2, 3]"}, "result.json is not a JSON object"),
        ({HISTORY_FILE: '{"epoch": 1}'}, "history.json is not a JSON list"),
        ({HISTORY_FILE: "[1, 2]"}, "history.json entry 1 is not an object"),
    ],
)
def test_a_malformed_run_is_listed_as_broken_with_a_reason(tmp_path: Path, files: dict[str, str], reason: str) -> None:
    run_dir = tmp_path / "bad"
    run_dir.mkdir()
    if CONFIG_FILE not in files and files:
        TrainConfig().save(run_dir)
    for name, text in files.items():
        _write(run_dir / name, text)
    make_run(tmp_path, "good", val=[0.9], test_accuracy=0.9)

    runs = by_name(tmp_path)
    assert runs["good"].status == "finished"
    assert runs["bad"].status == "broken"
    assert reason in (runs["bad"].reason or "")
    assert str(tmp_path) not in (runs["bad"].reason or "")  # the reason names the file, not the whole path

    code, out, err = invoke("--root", str(tmp_path))
    assert code == 0 and err == ""
    assert "broken" in out and f"bad: {reason}" in out


@pytest.fixture
def held_lock(tmp_path: Path) -> Iterator[Path]:
    """A run whose lock another process holds, as during `mnist train`."""
    run_dir = make_run(tmp_path, "training", config=TrainConfig(epochs=4), val=[0.7])
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); "
            "print('held', flush=True); sys.stdin.read()",
            str(run_dir / LOCK_FILE),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield run_dir
    finally:
        holder.communicate("", timeout=10)


def test_a_run_whose_lock_is_held_is_running(held_lock: Path) -> None:
    root = held_lock.parent
    # A stale result.json from an earlier attempt does not make a running run "finished".
    (held_lock / RESULT_FILE).write_text("garbage")
    run = by_name(root)["training"]
    assert (run.status, run.epochs_done, run.epochs_planned, run.best_val_accuracy) == ("running", 1, 4, 0.7)
    code, out, _ = invoke("--root", str(root))
    assert code == 0 and "running" in out


def test_a_lock_file_left_behind_by_a_finished_process_is_not_running(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "crashed", val=[0.5])
    (run_dir / LOCK_FILE).write_text("")
    assert by_name(tmp_path)["crashed"].status == "interrupted"


def test_a_run_without_a_lock_file_is_not_given_one_by_listing(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, "old", val=[0.5])
    list_runs(tmp_path)
    assert not (run_dir / LOCK_FILE).exists()


def _sorting_root(tmp_path: Path) -> Path:
    now = time.time()
    make_run(tmp_path, "b-best-test", val=[0.90], test_accuracy=0.99, started="2025-01-01T00:00:00+00:00")
    make_run(tmp_path, "a-best-val", val=[0.97], test_accuracy=0.95, started="2025-06-01T00:00:00+00:00")
    make_run(tmp_path, "d-newest", val=[0.50], mtime=now)
    make_run(tmp_path, "c-nothing", mtime=now - 60)
    return tmp_path


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("date", ["d-newest", "c-nothing", "a-best-val", "b-best-test"]),
        ("test", ["b-best-test", "a-best-val", "c-nothing", "d-newest"]),
        ("val", ["a-best-val", "b-best-test", "d-newest", "c-nothing"]),
        ("name", ["a-best-val", "b-best-test", "c-nothing", "d-newest"]),
    ],
)
def test_sorting(tmp_path: Path, sort: str, expected: list[str]) -> None:
    root = _sorting_root(tmp_path)
    assert [run.name for run in list_runs(root, sort=sort)] == expected
    code, out, _ = invoke("--root", str(root), "--sort", sort, "--json")
    assert code == 0 and [run["name"] for run in json.loads(out)] == expected
    # The table lists the runs in the same order.
    code, out, _ = invoke("--root", str(root), "--sort", sort)
    assert code == 0
    assert sorted(expected, key=out.index) == expected


# --------------------------------------------------------------------------- command line


def test_json_is_a_list_of_objects_with_the_settings(tmp_path: Path) -> None:
    config = TrainConfig(dataset="fashion-mnist", model="cnn", optimizer="adamw", lr=0.003, batch_size=128,
                         loss="xent", schedule="onecycle", epochs=2)  # fmt: skip
    make_run(tmp_path, "fashion", config=config, val=[0.8, 0.9], test_accuracy=0.88)
    (tmp_path / "broken").mkdir()
    code, out, err = invoke("--root", str(tmp_path), "--json")
    assert code == 0 and err == ""
    runs = {run["name"]: run for run in json.loads(out)}
    fashion = runs["fashion"]
    expected = {
        "status": "finished", "dataset": "fashion-mnist", "model": "cnn", "optimizer": "adamw", "lr": 0.003,
        "batch_size": 128, "loss": "xent", "schedule": "onecycle", "epochs_done": 2, "epochs_planned": 2,
        "best_val_accuracy": 0.9, "test_accuracy": 0.88, "seconds": 123.0, "started": "2025-03-01T12:00:00+00:00",
    }  # fmt: skip
    assert {key: fashion[key] for key in expected} == expected
    assert fashion["config"] == config.to_dict()
    assert runs["broken"]["status"] == "broken" and runs["broken"]["config"] is None
    assert "config.json is missing" in runs["broken"]["reason"]


def test_the_table_shows_settings_and_figures(tmp_path: Path) -> None:
    config = TrainConfig(optimizer="momentum", lr=0.05, batch_size=64, epochs=3)
    make_run(tmp_path, "momentum-run", config=config, val=[0.9, 0.95, 0.96], test_accuracy=0.9512)
    code, out, _ = invoke("--root", str(tmp_path), env={"COLUMNS": "200"})
    assert code == 0
    line = next(line for line in out.splitlines() if "momentum-run" in line)
    # Where the width allows, one line per run holds every setting, so each figure can be grepped.
    expected = ("finished", "mnist", "mlp", "momentum", "0.05", "64", "mse", "constant", "3/3", "96.00%", "95.12%", "2m 03s")
    for text in expected:
        assert text in line


def test_root_comes_from_the_environment_or_runs_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_run(tmp_path / "elsewhere", "from-env", val=[0.5])
    make_run(tmp_path / "runs", "from-cwd", val=[0.5])
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(RUNS_DIR_ENV, raising=False)
    assert "from-cwd" in invoke()[1]
    assert "from-env" in invoke(env={RUNS_DIR_ENV: str(tmp_path / "elsewhere")})[1]


@pytest.mark.parametrize("create", [False, True])
def test_no_runs_says_how_to_make_one(tmp_path: Path, create: bool) -> None:
    root = tmp_path / "runs"
    if create:
        root.mkdir()
    code, out, _ = invoke("--root", str(root))
    assert code == 0 and "no runs" in out and "mnist train" in out
    code, out, _ = invoke("--root", str(root), "--json")
    assert code == 0 and json.loads(out) == []


def test_a_root_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "runs").write_text("")
    with pytest.raises(LocalIOError, match="is not a directory"):
        list_runs(tmp_path / "runs")
    result = CliRunner().invoke(app, ["runs"], env={RUNS_DIR_ENV: str(tmp_path / "runs")})
    assert result.exit_code == USAGE and "error: --runs-root: " in result.output and "is a file" in result.output
    assert "Traceback" not in result.output


def test_runs_does_not_import_tensorflow() -> None:
    code = "import sys, mnist_cli.cli.runs, mnist_cli.runs.runs; print('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


LONG_NAME = "mnist-cnn-20261129-052541-accurate-recipe-with-a-long-name"


@pytest.mark.parametrize("width", [60, 80, 100, 200])
def test_the_table_honours_the_width_and_keeps_run_names_whole(tmp_path: Path, width: int) -> None:
    make_run(tmp_path, LONG_NAME, config=TrainConfig(model="cnn", optimizer="adam"), val=[0.9, 0.95], test_accuracy=0.95)
    make_run(tmp_path, "short", val=[0.5], test_accuracy=0.5)
    code, out, _ = invoke("--root", str(tmp_path), env={"COLUMNS": str(width)})
    assert code == 0
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= width
    # Each name is on one line, whole, so it can be copied or grepped; the accuracy is still shown.
    assert any(LONG_NAME in line for line in lines) and any("short" in line for line in lines)
    assert "95.00%" in out and "finished" in out


def test_a_narrow_table_drops_settings_before_figures(tmp_path: Path) -> None:
    make_run(tmp_path, "run-one", config=TrainConfig(optimizer="momentum", lr=0.05), val=[0.96], test_accuracy=0.9512)
    _, wide, _ = invoke("--root", str(tmp_path), env={"COLUMNS": "200"})
    _, narrow, _ = invoke("--root", str(tmp_path), env={"COLUMNS": "60"})
    assert "momentum" in wide and "schedule" in wide
    assert "schedule" not in narrow and "95.12%" in narrow and "96.00%" in narrow


def test_no_runs_names_the_folder_clearly(tmp_path: Path) -> None:
    code, out, _ = invoke("--root", str(tmp_path / "runs"))
    assert code == 0 and f"the runs folder {tmp_path / 'runs'} does not exist yet" in " ".join(out.split())
    (tmp_path / "runs").mkdir()
    code, out, _ = invoke("--root", str(tmp_path / "runs"))
    assert f"the runs folder {tmp_path / 'runs'} holds none yet" in " ".join(out.split())


def test_runs_root_and_its_old_name_root_are_one_option(tmp_path: Path) -> None:
    make_run(tmp_path, "here", val=[0.5])
    assert "here" in invoke("--runs-root", str(tmp_path))[1] and "here" in invoke("--root", str(tmp_path))[1]


def test_record_resumed_config_writes_the_new_epochs_and_keeps_the_start_time(tmp_path: Path) -> None:
    from mnist_cli.runs.runs import record_resumed_config, run_started

    run_dir = make_run(tmp_path, "resumed", config=TrainConfig(epochs=6), val=[0.5], mtime=time.time() - 3600)
    started = run_started(run_dir)
    record_resumed_config(run_dir, TrainConfig(epochs=12))
    assert TrainConfig.load(run_dir).epochs == 12 and run_started(run_dir) == started


def test_resume_with_more_epochs_is_recorded_and_listed(tmp_path: Path, tiny_data_dir: Path) -> None:
    run_dir = tmp_path / "runs" / "run"
    train = ["train", "--data-dir", str(tiny_data_dir), "--run-dir", str(run_dir), "--quiet"]
    assert CliRunner().invoke(app, [*train, "--epochs", "1"]).exit_code == 0
    result = CliRunner().invoke(app, [*train, "--resume", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / CONFIG_FILE).read_text())["epochs"] == 2
    (summary,) = list_runs(run_dir.parent)
    assert (summary.epochs_done, summary.epochs_planned) == (2, 2)
    assert "2/2" in invoke("--root", str(run_dir.parent), env={"COLUMNS": "200"})[1]
