"""Running a study on this machine: J worker processes sharing the cores and the study's storage.

Processes, not threads: each worker has its own TensorFlow with its share of the
cores, and a worker killed with kill -9 takes only its own trial with it (the
heartbeat marks that trial failed; the pool starts a replacement worker).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mnist_cli.core.errors import Interrupted, LocalIOError, MnistError
from mnist_cli.runs import layout
from mnist_cli.tuning.results import TrialRow, trial_rows
from mnist_cli.tuning.study import POLL_SECONDS, TuneSettings, finished_count, open_study
from mnist_cli.tuning.worker import stop_file

MAX_RESTARTS_PER_JOB = 3


def cores() -> int:
    """The CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_env(jobs: int) -> dict[str, str]:
    """Environment giving a worker its share of the cores (TensorFlow's and oneDNN's thread pools)."""
    share = max(1, cores() // jobs)
    return {
        "TF_NUM_INTRAOP_THREADS": str(share),
        "TF_NUM_INTEROP_THREADS": str(min(2, share)),
        "OMP_NUM_THREADS": str(share),
    }


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]


class WorkerFailed(MnistError):
    """A worker stopped with an error; its exit code and message are passed on."""

    def __init__(self, message: str, hint: str | None, exit_code: int) -> None:
        super().__init__(message, hint)
        self.exit_code = exit_code


def run_pool(
    settings: TuneSettings,
    *,
    on_progress: Callable[[list[TrialRow]], None] | None = None,
) -> None:
    """Run `settings.jobs` workers until the study is done (or the deadline); report the trials every second."""
    log_dir = settings.study_dir / layout.WORKERS_DIR
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalIOError(f"cannot create {log_dir}: {exc.strerror or exc}", "check the runs root") from None
    study = open_study(settings, heartbeat=False, create=False)
    env = {**os.environ, **thread_env(settings.jobs)}
    workers = [_spawn(settings, index, env) for index in range(settings.jobs)]
    restarts = 0
    failure: WorkerFailed | None = None
    try:
        while workers:
            time.sleep(POLL_SECONDS)
            if on_progress is not None:
                on_progress(trial_rows(study))
            for worker in list(workers):
                code = worker.process.poll()
                if code is None:
                    continue
                worker.log.close()
                workers.remove(worker)
                if code < 0 and restarts < MAX_RESTARTS_PER_JOB * settings.jobs and not _done(study, settings):
                    # Killed (kill -9, out of memory): its trial fails after the heartbeat grace period; go on.
                    restarts += 1
                    workers.append(_spawn(settings, worker.index, env))
                elif code not in (0,) and failure is None:
                    failure = _failure(worker, code)
                    for other in workers:  # one broken worker (bad data, lost database) stops the others
                        _interrupt(other.process)
    except KeyboardInterrupt:
        stop = stop_file(settings, os.getpid())
        stop.touch()
        for worker in workers:
            _interrupt(worker.process)
        for worker in workers:
            _wait(worker.process)
            worker.log.close()
        raise Interrupted(
            "interrupted; the running trials were saved and marked failed",
            "run the same command again to continue the study",
        ) from None
    finally:
        stop_file(settings, os.getpid()).unlink(missing_ok=True)
        if on_progress is not None:
            on_progress(trial_rows(study))
    if failure is not None:
        raise failure


def _done(study: Any, settings: TuneSettings) -> bool:
    finished = finished_count(study.get_trials(deepcopy=False))
    return finished >= settings.trials or (settings.deadline is not None and time.time() >= settings.deadline)


def _spawn(settings: TuneSettings, index: int, env: dict[str, str]) -> _Worker:
    log_path = layout.worker_log(settings.study_dir, os.getpid(), index)
    log = open(log_path, "ab")  # noqa: SIM115 (closed when the worker ends)
    # Own session: a Ctrl-C on the terminal reaches the pool, which passes one SIGINT on,
    # so each worker saves its trial once instead of seeing a "second Ctrl-C".
    process = subprocess.Popen(
        [sys.executable, "-m", "mnist_cli.tuning.worker", str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    assert process.stdin is not None
    process.stdin.write(settings.to_json().encode("utf-8"))  # the storage URL may hold a password: not on argv
    process.stdin.close()
    return _Worker(index, process, log_path, log)


def _interrupt(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        try:
            process.send_signal(signal.SIGINT)
        except ProcessLookupError:
            pass


def _wait(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _failure(worker: _Worker, code: int) -> WorkerFailed:
    try:
        lines = worker.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    message = next((line[len("error: ") :] for line in reversed(lines) if line.startswith("error: ")), None)
    hint = next((line[len("hint: ") :] for line in reversed(lines) if line.startswith("hint: ")), None)
    if message is None:
        message = f"a tuning worker stopped with exit code {code}"
        hint = f"its output is in {worker.log_path}"
    return WorkerFailed(message, hint, code if 0 < code < 256 else 1)
