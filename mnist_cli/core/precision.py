"""Whether this machine computes a mixed precision natively, and what a run uses when it does not.

`mixed-bf16` speeds the convnet up about 1.5-2x on CPUs with AVX512_BF16 or AMX-BF16;
on a CPU without them (AVX2 only) TensorFlow emulates bfloat16 and a run is about 8x
slower than float32. `mixed-fp16` is for GPUs. A recipe's mixed precision therefore
falls back to float32 where it is not native, said in one line (`PrecisionNotNative`);
a precision given explicitly (`--precision`, `MNIST_PRECISION`, a `--config` file) is
kept, with the same line as a warning.

`MNIST_CPU_FLAGS` (space- or comma-separated, such as "avx2 fma") replaces the CPU
flags read from the machine, to try another CPU's behaviour (and to test it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

FLOAT32 = "float32"
CPU_FLAGS_ENV = "MNIST_CPU_FLAGS"
# The CPU features that make bfloat16 math native: x86 AVX512_BF16 and AMX-BF16 (Linux's
# /proc/cpuinfo names), and Arm's BF16 extension (Linux "bf16", macOS FEAT_BF16).
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
_CPUINFO = "/proc/cpuinfo"
_CPUINFO_LIMIT = 1 << 20  # the first processor's flags line is near the top; 1 MiB is far past it
_FLAG_LINE = re.compile(r"^(flags|features)\s*:(.*)$", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class PrecisionNotNative:
    """A mixed precision was asked for that this machine does not compute natively."""

    requested: str  # the precision asked for: mixed-bf16 or mixed-fp16
    used: str  # what the run uses: float32 when the recipe's precision was replaced, else `requested`
    lacking: str  # for people: "native bfloat16 (no AVX512_BF16 or AMX-BF16, no GPU)"
    recipe: str | None  # the recipe the precision came from, when it came from one

    @property
    def downgraded(self) -> bool:
        """Whether the run uses float32 instead of what was asked for."""
        return self.used != self.requested


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags, lower-case (MNIST_CPU_FLAGS replaces them); empty when unknown."""
    given = os.environ.get(CPU_FLAGS_ENV)
    if given is not None:
        return frozenset(flag.lower() for flag in re.split(r"[\s,]+", given) if flag)
    if sys.platform == "darwin":
        return _macos_flags()
    return _linux_flags()


def _linux_flags() -> frozenset[str]:
    from mnist_cli.core.safeio import UnsafeFile, open_regular

    try:
        with open_regular(_CPUINFO) as handle:
            text = handle.read(_CPUINFO_LIMIT).decode("utf-8", "replace")
    except (OSError, UnsafeFile):
        return frozenset()
    match = _FLAG_LINE.search(text)  # x86 says "flags", Arm "Features"
    return frozenset(match.group(2).lower().split()) if match else frozenset()


def _macos_flags() -> frozenset[str]:
    flags: set[str] = set()
    for name, flag in (("hw.optional.arm.FEAT_BF16", "bf16"), ("hw.optional.avx512bf16", "avx512_bf16")):
        try:
            done = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0 and done.stdout.strip() == "1":
            flags.add(flag)
    return frozenset(flags)


def gpu_count() -> int:
    """The GPUs TensorFlow can use here (imports TensorFlow)."""
    from mnist_cli.core.tf_setup import import_tensorflow

    return len(import_tensorflow().config.list_physical_devices("GPU"))


def lacking(precision: str, *, flags: frozenset[str] | None = None, gpus: int | None = None) -> str | None:
    """What this machine lacks to compute `precision` natively, or None when it has it.

    `flags` and `gpus` default to this machine's; GPUs are only counted (importing
    TensorFlow) when the CPU alone does not decide.
    """
    if precision == FLOAT32:
        return None
    if precision == "mixed-bf16":
        if BF16_CPU_FLAGS & (cpu_flags() if flags is None else flags):
            return None
        return None if (gpu_count() if gpus is None else gpus) else "native bfloat16 (no AVX512_BF16 or AMX-BF16, no GPU)"
    return None if (gpu_count() if gpus is None else gpus) else "native float16 (no GPU)"


def choose(
    values: dict[str, Any], *, explicit: bool, flags: frozenset[str] | None = None, gpus: int | None = None
) -> tuple[dict[str, Any], PrecisionNotNative | None]:
    """The hyperparameters with the precision this machine runs well, and the notice to show (if any).

    `values` are a run's given hyperparameters (a recipe's, a config file's, the options');
    `explicit` says the precision in them was chosen by the user rather than by a recipe.
    A recipe's mixed precision that is not native becomes float32, and the config records
    it in `precision_downgraded_from`; an explicit one is kept.
    """
    requested = values.get("precision", FLOAT32)
    missing = lacking(requested, flags=flags, gpus=gpus)
    if missing is None:
        return values, None
    recipe = None if explicit else values.get("recipe")
    if explicit or recipe is None:
        return values, PrecisionNotNative(requested, requested, missing, None)
    changed = {**values, "precision": FLOAT32, "precision_downgraded_from": requested}
    return changed, PrecisionNotNative(requested, FLOAT32, missing, recipe)
