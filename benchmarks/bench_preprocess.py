"""Picture preprocessing: today's (OpenCV) against the one before it (Pillow and numpy), in one interleaved run.

For each kind of picture, the bytes a client sends (a 280x280 canvas drawing as the serve
page's PNG, photographs of paper as JPEGs made by tests/pictures.py from MNIST test
digits) go through `preprocess` (decoding included, as `/predict` does it):

  1 thread    ms of wall time and of CPU time per picture, median over --rounds rounds,
              the two implementations alternating within each round
  2 threads   pictures per second with a pool of 2 threads (what `/predict` can get out of
              2 cores: numpy and OpenCV release the GIL, Python loops do not), beside 1 thread

Each implementation runs in a process of its own, as it runs for real: the old one as
`mnist predict` and the server's threads ran it, today's as `/predict`'s picture readers
run it (with `core.memory.keep_freed_memory`). The old code is read from git at run time (`git show REV:mnist_cli/inference/preprocessing.py`,
default REV 50951ca, the last commit before the package) into a temporary module; no copy of
it is kept in the tree. Both must give the same digits: the correlation of their 28x28
outputs is printed per kind.

    .venv/bin/python benchmarks/bench_preprocess.py
    .venv/bin/python benchmarks/bench_preprocess.py --count 40 --rounds 9 --json benchmarks/out/preprocess.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import _common as common
import numpy as np

sys.path.insert(0, str(common.REPO))
sys.path.insert(0, str(common.REPO / "tests"))

import pictures  # noqa: E402  (tests/pictures.py: the synthetic pictures the tests read)

from mnist_cli.data import load_split  # noqa: E402
from mnist_cli.inference import preprocessing  # noqa: E402

OLD_REV = "50951ca"
BEFORE, NOW = "before", "opencv"
OLD_PATH = "mnist_cli/inference/preprocessing.py"
Preprocess = Callable[[bytes], np.ndarray]


def load_old(rev: str, folder: Path) -> Preprocess:
    """The `preprocess` of the single-module preprocessing at `rev`, imported from a temporary file."""
    source = subprocess.run(["git", "-C", str(common.REPO), "show", f"{rev}:{OLD_PATH}"], capture_output=True, text=True, check=True).stdout
    path = folder / "preprocessing_before_opencv.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("preprocessing_before_opencv", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.preprocess


def make_pictures(mnist_dir: Path, count: int) -> dict[str, list[bytes]]:
    """The bytes of `count` pictures of each kind, from the first MNIST test digits."""
    images, _ = load_split(mnist_dir, "test")
    photo = {
        "photo, ruled paper": pictures.ruled_paper,
        "photo, squared paper": pictures.squared_paper,
        "photo, uneven light": pictures.uneven_light,
        "photo, hard shadow": pictures.hard_shadow,
    }
    kinds = {"canvas drawing 280x280": [pictures.page_drawing(images[i]) for i in range(count)]}
    for name, make in photo.items():
        kinds[name] = [pictures.encode(make(images[i], seed=i), "JPEG", quality=90) for i in range(count)]
    return kinds


def one_thread(run: Preprocess, batch: list[bytes]) -> tuple[float, float]:
    """Wall and CPU milliseconds per picture, one after another."""
    wall, cpu = time.perf_counter(), time.process_time()
    for data in batch:
        run(data)
    return (time.perf_counter() - wall) * 1000 / len(batch), (time.process_time() - cpu) * 1000 / len(batch)


def two_threads(run: Preprocess, batch: list[bytes], pool: ThreadPoolExecutor) -> float:
    """Pictures per second through a pool of 2 threads."""
    start = time.perf_counter()
    list(pool.map(run, batch))
    return len(batch) / (time.perf_counter() - start)


def _host(connection: Any, name: str, old_rev: str, folder: str, kinds: dict[str, list[bytes]]) -> None:
    """One implementation in a process of its own, set up as it runs for real, timing what it is asked to."""
    if name == NOW:
        # As `/predict`'s picture readers run it (serving/readers.py).
        from mnist_cli.core.memory import keep_freed_memory

        keep_freed_memory()
        run: Preprocess = preprocessing.preprocess
    else:
        run = load_old(old_rev, Path(folder))
    for batch in kinds.values():  # warm-up: imports, OpenCV's first calls
        run(batch[0])
    with ThreadPoolExecutor(2) as pool:
        while (request := connection.recv()) is not None:
            what, kind = request
            batch = kinds[kind]
            if what == "one":
                connection.send(one_thread(run, batch))
            elif what == "two":
                connection.send(two_threads(run, batch, pool))
            else:
                connection.send([run(data) for data in batch])


class Host:
    """A process running one implementation (`_host`)."""

    def __init__(self, name: str, old_rev: str, folder: str, kinds: dict[str, list[bytes]]) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_host, args=(child, name, old_rev, folder, kinds), daemon=True)
        self.process.start()
        child.close()

    def ask(self, what: str, kind: str) -> Any:
        self.connection.send((what, kind))
        return self.connection.recv()

    def close(self) -> None:
        self.connection.send(None)
        self.process.join(timeout=30)


def measure(hosts: dict[str, Host], kinds: dict[str, list[bytes]], rounds: int) -> dict[str, Any]:
    """Per kind and implementation: lists of wall ms, CPU ms and 2-thread pictures/s, one entry per round."""
    results: dict[str, Any] = {kind: {name: {"wall_ms": [], "cpu_ms": [], "two_threads_per_s": []} for name in hosts} for kind in kinds}
    names = list(hosts)
    for round_ in range(rounds):
        for kind in kinds:
            # The order alternates, so neither always runs in the other's wake (caches, load).
            for name in names if round_ % 2 == 0 else names[::-1]:
                wall, cpu = hosts[name].ask("one", kind)
                entry = results[kind][name]
                entry["wall_ms"].append(wall)
                entry["cpu_ms"].append(cpu)
                entry["two_threads_per_s"].append(hosts[name].ask("two", kind))
    return results


def agreement(hosts: dict[str, Host], kind: str) -> float:
    """Mean correlation of the two implementations' 28x28 digits."""
    old, new = (host.ask("outputs", kind) for host in hosts.values())
    return float(np.mean([np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1] for a, b in zip(old, new)]))


