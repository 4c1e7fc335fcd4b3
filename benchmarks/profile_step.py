"""Where the trainer's time goes: the compiled chunk alone, its variants, and the per-epoch extras.

Times steps.make_train_chunk (what fit runs) on resident data, with no checkpoint,
summary or event around it, then variants the trainer does not use (XLA off, one
chunk per epoch, threads, precision), then what fit adds per epoch: the checkpoint,
the epoch summaries (weight histograms) and the per-chunk scalars. Variants are
interleaved round by round inside one process; thread counts need a fresh process
(TF_NUM_INTRAOP_THREADS is read at start-up), so run it again with that variable set.

    .venv/bin/python benchmarks/profile_step.py
    .venv/bin/python benchmarks/profile_step.py --model cnn --batch-size 128 --loss xent --optimizer adam
    TF_NUM_INTRAOP_THREADS=1 .venv/bin/python benchmarks/profile_step.py
    .venv/bin/python benchmarks/profile_step.py --trace benchmarks/out/trace   # a TensorBoard profile
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common


def main() -> None:
    """Parse options, time the variants, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=common.default_fashion_dir())
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--loss", default="mse")
    parser.add_argument("--optimizer", default="sgd")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1000, help="steps per timed call [%(default)s]")
    parser.add_argument("--variants", default="", help="comma-separated subset of the variant names")
    parser.add_argument("--fit-epochs", type=int, default=4, help="epochs of trainer.fit to break down (0: skip) [%(default)s]")
    parser.add_argument("--fit-val-split", type=float, default=0.0, help="validation share for the fit breakdown [%(default)s]")
    parser.add_argument("--slow-xla", action="store_true", help="also time the convnet under XLA (minutes)")
    parser.add_argument("--trace", type=Path, help="write a tf.profiler trace of the trainer's chunk here")
    args = parser.parse_args()
    problem = common.check_dataset_dir(args.data, common.FASHION_HINT)
    if problem:
        sys.exit(f"error: {problem}")

    from mnist_cli.core.tf_setup import import_tensorflow

    tf = import_tensorflow()
    import keras
    import numpy as np

    from mnist_cli.training import checkpoints, summaries
    from mnist_cli.model import network, steps
    from mnist_cli.core.config import TrainConfig
    from mnist_cli.data import load_split

    if args.fit_epochs:
        # First, in a fresh process: models and functions built before slow fit's eager
        # summary ops down (measured: the epoch summaries took 25 ms instead of 5 ms).
        _fit_breakdown(args, tf)
    images_np, labels_np = load_split(args.data, "train")
    images, labels = tf.constant(images_np), tf.constant(labels_np)
    base = TrainConfig(dataset=args.dataset, model=args.model, loss=args.loss, optimizer=args.optimizer, batch_size=args.batch_size)
    rng = np.random.default_rng(0)

    def indices(count: int) -> Any:
        return rng.integers(0, len(labels_np), size=(count, args.batch_size)).astype(np.int32)

    def build(config: TrainConfig, *, xla: bool | None = None) -> Any:
        keras.utils.set_random_seed(0)
        model = network.build_model(config)
        optimizer = network.build_optimizer(config, steps_per_epoch=1875)
        optimizer.build(model.trainable_variables)
        chunk = steps.make_train_chunk(model, optimizer, config)
        if xla is not None:  # the same Python function, compiled the other way
            chunk = tf.function(chunk.python_function, input_signature=chunk.input_signature, jit_compile=xla)
        return chunk, model, optimizer

    def timed(chunk: Any, count: int, per_call: int) -> float:
        batches = indices(count)
        began = time.perf_counter()
        for start in range(0, count, per_call):
            loss, _ = chunk(images, labels, batches[start : start + per_call])
            float(loss.numpy())
        return count * args.batch_size / (time.perf_counter() - began)

    mlp = args.model == "mlp"
    variants: dict[str, tuple[Any, int]] = {}
    trainer_xla = mlp  # what steps.make_train_chunk decides for a plain run
    variants[f"trainer chunk (200 steps/call, XLA {'on' if trainer_xla else 'off'})"] = (build(base)[0], 200)
    # XLA on CPU runs the convnet at ~170 samples/s (40x slower), so that variant takes
    # minutes: only with --slow-xla.
    other_xla = mlp or args.slow_xla
    if other_xla:
        variants[f"XLA {'off' if trainer_xla else 'on'} (200 steps/call)"] = (build(base, xla=not trainer_xla)[0], 200)
    variants["1000 steps/call"] = (build(base)[0], 1000)
    variants["mixed-bf16, trainer's XLA choice"] = (build(base.replace(precision="mixed-bf16"))[0], 200)
    if other_xla:
        variants[f"mixed-bf16, XLA {'off' if trainer_xla else 'on'}"] = (build(base.replace(precision="mixed-bf16"), xla=not trainer_xla)[0], 200)
    if args.variants:
        keep = [name.strip() for name in args.variants.split(",")]
        variants = {name: value for name, value in variants.items() if any(name.startswith(k) for k in keep)}
    for name, (chunk, per_call) in variants.items():  # warm-up: trace and compile every length used
        timed(chunk, per_call, per_call)
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(args.rounds):
        for name, (chunk, per_call) in variants.items():
            rates[name].append(timed(chunk, args.steps, per_call))
    print(f"TF_NUM_INTRAOP_THREADS={__import__('os').environ.get('TF_NUM_INTRAOP_THREADS', '(default)')}, "
          f"{args.model} batch {args.batch_size}, load average {common.load_average()[0]:.2f}")
    reference = common.median(next(iter(rates.values())))
    for name, values in rates.items():
        rate = common.median(values)
        print(f"  {name:45s} {rate:>9,.0f} samples/s  ({rate / reference:.2f}x)  [{', '.join(f'{v:,.0f}' for v in values)}]")

    # Forward passes only (what evaluate runs), to set the training step beside them.
    eval_model = network.build_model(base)
    eval_step = steps.make_eval_step(eval_model, base)
    eval_step(images[:1000], labels[:1000])
    began = time.perf_counter()
    for start in range(0, 10000, 1000):
        eval_step(images[start : start + 1000], labels[start : start + 1000])[0].numpy()
    print(f"  {'forward only (eval step, batches of 1000)':45s} {10000 / (time.perf_counter() - began):>9,.0f} samples/s")

    # What fit does per epoch beside the chunks, on the trainer's own objects.
    chunk, model, optimizer = build(base)
    with tempfile.TemporaryDirectory() as run_dir:
        state = checkpoints.LoopState()
        saver = checkpoints.RunCheckpoints(Path(run_dir), model=model, optimizer=optimizer, state=state, keep=3)
        writer = summaries.RunSummaries(Path(run_dir), base, tuple(str(n) for n in range(10)))
        costs: dict[str, list[float]] = {"checkpoint save": [], "epoch summaries (histograms)": [], "per-chunk scalars x10": []}
        for epoch in range(1, 6):
            began = time.perf_counter()
            saver.save(step=epoch)
            costs["checkpoint save"].append(time.perf_counter() - began)
            began = time.perf_counter()
            writer.epoch(epoch=epoch, train={"loss": 0.1, "accuracy": 0.9, "samples_per_second": 1.0}, val=None, model=model)
            costs["epoch summaries (histograms)"].append(time.perf_counter() - began)
            began = time.perf_counter()
            for step in range(10):
                writer.steps(step=epoch * 10 + step, loss=0.1, accuracy=0.9, learning_rate=0.01, samples_per_second=1.0)
            costs["per-chunk scalars x10"].append(time.perf_counter() - began)
        writer.close()
    print("per-epoch extras in fit (median of 5, first included):")
    for name, values in costs.items():
        print(f"  {name:45s} {1000 * common.median(values):7.1f} ms")
    if args.trace:
        chunk, _, _ = build(base)
        timed(chunk, 200, 200)
        tf.profiler.experimental.start(str(args.trace))
        timed(chunk, 400, 200)
        tf.profiler.experimental.stop()
        print(f"trace written to {args.trace} (tensorboard --logdir {args.trace})")


