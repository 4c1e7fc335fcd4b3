"""Using a loaded model: scoring every example of a split (`mnist evaluate`) and reading pictures (`mnist predict`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mnist_cli import data
from mnist_cli.core import reporting
from mnist_cli.core.config import EVAL_BATCH, TrainConfig
from mnist_cli.core.errors import InputError, UsageError
from mnist_cli.inference.loading import Loaded, Source
from mnist_cli.inference.preprocessing import iter_image_paths, preprocess
from mnist_cli.training import scoring

PREDICT_BATCH = 256
STDIN = "-"



class Predictor(Protocol):
    """What predicting needs of a model: its training config, and logits for uint8 images [N, 28, 28]."""

    config: TrainConfig

    def logits(self, images: np.ndarray, *, batch_size: int) -> np.ndarray: ...  # noqa: D102


def probabilities(logits: np.ndarray, *, loss: str) -> np.ndarray:
    """Class probabilities from a model's outputs: softmax after cross-entropy training.

    A network trained with the walk-through's squared error against one-hot targets
    already outputs estimates of the class probabilities (least squares estimates the
    conditional mean of the one-hot vector); their softmax would be nearly flat (about
    10-20% for a sure digit), so those outputs are clipped at 0 and normalised instead.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if loss != "mse":
        return softmax(logits)
    clipped = np.clip(logits, 0.0, None)
    totals = clipped.sum(axis=-1, keepdims=True)
    # All outputs <= 0 (a picture unlike any digit) says nothing; softmax keeps the ranking.
    return np.where(totals > 0, clipped / np.where(totals > 0, totals, 1.0), softmax(logits))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities from logits, only where probabilities are shown."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


# --- evaluate ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scoring:
    """The split is loaded and about to be scored."""

    dataset: str
    split: str
    count: int
    source: Source


@dataclass(frozen=True, eq=False)
class Evaluation:
    """A split scored by a model: the metrics, and the arrays a report draws from."""

    metrics: reporting.Metrics
    source: Source
    dataset: str
    split: str
    loss_function: str
    seconds: float
    images: np.ndarray
    labels: np.ndarray
    logits: np.ndarray

    @property
    def predictions(self) -> np.ndarray:
        """The predicted class of each example."""
        return self.logits.argmax(axis=1)

    @property
    def probabilities(self) -> np.ndarray:
        """The class probabilities, [N, classes] (see `probabilities`)."""
        return probabilities(self.logits, loss=self.loss_function)

    @property
    def images_per_second(self) -> float:
        """Scoring throughput."""
        return self.metrics.count / max(self.seconds, 1e-9)

    def to_dict(self) -> dict[str, Any]:
        """What `mnist evaluate --json` prints."""
        return {
            **self.metrics.to_dict(),
            "loss_function": self.loss_function,
            "target": self.source.target,
            "model": self.source.to_dict(),
            "dataset": self.dataset,
            "split": self.split,
            "seconds": self.seconds,
            "images_per_second": self.images_per_second,
        }


