"""Command-line figures: start-up, evaluate, predict, and the peak memory of train.

  help       `mnist --help`, wall time per run (median of --repeat), beside a bare
             `python -c pass` and `import tensorflow` for scale
  evaluate   `mnist evaluate RUN --json` on the 10,000 test images: the command's own
             "seconds" (scoring after the model is loaded: tracing, the forward passes,
             the metrics) and the wall time of the whole command
  predict    `mnist predict --checkpoint RUN digit.png` on one picture, wall time
  fast       `mnist predict` on one picture and on a folder of 100 pictures (112x112
             PNGs of MNIST test digits), whole command, LiteRT path (cache warm) beside
             `--engine tensorflow` and `python -c "import tensorflow"`, interleaved,
             medians of --repeat-fast runs, for the MLP and the convnet
  memory     peak resident memory (ru_maxrss of the child, from wait4) of
             `mnist train` on the 60,000 Fashion-MNIST training images, MLP and convnet

The runs it evaluates and predicts with are trained first, in a temporary folder:
the walk-through's MLP and the convnet in float32 and mixed-bf16 (1 epoch each).

    .venv/bin/python benchmarks/bench_cli.py
    .venv/bin/python benchmarks/bench_cli.py --parts help,memory --repeat 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common

GOALS = {
    "help_seconds": 0.3,
    "evaluate_seconds": 1.0,
    "train_peak_rss_mb": 1500,
    "predict_one_seconds": 0.5,
    "predict_100_seconds": 1.0,
}


def _mnist() -> str:
    script = Path(sys.executable).parent / "mnist"
    if not script.exists():
        sys.exit(f"error: {script} is missing: install the project into this environment (pip install -e .)")
    return str(script)


def _timed(argv: list[str], *, env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess[str]]:
    began = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return seconds, done


def _peak_rss(argv: list[str], *, env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one child, from its own rusage."""
    began = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - began
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        error = child.stderr.read().decode(errors="replace") if child.stderr else ""
        raise RuntimeError(f"{' '.join(argv)} exited {child.returncode}: {error[-2000:]}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def _data_root(folder: Path, args: argparse.Namespace) -> Path:
    # `--data-dir` wants <dir>/<dataset>/, so the shared folders are linked in under their names.
    root = folder / "data"
    root.mkdir()
    if args.fashion_dir.is_dir():  # only `memory` needs it
        (root / "fashion-mnist").symlink_to(args.fashion_dir.resolve())
    (root / "mnist").symlink_to(args.mnist_dir.resolve())
    return root


def _help(args: argparse.Namespace) -> dict[str, Any]:
    mnist = _mnist()
    quiet = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    probes = {
        "mnist --help": [mnist, "--help"],
        "mnist train --help": [mnist, "train", "--help"],
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import tensorflow'": [sys.executable, "-c", "import tensorflow"],
    }
    times: dict[str, list[float]] = {name: [] for name in probes}
    _timed(probes["mnist --help"])  # warm the page cache once
    for _ in range(args.repeat):  # interleaved, so a burst of load hits each alike
        for name, argv in probes.items():
            if name.startswith("python -c 'import") and len(times[name]) >= 3:
                continue
            times[name].append(_timed(argv, env=quiet)[0])
    result = {name: {"median_seconds": common.median(values), "runs": values} for name, values in times.items()}
    imported = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import mnist_cli.cli; import mnist_cli.cli.train, mnist_cli.cli.evaluate"],
        capture_output=True,
        text=True,
        check=False,
    ).stderr
    heavy = [line for line in imported.splitlines() if "tensorflow" in line or "keras" in line]
    result["tensorflow_imported_by_help"] = bool(heavy)
    for name, entry in result.items():
        if isinstance(entry, dict):
            print(f"  {name:32s} {entry['median_seconds']:.3f} s (median of {len(entry['runs'])})")
    return result


def _train(mnist: str, root: Path, run_dir: Path, extra: list[str]) -> list[str]:
    return [mnist, "train", "--data-dir", str(root), "--run-dir", str(run_dir), "--quiet", "--json", *extra]


