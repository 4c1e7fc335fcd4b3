"""Start-up of `mnist` against a bare Typer app of as many commands, in one interleaved run (issue 19).

Each probe runs in a fresh process; the rounds alternate the two apps so both meet the same
load. The figures are medians of the wall times, and the ratios mnist / bare app:

  help      `mnist --help`                                   vs  `bare_app.py --help`
  evaluate  `mnist evaluate no/such/run`                     vs  `bare_app.py evaluate no/such/run`
  predict   `mnist predict --checkpoint no/such/run x.png`   vs  `bare_app.py evaluate no/such/run`

    .venv/bin/python benchmarks/bench_startup.py
    .venv/bin/python benchmarks/bench_startup.py --rounds 30 --json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _common as common

GOALS = {"help": 1.3, "evaluate": 1.5, "predict": 1.5}  # at most this many times the bare app
BARE = [sys.executable, str(Path(__file__).resolve().parent / "bare_app.py")]
# The console script, as people run it (`python -m mnist_cli` adds runpy's search on top).
MNIST = [str(Path(sys.executable).parent / "mnist")]
PROBES = {
    "help": (["--help"], ["--help"], 0),
    "evaluate": (["evaluate", "no/such/run"], ["evaluate", "no/such/run"], 7),
    "predict": (["predict", "--checkpoint", "no/such/run", "x.png"], ["evaluate", "no/such/run"], 7),
}


def _timed(argv: list[str], expected: int) -> float:
    env = {**os.environ, "COLUMNS": "100"}
    began = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - began
    if done.returncode != expected:
        raise SystemExit(f"error: {' '.join(argv)} exited {done.returncode}, not {expected}: {done.stderr.strip()[-500:]}")
    return seconds


def measure(rounds: int) -> dict[str, dict[str, float]]:
    """Median wall seconds of each probe for mnist and the bare app, rounds alternating which goes first."""
    times: dict[str, dict[str, list[float]]] = {name: {"mnist": [], "bare": []} for name in PROBES}
    for round_number in range(rounds):
        for name, (ours, bare, code) in PROBES.items():
            pair = [("mnist", MNIST + ours, code), ("bare", BARE + bare, 0 if name == "help" else 7)]
            for who, argv, expected in pair if round_number % 2 == 0 else reversed(pair):
                times[name][who].append(_timed(argv, expected))
    result = {}
    for name, samples in times.items():
        mnist, bare = common.median(samples["mnist"]), common.median(samples["bare"])
        result[name] = {"mnist_s": mnist, "bare_s": bare, "ratio": mnist / bare, "goal": GOALS[name]}
    return result


def main() -> None:
    if not Path(MNIST[0]).exists():
        sys.exit(f"error: {MNIST[0]} is missing: install the project into this environment (pip install -e .)")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="fresh processes per probe and app (default 15)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    load_before = common.load_average()[0]
    result = measure(args.rounds)
    report = {"rounds": args.rounds, "load_1min": [load_before, common.load_average()[0]], "probes": result, "machine": common.machine()}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.rounds} rounds, load {load_before:.1f} -> {report['load_1min'][1]:.1f}")
    for name, figures in result.items():
        verdict = "met" if figures["ratio"] <= figures["goal"] else "MISSED"
        print(
            f"{name:<9} mnist {figures['mnist_s'] * 1000:6.0f} ms  bare {figures['bare_s'] * 1000:6.0f} ms  "
            f"{figures['ratio']:.2f}x (goal <= {figures['goal']}x, {verdict})"
        )


if __name__ == "__main__":
    main()
