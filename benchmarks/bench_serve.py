"""`mnist serve` under load: the real server over loopback, driven by wrk, two variants side by side.

`--compare batching` (the default): two servers of the same model run at once, dynamic batching
on and off. `--compare preprocessing`: batching on, `/predict` reading pictures in worker
processes (the default) or in threads of the server (`benchmarks/_serve.py` sets what the
command line does not offer). Each server gets 100 requests, and
its resident memory is read; then wrk (`apt-get install wrk`; a Lua script posts the bodies,
rotating over 8 real MNIST test digits) runs each endpoint at 1, 8 and 32 concurrent
connections against one server then the other, for `--rounds` rounds (the median is
reported); last, each server gets 10,000 more requests at 32 clients (failures counted), and
its memory is read again:

- `/predict` with PNG pictures: 280x280 dark-on-white drawings, as the page sends them
  (upscaled MNIST test digits), so each request pays the full preprocessing;
- `/v1/models/mnist:predict` (TF Serving's REST API) with one 28x28 instance per request.

Figures: requests/s, p50 and p99 latency (wrk's), failed requests (non-2xx answers and
socket errors), and for each variant `/predict`'s requests/s at 32 clients over the TF
Serving API's (issue 20's goal: at least 0.3x). The machine is shared: the load average is
printed with each result.

    python benchmarks/bench_serve.py runs/mnist-cnn-...      # about 6 minutes on 2 busy cores
    python benchmarks/bench_serve.py RUN --compare preprocessing --clients 32 --soak 2000
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, check_dataset_dir, default_mnist10k_dir, load_average, machine, write_json  # noqa: E402

CLIENTS = (1, 8, 32)
# Each comparison: two variants, each the extra arguments of `mnist serve` (a list) or the
# ServeConfig fields given to benchmarks/_serve.py (a dict).
VARIANTS: dict[str, dict[str, list[str] | dict[str, Any]]] = {
    "batching": {"batching": ["--batching"], "no-batching": ["--no-batching"]},
    "preprocessing": {"processes": {"preprocessing": "processes"}, "threads": {"preprocessing": "threads"}},
}
TF = "/v1/models/mnist:predict"
DIGITS = 8
URL_LINE = re.compile(r"serving at (http://\S+/) ")

LUA = r"""
-- Posts the bodies in $BENCH_BODIES (files), in turn, with $BENCH_TYPE as Content-Type.
local bodies = {}
for path in string.gmatch(os.getenv("BENCH_BODIES"), "[^,]+") do
  local file = assert(io.open(path, "rb"))
  bodies[#bodies + 1] = file:read("*a")
  file:close()
end
local counter = 0
local headers = { ["Content-Type"] = os.getenv("BENCH_TYPE") }
request = function()
  counter = counter + 1
  return wrk.format("POST", nil, headers, bodies[(counter % #bodies) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %.6f, "p50_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, "non_2xx": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    e.status, e.connect, e.read, e.write, e.timeout))
end
"""


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def bodies(directory: Path, mnist_dir: Path) -> dict[str, tuple[list[Path], str]]:
    """The request bodies: PNG drawings and TF Serving JSON, one digit each."""
    sys.path.insert(0, str(REPO))
    from mnist_cli.data import load_split

    images, _ = load_split(mnist_dir, "test")
    pngs, jsons = [], []
    for index in range(DIGITS):
        drawing = Image.fromarray(255 - images[index]).resize((280, 280), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        drawing.save(buffer, format="PNG")
        pngs.append(directory / f"digit-{index}.png")
        pngs[-1].write_bytes(buffer.getvalue())
        jsons.append(directory / f"digit-{index}.json")
        jsons[-1].write_text(json.dumps({"instances": [images[index].tolist()]}))
    return {"/predict": (pngs, "image/png"), "/v1/models/mnist:predict": (jsons, "application/json")}


class Server:
    """`mnist serve TARGET --port 0 --quiet EXTRA` in a process (or benchmarks/_serve.py for ServeConfig fields)."""

    def __init__(self, target: str, extra: list[str] | dict[str, Any]) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
        if isinstance(extra, dict):
            command = [sys.executable, str(REPO / "benchmarks" / "_serve.py"), target, json.dumps(extra)]
        else:
            command = [sys.executable, "-m", "mnist_cli", "serve", target, "--port", "0", "--quiet", *extra]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        assert self.process.stdout is not None
        for line in self.process.stdout:
            match = URL_LINE.search(line)
            if match:
                self.url = match.group(1)
                return
        raise RuntimeError("the server did not start")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def warm_up(url: str, endpoint: str, body: Path, content_type: str, count: int) -> int:
    """`count` sequential requests; the number that failed."""
    import httpx

    failed = 0
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(count):
            failed += client.post(endpoint, content=body.read_bytes(), headers={"Content-Type": content_type}).status_code != 200
    return failed


def wrk(url: str, endpoint: str, files: list[Path], content_type: str, *, clients: int, seconds: float, script: Path) -> dict[str, Any]:
    """One wrk run."""
    env = {**os.environ, "BENCH_BODIES": ",".join(map(str, files)), "BENCH_TYPE": content_type}
    # One wrk thread: its event loop keeps 32 connections busy, and a second thread would
    # take CPU from the server on a 2-core machine.
    command = ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(script), url.rstrip("/") + endpoint]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    result["failed"] = result["non_2xx"] + result["connect"] + result["read"] + result["write"] + result["timeout"]
    result["requests_per_second"] = result["requests"] / result["seconds"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", help="a run, checkpoint or model.keras to serve")
    parser.add_argument("--compare", choices=list(VARIANTS), default="batching", help="which two variants run side by side")
    parser.add_argument("--clients", type=int, nargs="+", default=list(CLIENTS), help="concurrent connections of each wrk run")
    parser.add_argument("--seconds", type=int, default=5, help="duration of each wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the median of each configuration is reported")
    parser.add_argument("--soak", type=int, default=10_000, help="requests at 32 clients after which memory is read again")
    parser.add_argument("--mnist-dir", type=Path, default=default_mnist10k_dir())
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk")
    problem = check_dataset_dir(args.mnist_dir, "point --mnist-dir at the shared mnist-10k folder")
    if problem:
        sys.exit(problem)
    scratch = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    script = scratch / "post.lua"
    script.write_text(LUA)
    payloads = bodies(scratch, args.mnist_dir)
    variants = VARIANTS[args.compare]
    results: dict[str, Any] = {
        "machine": machine(), "target": args.target, "seconds": args.seconds, "compare": args.compare,
        "variants": variants, "clients": args.clients, "runs": [], "memory": {},
    }  # fmt: skip
    print(f"machine: {results['machine'].get('Model name')}, {results['machine'].get('cpus')} CPUs; load {load_average()}", flush=True)
    # Both servers run at once and take turns, so that the other work on a shared machine
    # weighs on both alike.
    servers: dict[str, Server] = {}
    try:
        for name, extra in variants.items():
            servers[name] = Server(args.target, extra)
        for name, server in servers.items():
            failed = sum(warm_up(server.url, endpoint, files[0], kind, 50) for endpoint, (files, kind) in payloads.items())
            results["memory"][name] = {"after_100_kib": rss_kib(server.process.pid), "failed_first_100": failed, "requests": 100}
        names = list(servers)
        for round_number in range(args.rounds):
            for endpoint, (files, kind) in payloads.items():
                for clients in args.clients:
                    for name in names if round_number % 2 == 0 else names[::-1]:
                        result = wrk(servers[name].url, endpoint, files, kind, clients=clients, seconds=args.seconds, script=script)
                        result.update(variant=name, endpoint=endpoint, clients=clients, round=round_number, load=load_average()[0])
                        results["runs"].append(result)
                        results["memory"][name]["requests"] += result["requests"]
                        _print(result)
        for name, server in servers.items():
            memory = results["memory"][name]
            files, kind = payloads[TF]
            soak = _soak(server.url, TF, files, kind, count=args.soak, results=results, variant=name, script=script)
            memory["requests"] += soak["requests"]
            memory.update(soak=soak, after_all_kib=rss_kib(server.process.pid))
            memory["growth"] = memory["after_all_kib"] / memory["after_100_kib"] - 1
            print(
                f"{name:12} {args.soak:,} requests at 32 clients: {soak['failed']} failed, p99 {soak['p99_ms']:.1f} ms; "
                f"RSS after 100 requests {memory['after_100_kib'] / 1024:,.0f} MiB, after {memory['requests']:,} "
                f"{memory['after_all_kib'] / 1024:,.0f} MiB ({memory['growth']:+.1%})",
                flush=True,
            )
    finally:
        for name, server in servers.items():
            print(f"{name:12} server exit {server.stop()}", flush=True)
    report(payloads, results, names)
    shutil.rmtree(scratch, ignore_errors=True)


def _soak(url: str, endpoint: str, files: list[Path], kind: str, *, count: int, results: dict[str, Any], variant: str, script: Path) -> dict[str, Any]:
    """At least `count` requests at 32 clients (wrk runs for a duration, sized from the rate measured before)."""
    rates = [r["requests_per_second"] for r in results["runs"] if r["endpoint"] == endpoint and r["clients"] == 32 and r["variant"] == variant]
    rate = statistics.median(rates) if rates else 100.0
    total: dict[str, Any] = {"requests": 0, "failed": 0, "p99_ms": 0.0, "runs": []}
    while total["requests"] < count:
        seconds = max(2, math.ceil((count - total["requests"]) / rate * 1.15))
        run = wrk(url, endpoint, files, kind, clients=32, seconds=seconds, script=script)
        total["runs"].append(run)
        total["requests"] += run["requests"]
        total["failed"] += run["failed"]
        total["p99_ms"] = max(total["p99_ms"], run["p99_ms"])
        rate = max(run["requests_per_second"], 1.0)
    return total


def _print(result: dict[str, Any]) -> None:
    print(
        f"{result['variant']:12} {result['endpoint']:26} {result['clients']:2} clients: {result['requests_per_second']:8,.0f} req/s  "
        f"p50 {result['p50_ms']:7.1f} ms  p99 {result['p99_ms']:7.1f} ms  failed {result['failed']}/{result['requests']:,}  "
        f"(load {result['load']:.1f})",
        flush=True,
    )


def _median(results: dict[str, Any], endpoint: str, clients: int, variant: str, key: str) -> float:
    runs = [r for r in results["runs"] if r["endpoint"] == endpoint and r["clients"] == clients and r["variant"] == variant]
    return statistics.median(r[key] for r in runs)


def report(payloads: dict[str, Any], results: dict[str, Any], names: list[str]) -> None:
    """The median of each configuration, one variant against the other, /predict against the TF Serving API, and the JSON file."""
    first, second = names
    print("\nmedians over the rounds:")
    print(f"| endpoint | clients | {first}: req/s, p50, p99 | {second}: req/s, p50, p99 | {first}/{second} | failed |")
    print("|---|---|---|---|---|---|")
    for endpoint in payloads:
        for clients in results["clients"]:
            cells, rates = [], []
            for name in names:
                rate = _median(results, endpoint, clients, name, "requests_per_second")
                p50, p99 = _median(results, endpoint, clients, name, "p50_ms"), _median(results, endpoint, clients, name, "p99_ms")
                rates.append(rate)
                cells.append(f"{rate:,.0f}, {p50:.1f} ms, {p99:.1f} ms")
            failed = sum(r["failed"] for r in results["runs"] if r["endpoint"] == endpoint and r["clients"] == clients)
            print(f"| `{endpoint}` | {clients} | {cells[0]} | {cells[1]} | {rates[0] / rates[1]:.2f}x | {failed} |")
    if 32 in results["clients"]:
        for name in names:
            ratio = _median(results, "/predict", 32, name, "requests_per_second") / _median(results, TF, 32, name, "requests_per_second")
            results.setdefault("predict_over_tf_at_32", {})[name] = ratio
            print(f"{name}: /predict at 32 clients serves {ratio:.2f}x the TF Serving API's requests/s")
    print(f"saved {write_json('serve.json', results)}")


if __name__ == "__main__":
    main()