def _evaluate_and_predict(args: argparse.Namespace, folder: Path, root: Path) -> dict[str, Any]:
    mnist = _mnist()
    report: dict[str, Any] = {}
    from PIL import Image

    from mnist_cli.data import load_split

    test_images, test_labels = load_split(args.mnist_dir, "test")
    picture = folder / "digit.png"
    Image.fromarray(test_images[0]).resize((112, 112)).save(picture)
    runs = {
        "mlp": ["--epochs", "1"],
        "cnn": ["--epochs", "1", "--model", "cnn", "--loss", "xent", "--optimizer", "adamw", "--batch-size", "128"],
        "cnn mixed-bf16": ["--epochs", "1", "--model", "cnn", "--loss", "xent", "--optimizer", "adamw", "--batch-size", "128", "--precision", "mixed-bf16"],
    }
    for name, extra in runs.items():
        run_dir = folder / f"run-{name.replace(' ', '-')}"
        print(f"  training a {name} run on mnist-10k for the evaluate/predict probes", flush=True)
        _timed(_train(mnist, root, run_dir, extra))
        evaluate = [mnist, "evaluate", str(run_dir), "--data-dir", str(root), "--json"]
        scoring, wall = [], []
        for _ in range(args.repeat_slow):
            seconds, done = _timed(evaluate)
            wall.append(seconds)
            scoring.append(json.loads(done.stdout)["seconds"])
        predict = [mnist, "predict", "--checkpoint", str(run_dir), str(picture), "--json"]
        predict_wall = []
        for _ in range(args.repeat_slow):
            seconds, done = _timed(predict)
            predict_wall.append(seconds)
        predicted = json.loads(done.stdout)
        report[name] = {
            "evaluate_scoring_seconds": common.median(scoring),
            "evaluate_scoring_runs": scoring,
            "evaluate_wall_seconds": common.median(wall),
            "predict_wall_seconds": common.median(predict_wall),
            "predict_runs": predict_wall,
            "predicted": predicted[0].get("prediction") if isinstance(predicted, list) and predicted else predicted,
            "true_label": int(test_labels[0]),
        }
        entry = report[name]
        print(
            f"  {name}: evaluate 10,000 images {entry['evaluate_scoring_seconds']:.3f} s after load "
            f"({entry['evaluate_wall_seconds']:.2f} s whole command); predict one image {entry['predict_wall_seconds']:.2f} s end to end",
            flush=True,
        )
    return report


def _fast_predict(args: argparse.Namespace, folder: Path, root: Path) -> dict[str, Any]:
    """Whole-command wall time of `mnist predict` on LiteRT (cache warm) and on TensorFlow, same runs, interleaved."""
    mnist = _mnist()
    from PIL import Image

    from mnist_cli.data import load_split

    images, _ = load_split(args.mnist_dir, "test")
    pictures = folder / "pictures-100"
    pictures.mkdir()
    for index in range(100):
        Image.fromarray(images[index]).resize((112, 112)).save(pictures / f"{index:03d}.png")
    one = pictures / "000.png"
    report: dict[str, Any] = {}
    runs = {
        "mlp": ["--epochs", "1"],
        "cnn": ["--epochs", "1", "--model", "cnn", "--loss", "xent", "--optimizer", "adamw", "--batch-size", "128"],
    }
    for name, extra in runs.items():
        run_dir = folder / f"fast-{name}"
        print(f"  training a {name} run on mnist-10k for the predict probes", flush=True)
        _timed(_train(mnist, root, run_dir, extra))
        first, _ = _timed([mnist, "predict", "--checkpoint", str(run_dir), str(one)])  # converts once, caches
        probes = {
            "litert, 1 picture": [mnist, "predict", "--checkpoint", str(run_dir), str(one)],
            "litert, 100 pictures": [mnist, "predict", "--checkpoint", str(run_dir), str(pictures)],
            "tensorflow, 1 picture": [mnist, "predict", "--checkpoint", str(run_dir), str(one), "--engine", "tensorflow"],
            "tensorflow, 100 pictures": [mnist, "predict", "--checkpoint", str(run_dir), str(pictures), "--engine", "tensorflow"],
            "python -c 'import tensorflow'": [sys.executable, "-c", "import tensorflow"],
            "python -c pass": [sys.executable, "-c", "pass"],
        }
        times: dict[str, list[float]] = {probe: [] for probe in probes}
        for _ in range(args.repeat_fast):  # interleaved, so a burst of load hits each alike
            for probe, argv in probes.items():
                times[probe].append(_timed(argv, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})[0])
        entry: dict[str, Any] = {"first_predict_with_conversion_seconds": first}
        entry.update({probe: {"median_seconds": common.median(values), "runs": values} for probe, values in times.items()})
        same = [
            json.loads(_timed(argv + ["--json"])[1].stdout)
            for argv in (probes["litert, 100 pictures"], probes["tensorflow, 100 pictures"])
        ]
        entry["same_classes_100"] = [e["prediction"] for e in same[0]] == [e["prediction"] for e in same[1]]
        entry["max_probability_difference_100"] = max(
            abs(a - b) for x, y in zip(*same) for a, b in zip(x["probabilities"], y["probabilities"])
        )
        report[name] = entry
        print(f"  {name}: first predict (converts and caches) {first:.2f} s", flush=True)
        for probe in probes:
            print(f"    {probe:32s} {entry[probe]['median_seconds']:.3f} s (median of {args.repeat_fast})", flush=True)
        print(f"    same classes on 100 pictures: {entry['same_classes_100']}, max |probability difference| "
              f"{entry['max_probability_difference_100']:.2g}", flush=True)
    return report


