"""The trainer core: compiled once, deterministic, exact resume, safe stops, TensorBoard runs."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import filelock
import numpy as np
import pytest

from mnist_cli.runs import runs as run_dirs
from mnist_cli.core.config import TrainConfig
from mnist_cli.data import load_splits
from mnist_cli.core.errors import BusyError, DivergedError, Interrupted, UsageError

trainer = pytest.importorskip("mnist_cli.training.trainer")
from mnist_cli.model import weights  # noqa: E402
from mnist_cli.model import steps  # noqa: E402


# The step counts below are about 600 training images (540 after validation: a remainder batch of 28).
pytestmark = pytest.mark.tiny_data(n_train=600)


@pytest.fixture
def splits(tiny_data_dir: Path):
    return load_splits(tiny_data_dir / "mnist", dataset="mnist", val_split=0.1, seed=0)


def _weights(run_dir: Path, config: TrainConfig) -> list[np.ndarray]:
    from mnist_cli.model.network import build_model

    model = build_model(config)
    weights.restore_weights(model, weights.latest_in(run_dir / "checkpoints"))
    return [variable.numpy() for variable in model.variables]


FAST = TrainConfig(epochs=3, log_every=4, batch_size=32)


def test_compiled_functions_trace_once(splits, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: dict[str, object] = {}
    original_chunk, original_eval = steps.make_train_chunk, steps.make_eval_step

    def spy_chunk(*args, **kwargs):
        made["train_chunk"] = original_chunk(*args, **kwargs)
        return made["train_chunk"]

    def spy_eval(*args, **kwargs):
        made["eval_step"] = original_eval(*args, **kwargs)
        return made["eval_step"]

    monkeypatch.setattr(steps, "make_train_chunk", spy_chunk)
    monkeypatch.setattr(steps, "make_eval_step", spy_eval)
    # 540 training images in batches of 32: chunks of 4 steps, a shorter chunk and the
    # remainder batch of 28; validation and test batches of other sizes.
    trainer.fit(FAST, splits, run_dir=tmp_path / "run")
    assert made["train_chunk"].experimental_get_tracing_count() == 1
    assert made["eval_step"].experimental_get_tracing_count() == 1


def test_default_recipe_learns_and_writes_a_complete_run(splits, tmp_path: Path) -> None:
    events: list[object] = []
    result = trainer.fit(FAST, splits, run_dir=tmp_path / "run", on_event=events.append)
    run = tmp_path / "run"
    assert result.test_accuracy > 0.5  # 10% is chance; the bars are easy to learn
    assert result.epochs == 3 and result.best_checkpoint and result.best_checkpoint.startswith(str(run / "best"))
    for name in ("config.json", "history.json", "result.json", "model.keras", "checkpoints/checkpoint", "best/checkpoint"):
        assert (run / name).is_file(), name
    assert TrainConfig.load(run) == FAST
    assert json.loads((run / "result.json").read_text())["test_accuracy"] == result.test_accuracy
    assert [entry["epoch"] for entry in json.loads((run / "history.json").read_text())] == [1, 2, 3]
    epochs = [event for event in events if isinstance(event, trainer.EpochDone)]
    assert [event.epoch for event in epochs] == [1, 2, 3]
    steps_done = [event for event in events if isinstance(event, trainer.StepsDone)]
    assert steps_done[-1].step == steps_done[-1].steps == 17  # ceil(540 / 32): no example dropped


def test_same_seed_gives_bit_identical_weights(splits, tmp_path: Path) -> None:
    config = FAST.replace(epochs=2, augment=True)
    trainer.fit(config, splits, run_dir=tmp_path / "a")
    trainer.fit(config, splits, run_dir=tmp_path / "b")
    trainer.fit(config.replace(seed=1), splits, run_dir=tmp_path / "c")
    first, second, other = (_weights(tmp_path / name, config) for name in "abc")
    assert all(np.array_equal(x, y) for x, y in zip(first, second))
    assert not all(np.array_equal(x, y) for x, y in zip(first, other))


@pytest.mark.parametrize("model", ["mlp", pytest.param("cnn", marks=pytest.mark.slow)])
def test_interrupt_and_resume_ends_with_the_same_weights(splits, tmp_path: Path, model: str) -> None:
    # Batches of 45 divide the 540 images: 12 steps an epoch, three chunks of 4, so XLA compiles
    # the chunk once (a remainder batch or a shorter chunk would be compiled again).
    config = FAST.replace(model=model, optimizer="adam", lr=0.001, loss="xent", schedule="cosine", batch_size=45)
    trainer.fit(config, splits, run_dir=tmp_path / "straight")

    def press_ctrl_c(event: object) -> None:
        if isinstance(event, trainer.StepsDone) and event.epoch == 2 and event.step == 8:
            os.kill(os.getpid(), signal.SIGINT)  # as a user's Ctrl-C: handled between compiled calls

    with pytest.raises(Interrupted) as info:
        trainer.fit(config, splits, run_dir=tmp_path / "stopped", on_event=press_ctrl_c)
    assert "--resume" in (info.value.hint or "")
    assert info.value.exit_code == 130
    saved = weights.latest_in(tmp_path / "stopped" / "checkpoints")
    assert saved.endswith("ckpt-20")  # 12 steps of epoch 1 + 8 of epoch 2
    result = trainer.fit(config, splits, run_dir=tmp_path / "stopped")
    assert result.epochs == 3
    straight, resumed = _weights(tmp_path / "straight", config), _weights(tmp_path / "stopped", config)
    assert all(np.array_equal(x, y) for x, y in zip(straight, resumed))


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(
    splits, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = steps.make_train_chunk

    def poisoned(*args, **kwargs):
        chunk = original(*args, **kwargs)
        calls = []

        def run(images, labels, batch_indices):
            calls.append(1)
            loss_sum, correct = chunk(images, labels, batch_indices)
            return (loss_sum * float("nan"), correct) if len(calls) == 8 else (loss_sum, correct)

        return run

    monkeypatch.setattr(steps, "make_train_chunk", poisoned)
    run = tmp_path / "run"
    with pytest.raises(DivergedError) as info:
        trainer.fit(FAST, splits, run_dir=run)  # 6 calls per epoch: the 8th is in epoch 2
    assert "diverged" in info.value.message and "epoch 2" in info.value.message
    assert info.value.message.endswith(str(run / "checkpoints" / "ckpt-17"))
    assert weights.latest_in(run / "checkpoints").endswith("ckpt-17")
    assert not (run / "result.json").exists()


def test_a_second_training_on_the_same_run_dir_refuses(splits, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with filelock.FileLock(str(run / ".lock")):
        with pytest.raises(BusyError, match="another `mnist train`"):
            trainer.fit(FAST, splits, run_dir=run)


def test_resolve_run_rules(tmp_path: Path) -> None:
    config = TrainConfig(epochs=2)
    run_dir, same = run_dirs.resolve_run(config, run_dir=None, resume=False, root=tmp_path)
    assert run_dir.parent == tmp_path and run_dir.name.startswith("mnist-mlp-") and same == config
    config.save(tmp_path / "old")
    with pytest.raises(UsageError, match="already holds a run"):
        run_dirs.resolve_run(config, run_dir=tmp_path / "old", resume=False, root=tmp_path)
    _, resumed = run_dirs.resolve_run(TrainConfig(), run_dir=tmp_path / "old", resume=True, root=tmp_path, overrides={"epochs": 5})
    assert resumed == config.replace(epochs=5)
    with pytest.raises(UsageError, match="--lr"):
        run_dirs.resolve_run(TrainConfig(), run_dir=tmp_path / "old", resume=True, root=tmp_path, overrides={"lr": 0.5})


def test_run_opens_in_tensorboard_with_every_summary(splits, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    trainer.fit(FAST.replace(epochs=2), splits, run_dir=tmp_path / "runs" / "r1")
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(tmp_path / "runs"))
    multiplexer.Reload()
    runs = multiplexer.Runs()
    assert set(runs) == {"r1", "r1/train", "r1/validation"}
    train_tags = runs["r1/train"]
    tensors = set(train_tags["tensors"])
    assert {"epoch_loss", "epoch_accuracy", "learning_rate", "samples_per_second", "sample_inputs"} <= tensors
    kernels = [tag for tag in tensors if tag.endswith("kernel")]
    assert kernels and multiplexer.SummaryMetadata("r1/train", kernels[0]).plugin_data.plugin_name == "histograms"
    assert {"epoch_loss", "epoch_accuracy"} <= set(runs["r1/validation"]["tensors"])
    assert {"config", "test/accuracy"} <= set(runs["r1"]["tensors"])
    from tensorboard.plugins.hparams import plugin_data_pb2

    # The HParams dashboard lists this run with its hyperparameters.
    metadata = multiplexer.SummaryMetadata("r1", "_hparams_/session_start_info")
    assert metadata.plugin_data.plugin_name == "hparams"
    session = plugin_data_pb2.HParamsPluginData.FromString(metadata.plugin_data.content).session_start_info
    assert session.hparams["optimizer"].string_value == FAST.optimizer
    assert session.hparams["lr"].number_value == pytest.approx(FAST.lr)
    history = [event.step for event in multiplexer.Tensors("r1/validation", "epoch_accuracy")]
    assert history == [1, 2]


@pytest.mark.parametrize("precision", ["mixed-bf16", pytest.param("mixed-fp16", marks=pytest.mark.slow)])
def test_mixed_precision_trains_with_float32_logits_and_weights(splits, tmp_path: Path, precision: str) -> None:
    from mnist_cli.inference import loading

    result = trainer.fit(FAST.replace(precision=precision, epochs=2), splits, run_dir=tmp_path / "run")
    assert result.test_accuracy > 0.3
    model = loading.load(tmp_path / "run").model
    assert all(variable.dtype == "float32" for variable in model.trainable_variables)
    assert model(splits.test_images[:4]).dtype == "float32"