def split_arrays(directory: Path, *, loaded: Loaded, dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The (images, labels) of `split`; train and val are held out exactly as the run's training did."""
    if split not in data.EVAL_SPLITS:
        raise UsageError(f"--split must be one of {', '.join(data.EVAL_SPLITS)}, got {split!r}")
    if split == "test":
        images, labels = data.load_split(directory, "test")
    else:
        if split == "val" and not loaded.config_known:
            raise UsageError(
                f"--split val needs the run's config.json to know which images were held out, and {loaded.source.path} has none",
                "evaluate the run directory instead, or use --split test",
            )
        if split == "val" and loaded.config.val_split == 0:
            raise UsageError("this run held out no validation split (--val-split 0)", "use --split test or --split train")
        splits = data.load_splits(directory, dataset=dataset, val_split=loaded.config.val_split, seed=loaded.config.seed)
        images, labels = splits.split(split)
    if len(labels) == 0:
        raise UsageError(f"the {split} split of {dataset} in {directory} is empty", "choose another --split")
    return images, labels


def evaluate(
    loaded: Loaded,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    dataset: str,
    split: str,
    batch_size: int = EVAL_BATCH,
    on_event: Callable[[Scoring], None] | None = None,
) -> Evaluation:
    """Score every example (no dropped remainder) with the run's loss; accuracy, per-class scores, confusions."""
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    if on_event:
        on_event(Scoring(dataset=dataset, split=split, count=len(labels), source=loaded.source))
    began = time.perf_counter()
    scores = scoring.score(loaded.eval_step, images, labels, batch_size=batch_size)
    metrics = reporting.compute_metrics(
        labels, scores.predictions, class_names=data.dataset_spec(dataset).class_names, loss=scores.loss
    )
    return Evaluation(
        metrics=metrics,
        source=loaded.source,
        dataset=dataset,
        split=split,
        loss_function=loaded.config.loss,
        seconds=time.perf_counter() - began,
        images=images,
        labels=labels,
        logits=scores.logits,
    )


def write_report(evaluation: Evaluation, directory: Path, *, limit: int = 100) -> list[Path]:
    """Write the confusion matrix and the most confidently misclassified digits as PNG, and metrics.json."""
    return reporting.write_report(
        directory,
        metrics=evaluation.metrics,
        images=evaluation.images,
        labels=evaluation.labels,
        predictions=evaluation.predictions,
        class_names=evaluation.metrics.class_names,
        limit=limit,
        probabilities=evaluation.probabilities,
    )


# --- predict ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Picture:
    """One input to predict: its name as shown, and a path or the bytes read from standard input."""

    path: str
    source: Path | bytes


@dataclass(frozen=True)
class Failure:
    """An input that could not be used, and why."""

    path: str
    message: str
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {"path": self.path, "error": self.message, "hint": self.hint}


@dataclass(frozen=True, eq=False)
class Prediction:
    """What the model read in one picture: the 28x28 digit it saw and the probability of each class."""

    path: str
    image: np.ndarray  # uint8 [28, 28], what the network saw
    probabilities: np.ndarray  # float [classes]
    class_names: tuple[str, ...]

    @property
    def prediction(self) -> int:
        """The most probable class."""
        return int(np.argmax(self.probabilities))

    @property
    def name(self) -> str:
        """The most probable class's name."""
        return self.class_names[self.prediction]

    @property
    def probability(self) -> float:
        """The probability of the predicted class."""
        return float(self.probabilities[self.prediction])

    def top(self, k: int) -> list[tuple[int, str, float]]:
        """The k most probable classes as (class, name, probability), most probable first."""
        order = np.argsort(-self.probabilities, kind="stable")[: max(1, k)]
        return [(int(i), self.class_names[i], float(self.probabilities[i])) for i in order]

    def to_dict(self, *, top_k: int = 3) -> dict[str, Any]:
        """What `mnist predict --json` prints for one picture."""
        return {
            "path": self.path,
            "prediction": self.prediction,
            "name": self.name,
            "probability": self.probability,
            "probabilities": [float(p) for p in self.probabilities],
            "top_k": [{"class": c, "name": n, "probability": p} for c, n, p in self.top(top_k)],
        }


@dataclass(frozen=True)
class PictureDone:
    """One picture was read (or failed); `failure` says why when it did."""

    done: int
    total: int
    path: str
    failure: Failure | None


def gather_pictures(arguments: Sequence[str], *, read_stdin: Callable[[], bytes] | None = None) -> list[Picture | Failure]:
    """Expand files, directories (their images, sorted) and "-" (standard input, read once) into pictures."""
    items: list[Picture | Failure] = []
    stdin: bytes | Failure | None = None
    for argument in arguments:
        if argument == STDIN:
            if stdin is None:
                try:
                    stdin = read_stdin() if read_stdin else b""
                except InputError as exc:
                    stdin = Failure(STDIN, exc.message, exc.hint)
            items.append(stdin if isinstance(stdin, Failure) else Picture(STDIN, stdin))
            continue
        path = Path(argument)
        if not path.is_dir():
            items.append(Picture(argument, path))
            continue
        try:
            items.extend(Picture(str(found), found) for found in iter_image_paths([path]))
        except InputError as exc:
            items.append(Failure(argument, exc.message, exc.hint))
    return items


def read_picture(picture: Picture) -> np.ndarray | Failure:
    """Preprocess one picture into an MNIST-style uint8 [28, 28] digit, or say why it cannot be read."""
    name = "standard input" if picture.path == STDIN else picture.path
    try:
        return preprocess(picture.source, name=name)
    except InputError as exc:
        return Failure(picture.path, exc.message, exc.hint)
    except Exception as exc:  # noqa: BLE001 - one odd file must not stop the others from being read
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Failure(picture.path, f"{name} could not be read ({detail})", "convert it to PNG or JPEG")


def make_predictions(model: Predictor, paths: Sequence[str], images: np.ndarray, logits: np.ndarray) -> list[Prediction]:
    """One Prediction per image from the model's logits, with the run's probabilities and class names."""
    class_names = data.dataset_spec(model.config.dataset).class_names
    probs = probabilities(logits, loss=model.config.loss)
    return [Prediction(path, images[row], probs[row], class_names) for row, path in enumerate(paths)]


def predict_pictures(
    model: Predictor,
    items: Sequence[Picture | Failure],
    *,
    batch_size: int = PREDICT_BATCH,
    on_event: Callable[[PictureDone], None] | None = None,
) -> list[Prediction | Failure]:
    """Preprocess each picture like an MNIST digit and classify them in batches; failures keep their place.

    `model` is a `loading.Loaded` (TensorFlow) or a `litert.FastModel`: the same pictures,
    the same probabilities.
    """
    read: list[np.ndarray | Failure] = []
    for done, item in enumerate(items, start=1):
        result = item if isinstance(item, Failure) else read_picture(item)
        read.append(result)
        if on_event:
            on_event(PictureDone(done, len(items), item.path, result if isinstance(result, Failure) else None))
    good = [index for index, result in enumerate(read) if not isinstance(result, Failure)]
    predictions: dict[int, Prediction] = {}
    if good:
        images = np.stack([read[index] for index in good]).astype(np.uint8, copy=False)
        logits = model.logits(images, batch_size=batch_size)
        made = make_predictions(model, [items[index].path for index in good], images, logits)
        predictions = dict(zip(good, made))
    return [predictions.get(index, result) for index, result in enumerate(read)]  # type: ignore[misc]
