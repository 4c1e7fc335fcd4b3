"""The playground's costs: the server time /explain adds to a live prediction, against the preprocessing, and memory over version swaps.

    python benchmarks/bench_playground.py RUN        # RUN: any run with a checkpoint (an MLP or a convnet)

1. Per live prediction of a drawn digit (a 280x280 PNG from the page): the preprocessing
   (`predict.read_picture`), the logits alone (what `/predict` runs), and what `/explain`
   runs instead (activations + saliency in one compiled call, and the JSON the page asks
   for, `?pixels=true`). Medians of interleaved rounds.
2. The resident memory after each of 20 swaps of a new version in (load, trace, prepare,
   add, retire the oldest but one), as `mnist serve --follow` does each epoch.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import platform
import statistics
import time
from pathlib import Path

from PIL import Image, ImageDraw


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


def _drawing() -> bytes:
    image = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(image).line([(75, 60), (205, 60), (115, 235)], fill=0, width=20, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--swaps", type=int, default=20)
    args = parser.parse_args()

    from mnist_cli.inference import loading, predict
    from mnist_cli.serving.app import make_state
    from mnist_cli.serving.config import ServeConfig
    from mnist_cli.serving.models import make_servable
    from mnist_cli.serving.routers import explain

    config = ServeConfig()
    loaded = loading.load(args.run)
    state = make_state(loaded, config)  # its picture readers stay unstarted: the preprocessing is timed in this process
    servable = state.models.current()
    explain.prepare(servable)
    prepared = explain._prepared_for(servable)
    picture = predict.Picture("request body", _drawing())
    timings: dict[str, list[float]] = {"preprocess": [], "logits": [], "explain": []}
    for _ in range(args.rounds):
        began = time.perf_counter()
        image = predict.read_picture(picture)[None]
        timings["preprocess"].append(time.perf_counter() - began)
        began = time.perf_counter()
        servable.run_model(image)
        timings["logits"].append(time.perf_counter() - began)
        began = time.perf_counter()
        explained = prepared.explainer.explain(image)[0]
        prediction = predict.make_predictions(loaded, ["request body"], image, explained.logits[None])[0]
        json.dumps([explain._item(prediction, explained, version=1, top_k=3, as_pixels=True)])
        timings["explain"].append(time.perf_counter() - began)
    ms = {name: statistics.median(values) * 1000 for name, values in timings.items()}
    print(f"CPU: {_cpu()}; model {loaded.config.model}; medians of {args.rounds} interleaved rounds")
    print(f"  preprocessing {ms['preprocess']:.2f} ms, logits {ms['logits']:.2f} ms, explain {ms['explain']:.2f} ms")
    print(f"  added by /explain over /predict's model call: {ms['explain'] - ms['logits']:.2f} ms ({(ms['explain'] - ms['logits']) / ms['preprocess']:.2f}x the preprocessing)")

    prefix = loaded.source.path
    rss = []
    for version in range(2, args.swaps + 2):
        servable = make_servable(loading.load(prefix), version, config)
        explain.prepare(servable)
        state.models.add(servable)
        for old in state.models.versions()[:-2]:
            state.models.remove(old)
        del servable
        gc.collect()
        rss.append(_rss_mib())
    print(f"  RSS over {args.swaps} swaps (MiB): " + " ".join(f"{value:.0f}" for value in rss))
    print(f"  growth from swap 5 to swap {args.swaps}: {rss[-1] - rss[4]:+.1f} MiB; versions held at the end: {state.models.versions()}")


if __name__ == "__main__":
    main()
