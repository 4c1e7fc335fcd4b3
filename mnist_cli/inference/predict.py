"""Reading pictures with a loaded model (`mnist predict`, `/predict`): preprocess, classify, explain the probabilities."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mnist_cli import data
from mnist_cli.core.config import TrainConfig
from mnist_cli.core.errors import InputError
from mnist_cli.inference.preprocessing import iter_image_paths, preprocess

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


def read_pictures(
    items: Sequence[Picture | Failure], *, on_event: Callable[[PictureDone], None] | None = None
) -> list[np.ndarray | Failure]:
    """Preprocess each picture like an MNIST digit; failures keep their place."""
    read: list[np.ndarray | Failure] = []
    for done, item in enumerate(items, start=1):
        result = item if isinstance(item, Failure) else read_picture(item)
        read.append(result)
        if on_event:
            on_event(PictureDone(done, len(items), item.path, result if isinstance(result, Failure) else None))
    return read


def readable_images(read: Sequence[np.ndarray | Failure]) -> np.ndarray:
    """The digits of the pictures that could be read, in order, as uint8 [k, 28, 28] (k may be 0)."""
    images = [result for result in read if not isinstance(result, Failure)]
    if not images:
        return np.zeros((0, 28, 28), np.uint8)
    return np.stack(images).astype(np.uint8, copy=False)


def classified(
    model: Predictor, items: Sequence[Picture | Failure], read: Sequence[np.ndarray | Failure], logits: np.ndarray
) -> list[Prediction | Failure]:
    """Each read picture's Prediction from `logits` (one row per `readable_images(read)`), failures in their place."""
    good = [index for index, result in enumerate(read) if not isinstance(result, Failure)]
    predictions: dict[int, Prediction] = {}
    if good:
        images = readable_images(read)
        made = make_predictions(model, [items[index].path for index in good], images, logits)
        predictions = dict(zip(good, made))
    return [predictions.get(index, result) for index, result in enumerate(read)]  # type: ignore[misc]


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
    read = read_pictures(items, on_event=on_event)
    images = readable_images(read)
    logits = model.logits(images, batch_size=batch_size) if len(images) else np.zeros((0, 0), np.float32)
    return classified(model, items, read, logits)
