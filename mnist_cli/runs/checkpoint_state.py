"""The state file a checkpoint folder keeps (which checkpoint is newest), read strictly: it is untrusted."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from mnist_cli.core.errors import ModelError
from mnist_cli.core.safeio import UnsafeFile
from mnist_cli.runs.layout import CHECKPOINT_STATE

_STATE_LIMIT = 1024 * 1024  # a state file lists a few checkpoints; a real one is a few hundred bytes
_STATE_LINE = re.compile(r'^\s*([a-z_]+)\s*:\s*(?:"((?:[^"\\\n]|\\.)*)"|([-+0-9.eE]+))\s*$')
_STATE_PATHS = ("model_checkpoint_path", "all_model_checkpoint_paths")
_STATE_NUMBERS = ("all_model_checkpoint_timestamps", "last_preserved_timestamp")
_CHECKPOINT_NAME = re.compile(r"^.+-(\d+)$")  # ckpt-N, or any prefix-N a user saved


@dataclass(frozen=True)
class CheckpointState:
    """A checkpoint directory's state file: the newest checkpoint and every one it records, as written."""

    latest: str
    paths: tuple[str, ...]


def checkpoints_in(directory: Path) -> list[str]:
    """The complete-looking checkpoints (name-N with an .index) in a directory, oldest first."""
    found = []
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    for name in names:
        match = _CHECKPOINT_NAME.match(name[: -len(".index")]) if name.endswith(".index") else None
        if match:
            found.append((int(match.group(1)), name[: -len(".index")]))
    return [name for _, name in sorted(found)]


def state_refused(state: Path, reason: str) -> ModelError:
    """The error for a checkpoint state file that cannot be used, saying which checkpoints are there."""
    present = checkpoints_in(state.parent)
    if present:
        hint = (
            f"checkpoints there: {', '.join(present)}; to use the newest, replace {state} "
            f"with the single line: model_checkpoint_path: \"{present[-1]}\""
        )
    else:
        hint = f"no checkpoint is left in {state.parent}; move the folder away and train again"
    return ModelError(f"{state} {reason}; refusing to use it", hint)


def read_checkpoint_state(directory: Path) -> CheckpointState | None:
    """Parse a checkpoint directory's state file strictly; None when there is none, ModelError when it is damaged."""
    state = Path(directory) / CHECKPOINT_STATE
    try:
        text = _read_small_text(state)
    except FileNotFoundError:
        return None
    except UnsafeFile as exc:
        raise state_refused(state, str(exc)) from None
    except OSError as exc:
        raise state_refused(state, f"cannot be read ({exc.strerror or exc})") from None
    latest: str | None = None
    paths: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _STATE_LINE.match(line)
        key = match.group(1) if match else None
        is_path = match is not None and match.group(2) is not None and key in _STATE_PATHS
        is_number = match is not None and match.group(3) is not None and key in _STATE_NUMBERS
        if not (is_path or is_number):
            raise state_refused(state, f"is damaged (line {number} is not a checkpoint record)")
        if is_path:
            value = match.group(2).replace("\\\\", "\\").replace('\\"', '"')
            paths.append(value)
            if key == "model_checkpoint_path":
                latest = value
    if latest is None:
        raise state_refused(state, "names no checkpoint")
    return CheckpointState(latest=latest, paths=tuple(paths))


def _read_small_text(path: Path) -> str:
    """A small UTF-8 text file from a run directory (regular file only, size-capped)."""
    from mnist_cli.core.safeio import read_text

    return read_text(path, limit=_STATE_LIMIT)
