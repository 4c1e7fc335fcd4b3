"""Training throughput of `mnist train`'s trainer against its peers, interleaved in one run.

Contenders, all on the walk-through's model (MLP 784-256-256-256-10, squared error on
the logits, SGD 0.01), batch 32, the same training images (no validation split):

  ours        mnist_cli.training.trainer.fit, exactly what `mnist train` runs (checkpoints,
              TensorBoard summaries and all), in a temporary run directory
  keras-fit   Keras Model.fit with default settings (compile defaults: XLA "auto")
  keras-spe32 Keras Model.fit with steps_per_execution=32
  eager       the walk-through's own eager GradientTape loop over tf.data batch(32)

Each contender lives in its own worker process (TensorFlow's global state, such as
op determinism, which turns Keras' XLA off, stays its own); the parent lets them run
one epoch at a time in turn, so a burst of load from elsewhere hits them all alike.
An epoch's time is wall time from the parent's "go" to the epoch's end, everything
the contender does in that epoch included. The first epoch (tracing, compiling) is
dropped; the figure is the median of the rest.

A second part compares `--precision mixed-bf16` with float32 for our trainer: speed
per epoch (interleaved likewise) and test accuracy after the same number of epochs.

    .venv/bin/python benchmarks/bench_trainer.py                 # everything, a few minutes
    .venv/bin/python benchmarks/bench_trainer.py --quick         # a smoke run
    .venv/bin/python benchmarks/bench_trainer.py --part peers --datasets fashion-mnist --epochs 5
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common as common

CONTENDERS = ("ours", "keras-fit", "keras-spe32", "eager")
GOALS = {"keras-fit": 3.0, "keras-spe32": 1.3, "eager": 15.0}  # ours / peer, from issue 5

# Recipes for the precision comparison: TrainConfig fields on top of the defaults, and epochs.
PRECISION_RECIPES: dict[str, tuple[dict[str, Any], int]] = {
    "mlp": ({}, 10),  # the walk-through's recipe
    # The fashion-cnn-60s recipe of bench_recipes.py.
    "cnn": ({"model": "cnn", "loss": "xent", "optimizer": "adamw", "lr": 0.003, "schedule": "onecycle", "batch_size": 128}, 6),
}


# ---------------------------------------------------------------- workers


def _worker(args: argparse.Namespace) -> None:
    channel = common.Channel()
    from mnist_cli.core.tf_setup import import_tensorflow

    import_tensorflow()
    from mnist_cli.data import load_splits

    splits = load_splits(Path(args.data), dataset=args.dataset, val_split=0.0, seed=0)
    channel.send(ready=True, train=len(splits.train_labels))
    run = {"ours": _run_ours, "keras-fit": _run_keras, "keras-spe32": _run_keras, "eager": _run_eager}[args.worker]
    run(args, splits, channel)


def _run_ours(args: argparse.Namespace, splits: Any, channel: common.Channel) -> None:
    from mnist_cli.training import trainer
    from mnist_cli.core.config import TrainConfig

    fields = {"dataset": args.dataset, "epochs": args.epochs, "val_split": 0.0, **json.loads(args.config)}
    config = TrainConfig(**fields)

    class Stop(Exception):
        pass

    clock = {"start": 0.0}

    def on_event(event: Any) -> None:
        if isinstance(event, trainer.EpochDone):
            seconds = time.perf_counter() - clock["start"]
            channel.send(
                epoch=event.epoch,
                seconds=seconds,
                samples=len(splits.train_labels),
                loss=event.train_loss,
                accuracy=event.train_accuracy,
                # The trainer's own figure counts compiled-chunk time only.
                reported_samples_per_second=event.samples_per_second,
            )
            if channel.receive() != "go" and event.epoch < event.epochs:
                raise Stop
            clock["start"] = time.perf_counter()

    if channel.receive() != "go":
        return
    common.OUT_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=common.OUT_DIR, prefix="run-") as run_dir:
        clock["start"] = time.perf_counter()
        try:
            result = trainer.fit(config, splits, run_dir=Path(run_dir) / "run", on_event=on_event)
        except Stop:
            channel.send(final=True, test_accuracy=None)
            return
    channel.send(final=True, test_accuracy=result.test_accuracy, config=config.to_dict())


def _run_keras(args: argparse.Namespace, splits: Any, channel: common.Channel) -> None:
    import keras
    import tensorflow as tf

    from mnist_cli.model import network
    from mnist_cli.core.config import TrainConfig

    keras.utils.set_random_seed(0)
    model = network.build_model(TrainConfig(dataset=args.dataset))  # the very same network, uint8 in

    def squared_error(labels: Any, logits: Any) -> Any:
        # The walk-through's loss; Keras averages it over the batch as the trainer does.
        one_hot = tf.one_hot(tf.cast(tf.reshape(labels, [-1]), tf.int32), 10)
        return tf.reduce_sum(tf.square(logits - one_hot), axis=-1)

    spe = 32 if args.worker == "keras-spe32" else 1
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01),
        loss=squared_error,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        steps_per_execution=spe,
    )
    clock = {"start": 0.0}

    class Turns(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            seconds = time.perf_counter() - clock["start"]
            logs = logs or {}
            channel.send(
                epoch=epoch + 1,
                seconds=seconds,
                samples=len(splits.train_labels),
                loss=float(logs.get("loss", float("nan"))),
                accuracy=float(logs.get("accuracy", float("nan"))),
                jit_compile=bool(self.model.jit_compile),
            )
            if channel.receive() != "go":
                self.model.stop_training = True
            clock["start"] = time.perf_counter()

    if channel.receive() != "go":
        return
    clock["start"] = time.perf_counter()
    model.fit(splits.train_images, splits.train_labels, batch_size=32, epochs=args.epochs, callbacks=[Turns()])
    _, accuracy = model.evaluate(splits.test_images, splits.test_labels, batch_size=1000, verbose=0)
    channel.send(final=True, test_accuracy=float(accuracy))


def _run_eager(args: argparse.Namespace, splits: Any, channel: common.Channel) -> None:
    # The walk-through's code, with Keras 3 spellings; only its print goes to stderr.
    import keras
    import tensorflow as tf
    from keras import layers, optimizers

    keras.utils.set_random_seed(0)
    x = tf.convert_to_tensor(splits.train_images, dtype=tf.float32) / 255.0
    y = tf.convert_to_tensor(splits.train_labels, dtype=tf.int32)
    train_dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    model = keras.Sequential(
        [
            layers.Dense(256, activation="relu"),
            layers.Dense(256, activation="relu"),
            layers.Dense(256, activation="relu"),
            layers.Dense(10),
        ]
    )
    optimizer = optimizers.SGD(learning_rate=0.01)

    def train_epoch(epoch: int) -> tuple[float, int]:
        seen, loss_sum = 0, 0.0
        for step, (x, y) in enumerate(train_dataset):
            if args.eager_steps and step >= args.eager_steps:
                break
            with tf.GradientTape() as tape:
                x = tf.reshape(x, (-1, 28 * 28))
                out = model(x)
                y_onehot = tf.one_hot(y, depth=10)
                loss = tf.reduce_sum(tf.square(out - y_onehot)) / x.shape[0]
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            seen += int(x.shape[0])
            if step % 200 == 0:
                loss_sum = float(loss.numpy())
                print(epoch, step, "loss:", loss_sum, file=sys.stderr)
        return loss_sum, seen

    for epoch in range(args.epochs):
        if channel.receive() != "go":
            break
        began = time.perf_counter()
        loss, seen = train_epoch(epoch)
        channel.send(epoch=epoch + 1, seconds=time.perf_counter() - began, samples=seen, loss=loss, accuracy=None)
    else:
        channel.receive()
    test_x = tf.reshape(tf.convert_to_tensor(splits.test_images, dtype=tf.float32) / 255.0, (-1, 784))
    predictions = tf.argmax(model(test_x), axis=1, output_type=tf.int32).numpy()
    channel.send(final=True, test_accuracy=float((predictions == splits.test_labels).mean()))


# ---------------------------------------------------------------- parent


def _interleave(
    workers: dict[str, common.Worker], *, epochs: int, deadline: float, label: str
) -> dict[str, dict[str, Any]]:
    for worker in workers.values():
        worker.reply()  # ready: TensorFlow imported and data loaded, in parallel
    names = list(workers)
    results: dict[str, dict[str, Any]] = {name: {"epochs": []} for name in names}
    for round_index in range(epochs):
        # Rotate who goes first so that no contender always follows the same one.
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:
            workers[name].command("go")
            reply = workers[name].reply()
            reply["samples_per_second"] = reply["samples"] / reply["seconds"]
            reply["load_average"] = common.load_average()[0]
            results[name]["epochs"].append(reply)
            print(
                f"  {label} round {round_index + 1}/{epochs} {name:12s} {reply['samples_per_second']:>9,.0f} samples/s"
                f"  ({reply['seconds']:.2f} s, load {reply['load_average']:.2f})",
                flush=True,
            )
        if time.perf_counter() > deadline and round_index >= 1:
            print(f"  {label}: time limit reached after {round_index + 1} rounds", flush=True)
            break
    for name in names:
        workers[name].command("end")
        final = workers[name].reply()
        results[name]["test_accuracy"] = final.get("test_accuracy")
        workers[name].close()
    for name in names:
        measured = [entry["samples_per_second"] for entry in results[name]["epochs"][1:]]
        results[name]["median_samples_per_second"] = common.median(measured)
        results[name]["measured_epochs"] = len(measured)
    return results


def _spawn(name: str, kind: str, *, data: Path, dataset: str, epochs: int, config: dict[str, Any], args: argparse.Namespace) -> common.Worker:
    script = str(Path(__file__).resolve())
    argv = [script, "--worker", kind, "--data", str(data), "--dataset", dataset, "--epochs", str(epochs), "--config", json.dumps(config)]
    if args.eager_steps:
        argv += ["--eager-steps", str(args.eager_steps)]
    return common.Worker(name, argv, quiet=not args.verbose)


def _peers(args: argparse.Namespace, datasets: dict[str, Path], deadline: float) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for dataset, directory in datasets.items():
        print(f"peers on {dataset} ({directory}), batch 32, {args.epochs} epochs each, interleaved:", flush=True)
        workers = {}
        try:
            for name in args.contenders:
                workers[name] = _spawn(name, name, data=directory, dataset=dataset, epochs=args.epochs, config={}, args=args)
            results = _interleave(workers, epochs=args.epochs, deadline=deadline, label=dataset)
        finally:
            for worker in workers.values():
                worker.close()
        ours = results.get("ours", {}).get("median_samples_per_second")
        for name, result in results.items():
            if ours and name != "ours":
                result["ours_over_this"] = ours / result["median_samples_per_second"]
                # Also the median of the ratios within each round (epochs run next to each
                # other), which a slow drift of outside load disturbs less.
                pairs = zip(results["ours"]["epochs"][1:], result["epochs"][1:])
                result["ours_over_this_per_round"] = common.median([a["samples_per_second"] / b["samples_per_second"] for a, b in pairs])
                result["goal"] = GOALS.get(name)
        report[dataset] = results
    return report


def _precision(args: argparse.Namespace, datasets: dict[str, Path], deadline: float) -> dict[str, Any]:
    report: dict[str, Any] = {}
    dataset = "fashion-mnist" if "fashion-mnist" in datasets else next(iter(datasets))
    for recipe in args.precision_recipes:
        fields, epochs = PRECISION_RECIPES[recipe]
        epochs = args.precision_epochs or epochs
        print(f"precision on {dataset}, recipe {recipe} {fields or '(walk-through)'}, {epochs} epochs each, interleaved:", flush=True)
        workers = {}
        try:
            for precision in ("float32", "mixed-bf16"):
                config = {**fields, "precision": precision}
                workers[precision] = _spawn(precision, "ours", data=datasets[dataset], dataset=dataset, epochs=epochs, config=config, args=args)
            results = _interleave(workers, epochs=epochs, deadline=float("inf"), label=recipe)
        finally:
            for worker in workers.values():
                worker.close()
        float32, bf16 = results["float32"], results["mixed-bf16"]
        report[recipe] = {
            "config": fields,
            "epochs": epochs,
            "results": results,
            "speedup": bf16["median_samples_per_second"] / float32["median_samples_per_second"],
            "accuracy_points": 100 * (bf16["test_accuracy"] - float32["test_accuracy"]),
        }
    return report


def _print_summary(report: dict[str, Any]) -> None:
    print("\nsummary (median samples/s over epochs after the first):")
    for dataset, results in report.get("peers", {}).items():
        print(f"  {dataset}:")
        for name, result in results.items():
            ratio = result.get("ours_over_this")
            goal = result.get("goal")
            per_round = result.get("ours_over_this_per_round")
            extra = (
                f"  ours/this {ratio:5.2f}x (goal >= {goal}x: {'met' if ratio >= goal else 'MISSED'}; per-round median {per_round:.2f}x)"
                if ratio
                else ""
            )
            accuracy = result.get("test_accuracy")
            accuracy_text = f"  test acc {accuracy:.4f}" if accuracy is not None else ""
            print(f"    {name:12s} {result['median_samples_per_second']:>9,.0f}{extra}{accuracy_text}")
    for recipe, entry in report.get("precision", {}).items():
        results = entry["results"]
        print(
            f"  precision {recipe}: float32 {results['float32']['median_samples_per_second']:,.0f}, mixed-bf16 "
            f"{results['mixed-bf16']['median_samples_per_second']:,.0f} samples/s ({entry['speedup']:.2f}x); test accuracy "
            f"{results['float32']['test_accuracy']:.4f} vs {results['mixed-bf16']['test_accuracy']:.4f} "
            f"({entry['accuracy_points']:+.2f} points, goal within 0.3)"
        )


def main() -> None:
    """Parse options and run the chosen parts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("all", "peers", "precision"), default="all")
    parser.add_argument("--datasets", default="fashion-mnist,mnist", help="comma-separated: fashion-mnist, mnist")
    parser.add_argument("--fashion-dir", type=Path, default=common.default_fashion_dir(), help="$MNIST_BENCH_FASHION [%(default)s]")
    parser.add_argument("--mnist-dir", type=Path, default=common.default_mnist10k_dir(), help="$MNIST_BENCH_MNIST10K [%(default)s]")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--epochs", type=int, default=4, help="epochs per contender, the first one dropped [%(default)s]")
    parser.add_argument("--eager-steps", type=int, default=0, help="cut the eager loop's epochs to N steps (0: whole epochs)")
    parser.add_argument("--max-seconds", type=float, default=600, help="stop adding rounds to the peer part after this")
    parser.add_argument("--precision-recipes", default="mlp,cnn", help=f"of {', '.join(PRECISION_RECIPES)}")
    parser.add_argument("--precision-epochs", type=int, default=0, help="epochs of each precision run (0: the recipe's: mlp 10, cnn 6)")
    parser.add_argument("--quick", action="store_true", help="3 epochs, eager cut to 300 steps, precision 3 epochs of the MLP")
    parser.add_argument("--output", default="bench_trainer.json", help="file name under benchmarks/out/")
    parser.add_argument("--verbose", action="store_true", help="show the workers' stderr")
    # Worker mode (internal).
    parser.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument("--config", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    if args.quick:
        args.epochs, args.eager_steps, args.precision_epochs, args.precision_recipes = 3, 300, 3, "mlp"
    args.contenders = [name.strip() for name in args.contenders.split(",") if name.strip()]
    args.precision_recipes = [name.strip() for name in args.precision_recipes.split(",") if name.strip()]
    wanted = [name.strip() for name in args.datasets.split(",") if name.strip()]
    places = {"fashion-mnist": (args.fashion_dir, common.FASHION_HINT), "mnist": (args.mnist_dir, common.MNIST10K_HINT)}
    datasets: dict[str, Path] = {}
    for name in wanted:
        directory, hint = places[name]
        problem = common.check_dataset_dir(directory, hint)
        if problem:
            print(f"skipping {name}: {problem}", file=sys.stderr)
        else:
            datasets[name] = directory
    if not datasets:
        sys.exit("error: no data set found (see the lines above)")
    report: dict[str, Any] = {"machine": common.machine(), "load_average_before": common.load_average(), "argv": sys.argv[1:]}
    print(f"machine: {report['machine']}\nload average before: {report['load_average_before']}", flush=True)
    deadline = time.perf_counter() + args.max_seconds
    if args.part in ("all", "peers"):
        report["peers"] = _peers(args, datasets, deadline)
    if args.part in ("all", "precision"):
        report["precision"] = _precision(args, datasets, deadline)
    report["load_average_after"] = common.load_average()
    _print_summary(report)
    print(f"load average after: {report['load_average_after']}")
    print(f"written {common.write_json(args.output, report)}")


if __name__ == "__main__":
    main()
