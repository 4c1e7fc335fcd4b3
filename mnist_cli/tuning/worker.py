"""A tuning worker process: `python -m mnist_cli.tuning.worker PARENT_PID`, settings as JSON on standard input.

Started by `mnist tune` (see pool.py); its output goes to a log file under the
study's folder, so errors are plain `error:`/`hint:` lines the parent passes on.
"""

from __future__ import annotations

import sys

from mnist_cli.core.errors import INTERRUPTED, MnistError


def main(argv: list[str]) -> int:
    """Run trials for the study described on standard input; the exit code follows the README's table."""
    from mnist_cli.tuning.study import TuneSettings, run_worker

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