def _fit_breakdown(args: argparse.Namespace, tf: Any) -> None:
    """Run trainer.fit with timers wrapped around its parts; print where an epoch's wall time goes."""
    import collections
    import functools

    from mnist_cli.runs import runs
    from mnist_cli.training import checkpoints, summaries, trainer
    from mnist_cli.model import network, scoring, steps
    from mnist_cli.core.config import TrainConfig
    from mnist_cli.data import load_splits

    spent: dict[str, float] = collections.defaultdict(float)

    def timer(name: str, function: Any) -> Any:
        @functools.wraps(function)
        def wrapped(*a: Any, **k: Any) -> Any:
            began = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                spent[name] += time.perf_counter() - began

        return wrapped

    make_chunk = steps.make_train_chunk

    def timed_chunk(*a: Any, **k: Any) -> Any:
        chunk = make_chunk(*a, **k)

        def call(*x: Any) -> Any:
            began = time.perf_counter()
            loss, correct = chunk(*x)
            loss.numpy()  # the trainer reads it at once too
            spent["compiled chunks"] += time.perf_counter() - began
            return loss, correct

        return call

    patches = [
        (steps, "make_train_chunk", timed_chunk),
        (checkpoints.RunCheckpoints, "save", timer("checkpoint save", checkpoints.RunCheckpoints.save)),
        (summaries.RunSummaries, "epoch", timer("epoch summaries (histograms, grids)", summaries.RunSummaries.epoch)),
        (summaries.RunSummaries, "steps", timer("per-chunk scalar summaries", summaries.RunSummaries.steps)),
        (scoring, "score", timer("validation scoring", scoring.score)),
        (runs, "write_json", timer("history.json (atomic, fsync)", runs.write_json)),
        (network, "current_learning_rate", timer("learning-rate reads", network.current_learning_rate)),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, replacement in patches:
        setattr(owner, name, replacement)
    splits = load_splits(args.data, dataset=args.dataset, val_split=args.fit_val_split, seed=0)
    config = TrainConfig(dataset=args.dataset, model=args.model, loss=args.loss, optimizer=args.optimizer, batch_size=args.batch_size,
                         epochs=args.fit_epochs, val_split=args.fit_val_split)
    marks: list[tuple[float, dict[str, float]]] = []

    def on_event(event: Any) -> None:
        if isinstance(event, (trainer.TrainStarted, trainer.EpochDone)):
            marks.append((time.perf_counter(), dict(spent)))

    try:
        with tempfile.TemporaryDirectory() as run_dir:
            trainer.fit(config, splits, run_dir=Path(run_dir) / "run", on_event=on_event)
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)
    # Epochs after the first: wall time between EpochDone events, split by part.
    (start, before), (end, after) = marks[1], marks[-1]
    epochs = len(marks) - 2
    wall = (end - start) / epochs
    print(f"trainer.fit, {len(splits.train_labels):,} training images, {args.fit_val_split} val split: one epoch "
          f"(mean of epochs 2-{epochs + 1}) {1000 * wall:.1f} ms wall = {len(splits.train_labels) / wall:,.0f} samples/s")
    accounted = 0.0
    for name in sorted(after, key=lambda n: -(after[n] - before.get(n, 0.0))):
        part = (after[name] - before.get(name, 0.0)) / epochs
        accounted += part
        print(f"  {name:45s} {1000 * part:7.1f} ms  ({part / wall:5.1%})")
    print(f"  {'the rest (Python loop, events, variables)':45s} {1000 * (wall - accounted):7.1f} ms  ({(wall - accounted) / wall:5.1%})")


if __name__ == "__main__":
    main()
