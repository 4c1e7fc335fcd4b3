"""The `mnist` commands, in the order `mnist --help` lists them: the one list of them.

Each entry names the module that defines the command and its one-line help, which is the
first line of the command's docstring (a test holds them equal), so `mnist --help` can list
every command without importing any of them.
"""

from __future__ import annotations

from mnist_cli.cli.lazy import LazyCommand

COMMANDS: dict[str, LazyCommand] = {
    "download": LazyCommand(
        "mnist_cli.cli.download", "Download a data set's four files, verify their digests, and skip files already verified."
    ),
    "train": LazyCommand(
        "mnist_cli.cli.train", "Train a network on MNIST with a compiled GradientTape loop; defaults are the walk-through's recipe."
    ),
    "evaluate": LazyCommand(
        "mnist_cli.cli.evaluate",
        "Score a trained model on every image of a split: accuracy, loss, per-class scores and the confusion matrix.",
    ),
    "predict": LazyCommand(
        "mnist_cli.cli.predict",
        "Predict the digit in each picture; it is first made to look like an MNIST digit (cropped, scaled, centred).",
    ),
    "show": LazyCommand("mnist_cli.cli.show", "Draw samples of a data set in the terminal, each with its index and label."),
    "runs": LazyCommand(
        "mnist_cli.cli.runs",
        "List the training runs under a folder: status, data set, model, hyperparameters, epochs, accuracy, time.",
    ),
    "export": LazyCommand(
        "mnist_cli.cli.export",
        "Export a trained model; the SavedModel's serving signature takes uint8 [N, 28, 28] images and scales them itself.",
    ),
    "serve": LazyCommand(
        "mnist_cli.cli.serve", "Serve a trained model: a page to draw digits on, POST /predict, and TensorFlow Serving's REST API."
    ),
    "tune": LazyCommand(
        "mnist_cli.cli.tune",
        "Search hyperparameters with Optuna: each trial is an ordinary run under runs/<study>/, chosen on validation accuracy.",
    ),
}
