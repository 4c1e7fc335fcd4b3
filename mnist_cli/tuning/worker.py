"""A tuning worker: the loop that queues and runs trials, and its process, `python -m mnist_cli.tuning.worker PARENT_PID`.

Started by `mnist tune` (see pool.py) with the settings as JSON on standard input; its
output goes to a log file under the study's folder, so errors are plain `error:`/`hint:`
lines the parent passes on.

The loop: under a study-wide lock a worker counts the trials that are finished, running
or queued, and if fewer than requested it queues one (an Optuna WAITING trial, which
`study.optimize` then pops atomically); so several workers, on one machine or many, run
exactly the requested number of trials, none twice. Trials a killed worker leaves RUNNING
stop sending heartbeats; after the grace period Optuna marks them FAIL and they no longer
count, so the study goes on.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mnist_cli.core.errors import INTERRUPTED, DivergedError, MnistError
from mnist_cli.runs import layout
from mnist_cli.tuning.storage import open_storage, quiet_optuna, study_lock
from mnist_cli.tuning.study import POLL_SECONDS, TuneSettings, finished_count, open_study, state_counts


def stop_file(settings: TuneSettings, parent_pid: int) -> Path:
    """The file a `mnist tune` interrupted by Ctrl-C leaves for its workers: start no new trial."""
    # A signal cannot say it: during a trial the trainer's own Ctrl-C handler takes it.
    return layout.worker_stop_file(settings.study_dir, parent_pid)


def _sampler_seed(seed: int, ticket: int) -> int:
    import numpy as np

    # Each queued trial gets its own seed: workers on several machines never repeat each other's draws.
    return int(np.random.SeedSequence([seed, ticket]).generate_state(1)[0])


_DONE = "done"  # the study holds all its finished trials
_WAIT = "wait"  # the remaining trials run in other workers


def _queue_trial(storage: Any, study: Any, settings: TuneSettings) -> int | str:
    """Queue one more trial when the study needs one and return its ticket (a number), else _DONE or _WAIT."""
    optuna = quiet_optuna()
    with study_lock(storage, settings.study):
        optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        finished = finished_count(trials)
        if finished >= settings.trials:
            return _DONE
        counts = state_counts(trials)
        busy = counts.get("RUNNING", 0) + counts.get("WAITING", 0)
        if finished + busy >= settings.trials:
            return _WAIT
        study.enqueue_trial({})
        return len(trials)


def _should_stop(settings: TuneSettings, parent_pid: int | None) -> bool:
    if parent_pid is not None and (os.getppid() != parent_pid or stop_file(settings, parent_pid).exists()):
        return True  # the `mnist tune` that started this worker is gone, or was interrupted
    return settings.deadline is not None and time.time() >= settings.deadline


def run_worker(settings: TuneSettings, *, on_event: Callable[[Any], None] | None = None, parent_pid: int | None = None) -> int:
    """Run trials until the study holds `settings.trials` finished ones; return how many this worker ran."""
    optuna = quiet_optuna()
    from mnist_cli.data.idx import load_splits
    from mnist_cli.tuning.objective import Objective

    storage = open_storage(settings.storage)
    study = open_study(settings, create=False, storage=storage)
    base = settings.base
    splits = load_splits(Path(settings.data_path), dataset=base.dataset, val_split=base.val_split, seed=base.seed)
    ran = 0
    while not _should_stop(settings, parent_pid):
        ticket = _queue_trial(storage, study, settings)
        if ticket == _DONE:
            break
        if ticket == _WAIT:
            # The remaining trials run elsewhere; wait, since one of them may be a dead worker's.
            time.sleep(POLL_SECONDS)
            continue
        study.sampler = optuna.samplers.TPESampler(
            seed=_sampler_seed(base.seed, int(ticket)), n_startup_trials=min(10, max(3, settings.trials // 3)), multivariate=True
        )
        study.pruner = optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2)
        # A diverged trial is a failed trial, not a failed study; anything else stops this worker.
        study.optimize(Objective(settings, splits, on_event=on_event), n_trials=1, catch=(DivergedError,))
        ran += 1
    return ran


def main(argv: list[str]) -> int:
    """Run trials for the study described on standard input; the exit code follows the README's table."""
    parent = int(argv[0]) if argv and argv[0].isdigit() else None
    try:
        settings = TuneSettings.from_json(sys.stdin.read())
        ran = run_worker(settings, parent_pid=parent)
    except MnistError as exc:
        print(f"error: {exc.message}", flush=True)
        if exc.hint:
            print(f"hint: {exc.hint}", flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", flush=True)
        return INTERRUPTED
    print(f"worker done: {ran} trial(s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