def _memory(args: argparse.Namespace, folder: Path, root: Path) -> dict[str, Any]:
    mnist = _mnist()
    recipes = {
        "mlp (walk-through, 2 epochs)": ["--dataset", "fashion-mnist", "--epochs", "2"],
        "cnn (fashion-cnn-60s recipe, 2 epochs)": [
            "--dataset", "fashion-mnist", "--epochs", "2", "--model", "cnn", "--loss", "xent", "--optimizer", "adamw",
            "--lr", "0.003", "--schedule", "onecycle", "--batch-size", "128", "--precision", "mixed-bf16",
        ],
    }
    report = {}
    for index, (name, extra) in enumerate(recipes.items()):
        seconds, peak = _peak_rss(_train(mnist, root, folder / f"memory-{index}", extra))
        report[name] = {"peak_rss_mb": peak, "seconds": seconds}
        print(f"  mnist train {name}: peak RSS {peak:,.0f} MB ({seconds:.1f} s)", flush=True)
    return report


def main() -> None:
    """Parse options and run the chosen parts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="help,evaluate,fast,memory", help="comma-separated: help, evaluate (and predict), fast, memory")
    parser.add_argument("--fashion-dir", type=Path, default=common.default_fashion_dir(), help="$MNIST_BENCH_FASHION [%(default)s]")
    parser.add_argument("--mnist-dir", type=Path, default=common.default_mnist10k_dir(), help="$MNIST_BENCH_MNIST10K [%(default)s]")
    parser.add_argument("--repeat", type=int, default=10, help="runs of each start-up probe [%(default)s]")
    parser.add_argument("--repeat-slow", type=int, default=3, help="runs of evaluate and predict [%(default)s]")
    parser.add_argument("--repeat-fast", type=int, default=7, help="runs of each fast-predict probe [%(default)s]")
    parser.add_argument("--output", default="bench_cli.json", help="file name under benchmarks/out/")
    args = parser.parse_args()
    parts = {part.strip() for part in args.parts.split(",")}
    needed = [(args.mnist_dir, common.MNIST10K_HINT)] + ([(args.fashion_dir, common.FASHION_HINT)] if "memory" in parts else [])
    for directory, hint in needed:
        problem = common.check_dataset_dir(directory, hint)
        if problem:
            sys.exit(f"error: {problem}")
    report: dict[str, Any] = {"machine": common.machine(), "load_average_before": common.load_average()}
    print(f"machine: {report['machine']}\nload average before: {report['load_average_before']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="mnist-bench-") as name:
        folder = Path(name)
        root = _data_root(folder, args)
        if "help" in parts:
            print("start-up:", flush=True)
            report["help"] = _help(args)
        if "evaluate" in parts:
            print("evaluate and predict:", flush=True)
            report["evaluate"] = _evaluate_and_predict(args, folder, root)
        if "fast" in parts:
            print("predict, LiteRT against TensorFlow:", flush=True)
            report["fast"] = _fast_predict(args, folder, root)
        if "memory" in parts:
            print("peak memory of mnist train on 60,000 images:", flush=True)
            report["memory"] = _memory(args, folder, root)
    report["load_average_after"] = common.load_average()
    print(f"load average after: {report['load_average_after']}")
    print(f"written {common.write_json(args.output, report)}")


if __name__ == "__main__":
    main()
