"""What converting a mixed-precision network to float32 costs `mnist predict` and `mnist export`.

A mixed-bf16 network is rebuilt in float32 (`loading.float32_copy`) before the TFLite
converter sees it. Interleaved rounds, in one process, of:

  copy            float32_copy alone, on the model.keras of a mixed-bf16 network
  tflite float32  export_model(--format tflite) of the float32 network (no copy needed)
  tflite mixed    export_model(--format tflite) of the mixed-bf16 network (copy included)

The first round (tracing) is dropped; the figures are medians of the rest.

    .venv/bin/python benchmarks/bench_float32_copy.py --rounds 5 --model cnn
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common as common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", choices=("mlp", "cnn"), default="cnn")
    parser.add_argument("--output", default="bench_float32_copy.json", help="file name under benchmarks/out/")
    args = parser.parse_args()

    from mnist_cli.core.config import TrainConfig
    from mnist_cli.inference import export, loading
    from mnist_cli.model.network import build_model

    scratch = Path(tempfile.mkdtemp(prefix="bench-float32-"))
    models = {}
    for precision in ("float32", "mixed-bf16"):
        path = scratch / f"{precision}.keras"
        build_model(TrainConfig(model=args.model, precision=precision)).save(path)
        models[precision] = loading.load(path).model
    timings: dict[str, list[float]] = {"copy": [], "tflite float32": [], "tflite mixed": []}
    for round_index in range(args.rounds):
        for name in timings:
            began = time.perf_counter()
            if name == "copy":
                loading.float32_copy(models["mixed-bf16"])
            else:
                model = models["float32" if name == "tflite float32" else "mixed-bf16"]
                export.export_model(model, export_format="tflite", output=scratch / "out.tflite", overwrite=True)
            timings[name].append(time.perf_counter() - began)
            print(f"round {round_index + 1}/{args.rounds} {name:15s} {timings[name][-1] * 1000:8.1f} ms  (load {common.load_average()[0]:.2f})", flush=True)
    medians = {name: statistics.median(values[1:]) for name, values in timings.items()}
    report = {
        "machine": common.machine(),
        "model": args.model,
        "median_seconds": medians,
        "mixed_over_float32_export": medians["tflite mixed"] / medians["tflite float32"],
    }
    print(
        f"{args.model}: float32_copy {medians['copy'] * 1000:.0f} ms; TFLite export {medians['tflite float32']:.2f} s (float32) "
        f"vs {medians['tflite mixed']:.2f} s (mixed-bf16, copy included): {report['mixed_over_float32_export']:.2f}x"
    )
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    (out / args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {out / args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