def table(results: dict[str, Any], agree: dict[str, float]) -> str:
    """The figures as a Markdown table (medians over the rounds)."""
    lines = [
        "| picture | before: ms (CPU ms) | OpenCV: ms (CPU ms) | CPU ratio | before, 2 threads: /s (x 1 thread) | OpenCV, 2 threads: /s (x 1 thread) | outputs agree |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, entry in results.items():
        old, new = entry[BEFORE], entry[NOW]
        cells = [kind]
        for item in (old, new):
            cells.append(f"{common.median(item['wall_ms']):.1f} ({common.median(item['cpu_ms']):.1f})")
        cells.append(f"**{common.median(old['cpu_ms']) / common.median(new['cpu_ms']):.2f}x**")
        for item in (old, new):
            rate = common.median(item["two_threads_per_s"])
            cells.append(f"{rate:.0f} ({rate * common.median(item['wall_ms']) / 1000:.2f}x)")
        cells.append(f"{agree[kind]:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="pictures of each kind")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--old", default=OLD_REV, help="the git revision of the single-module preprocessing")
    parser.add_argument("--mnist-dir", type=Path, default=common.default_mnist10k_dir())
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    problem = common.check_dataset_dir(args.mnist_dir, common.MNIST10K_HINT)
    if problem:
        sys.exit(f"error: {problem}")
    with tempfile.TemporaryDirectory() as folder:
        kinds = make_pictures(args.mnist_dir, args.count)
        hosts = {name: Host(name, args.old, folder, kinds) for name in (BEFORE, NOW)}
        try:
            load_before = common.load_average()
            results = measure(hosts, kinds, args.rounds)
            load_after = common.load_average()
            agree = {kind: agreement(hosts, kind) for kind in kinds}
        finally:
            for host in hosts.values():
                host.close()
    machine = common.machine()
    print(f"{machine.get('Model name', '?')}, {machine.get('cpus')} CPUs; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print(f"{args.count} pictures of each kind, medians of {args.rounds} interleaved rounds; ms = wall time per picture, one thread")
    print(table(results, agree))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"machine": machine, "load": [load_before, load_after], "results": results, "agreement": agree, "old": args.old}
        args.json.write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
