"""`mnist tune`: search spaces, bad input, pruning, and studies shared by processes on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import IN_CI, write_tiny_dataset
from mnist_cli.cli import app
from mnist_cli.runs import layout, listing
from mnist_cli.core.errors import STORAGE, STUDY, USAGE, UsageError
from mnist_cli.tuning import space as spaces

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
DEADLINE = 300  # seconds; a generous bound on a busy 2-core CI box, never a fixed wait

TINY_SPACE = """
lr = { low = 1e-3, high = 1e-2, log = true }
batch_size = [32, 64]
"""


@pytest.fixture
def tune_dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(data dir holding a small mnist/, runs root, space file)."""
    data = tmp_path / "data"
    write_tiny_dataset(data / "mnist", n_train=300, n_test=100)
    space = tmp_path / "space.toml"
    space.write_text(TINY_SPACE)
    return data, tmp_path / "runs", space


def _tune_args(data: Path, root: Path, space: Path, *extra: str) -> list[str]:
    return [
        "tune", "--data-dir", str(data), "--runs-root", str(root), "--space", str(space),
        "--loss", "xent", "--optimizer", "adam", "--epochs", "1", "--log-every", "5", *extra,
    ]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def _spawn(args: list[str], **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(**env),
        start_new_session=True,
    )


def _finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=DEADLINE)
    return process.returncode, out, err


def _trials(storage: str, study: str) -> list:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


# --------------------------------------------------------------------------- search spaces


def test_default_spaces_are_valid_and_fixed_options_leave_them() -> None:
    for model in ("mlp", "cnn"):
        space = spaces.default_space(model)
        assert {"lr", "optimizer", "schedule", "batch_size", "epochs", "augment"} <= set(space.names)
    assert "hidden" in spaces.default_space("mlp").names
    assert "lr" not in spaces.default_space("mlp").without({"lr"}).names


def test_a_space_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "space.toml"
    path.write_text('lr = { low = 1e-4, high = 1e-2, log = true }\nepochs = { low = 2, high = 4 }\nhidden = ["256", [512, 256]]\naugment = [false, true]\n')
    space = spaces.read_space(path)
    assert space.to_dict() == {
        "augment": [False, True],
        "epochs": {"low": 2, "high": 4, "log": False},
        "hidden": ["256", "512,256"],
        "lr": {"low": 1e-4, "high": 1e-2, "log": True},
    }
    assert spaces.parse_space(space.to_dict(), source="again") == spaces.parse_space(space.to_dict(), source="again")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = [1, 2]", "unknown parameter 'colour'"),
        ("seed = [1, 2]", "unknown parameter 'seed'"),
        ("optimizer = []", "has no choices"),
        ("lr = { low = 0.1, high = 0.01 }", "inverted"),
        ("lr = { low = 0.01, high = 0.01 }", "empty"),
        ("epochs = { low = 5, high = 2 }", "inverted"),
        ("epochs = { low = 0, high = 2 }", "--epochs must be >= 1"),
        ("lr = { low = 0, high = 0.1, log = true }", "log range needs low > 0"),
        ("optimizer = [\"adam\", \"rmsprop\"]", "--optimizer must be one of"),
        ("optimizer = { low = 1, high = 2 }", "takes a list of choices"),
        ("lr = { low = 1e-3 }", "needs exactly low and high"),
        ("hidden = [\"256,x\"]", "comma-separated integers"),
        ("", "is empty"),
        ("lr = [", "cannot be parsed"),
    ],
)
def test_bad_space_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "space.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as caught:
        spaces.read_space(path)
    assert message in caught.value.message


def test_a_bad_space_file_is_one_error_line_and_exit_2(tmp_path: Path, tiny_data_dir: Path) -> None:
    space = tmp_path / "space.toml"
    space.write_text("lr = { low = 0.1, high = 0.01 }\n")
    result = runner.invoke(app, _tune_args(tiny_data_dir, tmp_path / "runs", space))
    assert result.exit_code == USAGE
    assert result.stderr.startswith("error: ") and "inverted" in result.stderr and "Traceback" not in result.output


def test_tune_help_imports_neither_tensorflow_nor_optuna() -> None:
    code = "import sys; from mnist_cli.cli import app, tune; print([m for m in ('tensorflow', 'optuna') if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True).stdout.strip() == "[]"


# --------------------------------------------------------------------------- storage and study errors


def test_an_unreachable_storage_is_exit_12_and_never_prints_the_password(tune_dirs: tuple[Path, Path, Path]) -> None:
    data, root, space = tune_dirs
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://mnist:hunter2-secret@127.0.0.1:{port}/studies"
    result = runner.invoke(app, _tune_args(data, root, space, "--storage", url))
    assert result.exit_code == STORAGE, result.output
    assert "hunter2-secret" not in result.output
    assert result.stderr.startswith("error: cannot open the study storage postgresql://mnist:***@127.0.0.1")


