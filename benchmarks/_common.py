"""What the benchmark scripts share: where the data is, the machine, medians, JSON lines between processes."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "benchmarks" / "out"  # git-ignored

FASHION_ENV = "MNIST_BENCH_FASHION"
MNIST10K_ENV = "MNIST_BENCH_MNIST10K"
FASHION_DEFAULT = Path("/usr/share/datasets/fashion-mnist")
FASHION_HINT = "install it with `apt-get install dataset-fashion-mnist`, or point --fashion-dir / $MNIST_BENCH_FASHION at a folder with the four IDX files"
MNIST10K_HINT = "point --mnist-dir / $MNIST_BENCH_MNIST10K at the shared mnist-10k folder (see ../shared/data/README.md)"


def default_fashion_dir() -> Path:
    """Debian's complete Fashion-MNIST, unless $MNIST_BENCH_FASHION says otherwise."""
    return Path(os.environ.get(FASHION_ENV) or FASHION_DEFAULT)


def default_mnist10k_dir() -> Path:
    """The shared 10,000-image MNIST: $MNIST_BENCH_MNIST10K, $MNIST_TEST_DATA/mnist-10k, or data/mnist-10k in the checkout."""
    if os.environ.get(MNIST10K_ENV):
        return Path(os.environ[MNIST10K_ENV])
    if os.environ.get("MNIST_TEST_DATA"):
        return Path(os.environ["MNIST_TEST_DATA"]) / "mnist-10k"
    return REPO / "data" / "mnist-10k"  # git-ignored; the project names no path outside itself


def check_dataset_dir(directory: Path, hint: str) -> str | None:
    """None when the folder holds the four IDX files, else a one-line reason with a hint."""
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    missing = [name for name in names if not (directory / name).is_file()]
    if missing:
        return f"{directory} lacks {', '.join(missing)}: {hint}"
    return None


def median(values: list[float]) -> float:
    """The median, NaN for no values."""
    return statistics.median(values) if values else float("nan")


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (other work on the 2 cores skews figures)."""
    return os.getloadavg()


def machine() -> dict[str, Any]:
    """CPU model, core count, flags that matter, TensorFlow and Keras versions."""
    info: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Model name", "CPU(s)", "L2 cache", "L3 cache", "Hypervisor vendor"):
                info[key.strip()] = value.strip()
            if key.strip() == "Flags":
                flags = value.split()
                info["flags"] = [flag for flag in flags if flag.startswith(("avx512_bf16", "amx", "avx512f", "avx512_vnni", "avx2", "fma"))]
    except OSError:
        pass
    try:
        versions = subprocess.run(
            [sys.executable, "-c", "import os; os.environ['TF_CPP_MIN_LOG_LEVEL']='3'; import tensorflow as tf, keras; print(tf.__version__, keras.__version__)"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        info["tensorflow"], info["keras"] = versions[-2], versions[-1]
    except (OSError, IndexError):
        pass
    return info


class Channel:
    """JSON lines to and from a worker process: commands on stdin, replies on a private copy of stdout."""

    def __init__(self) -> None:
        # Keras' progress bar writes to stdout, so the replies get their own descriptor
        # and stdout goes to stderr.
        self.replies = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr

    def send(self, **payload: Any) -> None:
        """One reply."""
        self.replies.write(json.dumps(payload) + "\n")
        self.replies.flush()

    def receive(self) -> str:
        """The next command (`go` or `end`); `end` when the parent went away."""
        line = sys.stdin.readline()
        return line.strip() or "end"


class Worker:
    """The parent's side of a worker process."""

    def __init__(self, name: str, args: list[str], *, quiet: bool = True) -> None:
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if quiet else None,
            text=True,
            bufsize=1,
        )

    def command(self, text: str) -> None:
        """Send `go` or `end`."""
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def reply(self) -> dict[str, Any]:
        """Wait for the next reply."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            raise RuntimeError(f"worker {self.name} exited (code {code}) without replying; run with --verbose to see its errors")
        return json.loads(line)

    def close(self) -> None:
        """Stop the worker, whatever state it is in."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def write_json(name: str, payload: Any) -> Path:
    """Save a result under benchmarks/out/."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / name
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    return path
