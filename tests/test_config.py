"""The frozen config: defaults are the walk-through's recipe; bad values are refused clearly."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from mnist_cli.core.config import TrainConfig, parse_hidden
from mnist_cli.core.errors import ModelError, UsageError


def test_defaults_are_the_walkthrough_recipe() -> None:
    config = TrainConfig()
    assert (config.model, config.hidden, config.loss) == ("mlp", (256, 256, 256), "mse")
    assert (config.optimizer, config.lr, config.batch_size, config.epochs) == ("sgd", 0.01, 32, 10)
    assert config.log_every == 200
    assert TrainConfig(optimizer="adam").lr == 0.001 and TrainConfig(optimizer="adam", lr=0.01).lr == 0.01


def test_a_new_optimizer_brings_its_own_rate_unless_one_was_given(tmp_path: Path) -> None:
    # The rate filled in for SGD must not stay behind when a copy switches to Adam.
    assert TrainConfig().replace(optimizer="adam").lr == 0.001
    assert dataclasses.replace(TrainConfig(), optimizer="adam").lr == 0.001
    assert TrainConfig(optimizer="adam").replace(optimizer="momentum").lr == 0.01
    # A given rate stays, even one equal to the old optimizer's usual rate.
    assert TrainConfig(lr=0.05).replace(optimizer="adam").lr == 0.05
    assert TrainConfig(lr=0.01).replace(optimizer="adam").lr == 0.01
    assert TrainConfig().replace(lr=0.2).replace(optimizer="adam").lr == 0.2
    # config.json holds a number either way; a saved rate is the run's, and stays.
    TrainConfig(optimizer="adam").save(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["lr"] == 0.001
    assert TrainConfig.load(tmp_path).replace(optimizer="sgd").lr == 0.001
    # A null rate (the optimizer's usual one) loads too.
    (tmp_path / "config.json").write_text('{"optimizer": "adamw", "lr": null}')
    assert TrainConfig.load(tmp_path).lr == 0.001


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "--epochs must be >= 1"),
        ({"lr": -1.0}, "--lr must be > 0"),
        ({"lr": float("nan")}, "--lr must be a finite number"),
        ({"batch_size": 0}, "--batch-size must be >= 1"),
        ({"val_split": 1.5}, "--val-split must be >= 0.0 and < 1.0"),
        ({"model": "resnet"}, "--model must be one of mlp, cnn"),
        ({"hidden": (256, 0)}, "--hidden must be positive"),
    ],
)
def test_nonsense_values_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(UsageError) as info:
        TrainConfig(**changes)
    assert message in info.value.message


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    config = TrainConfig(model="cnn", hidden=(64, 32), lr=0.1, augment=True)
    config.save(tmp_path)
    assert TrainConfig.load(tmp_path) == config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"model": "transformer"}', "--model must be one of"),
        ('{"lr": "0.1"}', "must be a float"),
        ('{"__class__": "os.system"}', "unknown config field"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_bad_config_json_is_a_model_error(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ModelError) as info:
        TrainConfig.load(tmp_path)
    assert message in info.value.message


def test_parse_hidden() -> None:
    assert parse_hidden("512, 128") == (512, 128)
    with pytest.raises(UsageError):
        parse_hidden("a,b")


def test_recipes_are_valid_configs_and_walkthrough_is_the_default() -> None:
    from mnist_cli.core.config import RECIPES, recipe

    assert recipe("walkthrough") == {} and TrainConfig(**recipe("walkthrough")) == TrainConfig()
    for name in RECIPES:
        TrainConfig(**recipe(name))  # validates
    assert TrainConfig(**recipe("best")).augment and TrainConfig(**recipe("accurate")).model == "cnn"
    with pytest.raises(UsageError, match="unknown recipe"):
        recipe("magic")