def test_an_sqlite_file_in_a_missing_folder_is_exit_12(tune_dirs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    data, root, space = tune_dirs
    result = runner.invoke(app, _tune_args(data, root, space, "--storage", f"sqlite:///{tmp_path}/no/such/dir/s.db"))
    assert result.exit_code == STORAGE and result.stderr.startswith("error: ")


def test_a_study_made_with_another_space_is_refused_and_kept(tune_dirs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    from mnist_cli.tuning import study as studies

    data, root, space = tune_dirs
    root.mkdir()
    storage = f"sqlite:///{root.resolve()}/s.db"
    settings = studies.TuneSettings(
        study="s", storage=storage, trials=1, space=spaces.read_space(space),
        fixed={"dataset": "mnist", "model": "mlp", "seed": 0, "epochs": 1, "loss": "xent", "optimizer": "adam", "log_every": 5},
        data_path=str(data / "mnist"), runs_root=str(root),
    )
    studies.prepare(settings).enqueue_trial({"lr": 0.005, "batch_size": 32})  # something that must survive
    other = tmp_path / "other.toml"
    other.write_text("lr = { low = 1e-4, high = 1e-2, log = true }\n")
    result = runner.invoke(app, _tune_args(data, root, other, "--study", "s", "--trials", "2"))
    assert result.exit_code == STUDY, result.output
    assert "created with another search space" in result.stderr and result.stderr.count("error:") == 1
    changed = runner.invoke(app, _tune_args(data, root, space, "--study", "s", "--trials", "2", "--epochs", "3"))
    assert changed.exit_code == STUDY and "--epochs 1" in changed.stderr
    trials = _trials(storage, "s")
    assert [(t.number, t.state.name, t.params) for t in trials] == [(0, "WAITING", {})]


# --------------------------------------------------------------------------- pruning


@pytest.mark.slow  # a real trial, trained to its first report
def test_a_pruned_trial_leaves_a_consistent_run_marked_pruned(tune_dirs: tuple[Path, Path, Path]) -> None:
    import optuna

    from mnist_cli.data.idx import load_splits
    from mnist_cli.tuning import study as studies
    from mnist_cli.tuning.objective import Objective

    data, root, space_file = tune_dirs

    class PruneAfterFirstEpoch(optuna.pruners.BasePruner):
        def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
            return True

    settings = studies.TuneSettings(
        study="p", storage="sqlite://", trials=1, space=spaces.read_space(space_file),
        fixed={"dataset": "mnist", "model": "mlp", "seed": 0, "epochs": 3, "loss": "xent", "log_every": 5},
        data_path=str(data / "mnist"), runs_root=str(root),
    )
    splits = load_splits(data / "mnist", dataset="mnist", val_split=0.1, seed=0)
    study = optuna.create_study(direction="maximize", pruner=PruneAfterFirstEpoch())
    study.optimize(Objective(settings, splits, on_event=None), n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED and list(trial.intermediate_values) == [1]
    run_dir = Path(trial.user_attrs["run_dir"])
    summary = listing.summarize_run(run_dir)
    assert summary.status == listing.STATE_PRUNED and summary.epochs_done == 1 and "after epoch 1" in summary.reason
    assert not (run_dir / layout.RESULT_FILE).exists()
    assert any((run_dir / layout.CHECKPOINTS_DIR).iterdir())  # resumable with `mnist train --resume`


# --------------------------------------------------------------------------- shared studies


def _two_processes_share_a_study(data: Path, root: Path, space: Path, storage: str, study: str, *, jobs: int = 1) -> list:
    args = [*_tune_args(data, root, space, "--study", study, "--storage", storage, "--trials", "3"), "--json"]
    first, second = _spawn([*args, "--jobs", str(jobs)]), _spawn(args)
    results = [_finish(first), _finish(second)]
    for code, out, err in results:
        assert code == 0, err
        assert "secret-pw" not in out + err
        assert json.loads(out)["counts"] == {"complete": 3}
    trials = _trials(storage, study)
    assert sorted(t.number for t in trials) == [0, 1, 2]  # exactly three trials, none twice
    assert all(t.state.name == "COMPLETE" for t in trials)
    run_dirs = {t.user_attrs["run_dir"] for t in trials}
    assert len(run_dirs) == 3 and all((Path(d) / layout.RESULT_FILE).is_file() for d in run_dirs)
    return trials


@pytest.mark.slow  # two worker processes, each importing TensorFlow
def test_two_processes_share_a_study_on_sqlite(tune_dirs: tuple[Path, Path, Path]) -> None:
    data, root, space = tune_dirs
    root.mkdir()
    # One of the two runs two workers itself (--jobs 2): three workers share the study.
    _two_processes_share_a_study(data, root, space, f"sqlite:///{root.resolve()}/shared.db", "shared", jobs=2)
    listed = {run.name: run for run in listing.list_runs(root)}
    assert {name for name in listed if name.startswith("shared/")} == {"shared/trial-0000", "shared/trial-0001", "shared/trial-0002"}
    assert all(run.status == listing.STATE_FINISHED for run in listed.values())
    # Run again as it was made, the finished study reports itself ("running it again continues it").
    again = runner.invoke(app, [*_tune_args(data, root, space, "--study", "shared", "--trials", "3"), "--json"])
    assert again.exit_code == 0, again.output
    payload = json.loads(again.stdout)
    assert payload["counts"] == {"complete": 3} and payload["best_trial"] in (0, 1, 2)
    assert payload["best_test_accuracy"] is not None and set(payload["best_params"]) == {"lr", "batch_size"}
    from mnist_cli.core.config import read_config_file

    best = read_config_file(Path(payload["best_config_file"]))
    assert best["epochs"] == 1 and best["loss"] == "xent" and best["lr"] == payload["best_params"]["lr"]


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server on a free loopback port (or $MNIST_TEST_POSTGRES_URL), stopped at the end."""
    given = os.environ.get("MNIST_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bins:
        if IN_CI:
            pytest.fail("PostgreSQL is missing in CI: .ci/run must apt-get install postgresql")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    bin_dir = bins[-1].parent
    # Not under pytest's temporary root: that is private to our user, and the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="mnist-postgres-"))
    data_dir, socket_dir = base / "data", base / "socket"
    socket_dir.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
        shutil.chown(socket_dir, "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    initdb = subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "mnist", "--auth=trust", "-E", "UTF8"], capture_output=True, text=True
    )
    if initdb.returncode != 0:
        pytest.fail(f"initdb failed: {initdb.stderr}")
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={socket_dir} -c fsync=off"
    started = subprocess.run(
        [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-o", options, "-l", str(base / "log"), "-w", "-t", "120", "start"],
        capture_output=True,
        text=True,
    )
    if started.returncode != 0:
        pytest.fail(f"PostgreSQL did not start: {started.stderr}{(base / 'log').read_text() if (base / 'log').exists() else ''}")
    try:
        # Trust authentication ignores the password; it is there to prove that it is never printed.
        yield f"postgresql://mnist:secret-pw@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow  # two worker processes, each importing TensorFlow
def test_two_processes_share_a_study_on_postgresql(tune_dirs: tuple[Path, Path, Path], postgres_url: str) -> None:
    data, root, space = tune_dirs
    study = f"pg-{os.getpid()}-{time.time_ns()}"  # a server from .ci/run may outlive one test session
    _two_processes_share_a_study(data, root, space, postgres_url, study)


@pytest.mark.slow  # two worker processes, each importing TensorFlow
def test_a_worker_killed_with_kill_9_leaves_its_trial_failed_and_the_study_goes_on(tune_dirs: tuple[Path, Path, Path]) -> None:
    data, root, space = tune_dirs
    root.mkdir()
    storage = f"sqlite:///{root.resolve()}/k.db"
    # Long trials, so the kill lands mid-trial; a 1 s heartbeat makes the grace period 3 s.
    args = [*_tune_args(data, root, space, "--study", "k", "--storage", storage, "--trials", "1"), "--epochs", "30", "--json"]
    process = _spawn(args, MNIST_TUNE_HEARTBEAT="1")
    deadline = time.monotonic() + DEADLINE
    victim = None
    while victim is None:
        assert time.monotonic() < deadline and process.poll() is None, "no trial started"
        try:
            running = [t for t in _trials(storage, "k") if t.state.name == "RUNNING" and "worker" in t.user_attrs]
        except Exception:  # the study is not created yet
            running = []
        if running:
            victim = running[0]
        else:
            time.sleep(0.2)  # polling an observable condition, not waiting for it
    os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    code, out, err = _finish(process)
    assert code == 0, err
    states = {t.number: t.state.name for t in _trials(storage, "k")}
    assert states[victim.number] == "FAIL"
    assert list(states.values()).count("COMPLETE") == 1 and len(states) == 2
    payload = json.loads(out)
    assert payload["counts"] == {"complete": 1, "fail": 1}


@pytest.mark.slow  # real trials until the deadline passes
def test_timeout_starts_no_trial_past_its_deadline(tune_dirs: tuple[Path, Path, Path]) -> None:
    data, root, space = tune_dirs
    result = runner.invoke(app, [*_tune_args(data, root, space, "--study", "t", "--trials", "5", "--timeout", "0.001"), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["counts"] == {} and payload["best_trial"] is None and payload["best_config_file"] is None
