"""No silent slow path: a recipe's mixed precision falls back to float32 on a CPU that would only emulate it.

This machine may well have AVX512_BF16; MNIST_CPU_FLAGS simulates an AVX2-only CPU, and
GPUs are counted as none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import write_tiny_dataset
from mnist_cli.cli import app
from mnist_cli.core import precision
from mnist_cli.core.config import RECIPES, TrainConfig
from mnist_cli.core.errors import USAGE, UsageError

AVX2 = frozenset({"fpu", "sse4_2", "avx", "avx2", "fma"})
AVX2_ENV = "fpu sse4_2 avx avx2 fma"


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "gpu_count", lambda: 0)


def test_cpu_flags_come_from_the_environment_variable_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(precision.CPU_FLAGS_ENV, "AVX2, fma  avx512_bf16")
    assert precision.cpu_flags() == {"avx2", "fma", "avx512_bf16"}
    monkeypatch.setenv(precision.CPU_FLAGS_ENV, "")
    assert precision.cpu_flags() == frozenset()


@pytest.mark.parametrize(
    ("text", "native"),
    [
        ("processor\t: 0\nflags\t\t: fpu sse avx2 fma\nbugs\t: spectre\n", False),
        ("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n", True),
        ("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16 amx_tile\n", True),
        ("processor\t: 0\nFeatures\t: fp asimd sve bf16\n", True),  # Arm
        ("processor\t: 0\nFeatures\t: fp asimd\n", False),
        ("", False),  # unreadable or empty: not native
    ],
)
def test_linux_cpuinfo_is_read_for_bf16(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, native: bool) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(text)
    monkeypatch.delenv(precision.CPU_FLAGS_ENV, raising=False)
    monkeypatch.setattr(precision, "_CPUINFO", str(cpuinfo))
    monkeypatch.setattr(precision.sys, "platform", "linux")
    assert (precision.lacking("mixed-bf16", gpus=0) is None) is native


def test_what_is_native_where() -> None:
    assert precision.lacking("float32", flags=frozenset(), gpus=0) is None
    assert "AVX512_BF16" in precision.lacking("mixed-bf16", flags=AVX2, gpus=0)
    assert precision.lacking("mixed-bf16", flags=AVX2 | {"avx512_bf16"}, gpus=0) is None
    assert precision.lacking("mixed-bf16", flags=AVX2, gpus=1) is None  # on the GPU
    assert "GPU" in precision.lacking("mixed-fp16", flags=AVX2 | {"avx512_bf16"}, gpus=0)
    assert precision.lacking("mixed-fp16", flags=AVX2, gpus=1) is None


def test_a_recipes_mixed_precision_becomes_float32_and_says_so() -> None:
    values = {**RECIPES["accurate"], "recipe": "accurate"}
    chosen, notice = precision.choose(values, explicit=False, flags=AVX2, gpus=0)
    assert chosen["precision"] == "float32" and chosen["precision_downgraded_from"] == "mixed-bf16"
    assert notice is not None and notice.downgraded and notice.recipe == "accurate" and notice.used == "float32"
    config = TrainConfig(**chosen)
    assert config.precision == "float32" and config.model == "cnn" and config.precision_downgraded_from == "mixed-bf16"


def test_an_explicit_precision_is_kept_with_a_warning() -> None:
    values = {**RECIPES["accurate"], "recipe": "accurate", "precision": "mixed-bf16"}
    chosen, notice = precision.choose(values, explicit=True, flags=AVX2, gpus=0)
    assert chosen == values
    assert notice is not None and not notice.downgraded and notice.used == "mixed-bf16"


def test_nothing_changes_where_the_precision_is_native_or_float32() -> None:
    values = {**RECIPES["best"], "recipe": "best"}
    assert precision.choose(values, explicit=False, flags=AVX2 | {"amx_bf16"}, gpus=0) == (values, None)
    assert precision.choose({"recipe": "fast", **RECIPES["fast"]}, explicit=False, flags=AVX2, gpus=0)[1] is None
    assert precision.choose({}, explicit=False, flags=AVX2, gpus=0) == ({}, None)


def test_the_downgrade_is_checked_and_survives_config_json(tmp_path: Path) -> None:
    config = TrainConfig(model="cnn", precision="float32", precision_downgraded_from="mixed-bf16", recipe="accurate")
    config.save(tmp_path)
    assert TrainConfig.load(tmp_path) == config
    assert TrainConfig.from_dict({"precision": "mixed-bf16"}).precision_downgraded_from is None  # older runs
    with pytest.raises(UsageError, match="precision-downgraded-from"):
        TrainConfig(precision_downgraded_from="bf17")
    with pytest.raises(UsageError, match="precision_downgraded_from"):
        TrainConfig.from_dict({"precision_downgraded_from": 16})


# --------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("data")
    write_tiny_dataset(directory / "mnist", n_train=150, n_test=30)
    return directory


def train(data_dir: Path, run_dir: Path, *options: str, flags: str) -> tuple[Any, dict[str, Any]]:
    result = CliRunner().invoke(
        app,
        ["train", "--data-dir", str(data_dir), "--run-dir", str(run_dir), "--epochs", "1", "--batch-size", "50", *options, "--json"],
        env={precision.CPU_FLAGS_ENV: flags, "MNIST_PRECISION": None},
    )
    assert result.exit_code == 0, result.output
    return result, json.loads((run_dir / "config.json").read_text())


def notices(result: Any) -> list[str]:
    return [line for line in result.stderr.splitlines() if "bfloat16" in line]


def test_recipe_accurate_on_an_avx2_cpu_trains_in_float32_and_says_so_in_one_line(data_dir: Path, tmp_path: Path, no_gpu: None) -> None:
    result, config = train(data_dir, tmp_path / "run", "--recipe", "accurate", flags=AVX2_ENV)
    assert config["precision"] == "float32" and config["precision_downgraded_from"] == "mixed-bf16" and config["recipe"] == "accurate"
    (line,) = notices(result)
    assert line.startswith("note: this machine has no native bfloat16 (no AVX512_BF16 or AMX-BF16, no GPU)")
    assert "--recipe accurate trains in float32 instead of mixed-bf16" in line and "--precision mixed-bf16 keeps it" in line
    assert json.loads(result.stdout)["test_accuracy"] >= 0  # --json stays parseable: the note is on stderr


def test_an_explicit_precision_on_an_avx2_cpu_is_kept_with_a_warning(data_dir: Path, tmp_path: Path, no_gpu: None) -> None:
    result, config = train(data_dir, tmp_path / "run", "--recipe", "accurate", "--precision", "mixed-bf16", flags=AVX2_ENV)
    assert config["precision"] == "mixed-bf16" and config["precision_downgraded_from"] is None
    (line,) = notices(result)
    assert line.startswith("warning: this machine has no native bfloat16") and "--precision float32" in line


def test_a_cpu_with_bf16_keeps_the_recipes_precision_silently(data_dir: Path, tmp_path: Path, no_gpu: None) -> None:
    result, config = train(data_dir, tmp_path / "run", "--recipe", "accurate", flags=f"{AVX2_ENV} avx512_bf16")
    assert config["precision"] == "mixed-bf16" and config["precision_downgraded_from"] is None
    assert notices(result) == []


def test_tune_with_mixed_bf16_on_an_avx2_cpu_warns(tmp_path: Path, no_gpu: None) -> None:
    # Every searched parameter fixed: the study is refused right after the warning, before any trial.
    fixed = ["--optimizer", "adam", "--schedule", "cosine", "--batch-size", "64", "--augment", "--lr", "0.01", "--loss", "xent", "--epochs", "1", "--hidden", "16"]
    result = CliRunner().invoke(
        app, ["tune", "--runs-root", str(tmp_path), *fixed, "--precision", "mixed-bf16"], env={precision.CPU_FLAGS_ENV: AVX2_ENV}
    )
    assert result.exit_code == USAGE, result.output
    (line,) = notices(result)
    assert line.startswith("warning: this machine has no native bfloat16")
