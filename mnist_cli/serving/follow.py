"""Following a run while it trains: each new complete checkpoint becomes a model version, each epoch a point on the curves.

A checkpoint is complete once the checkpoint directory's state file names it: TensorFlow's
CheckpointManager writes the checkpoint's files first and then replaces the state file
atomically, so a checkpoint being written is never looked at. The follower polls the state
file and history.json (read with the run readers, strictly: they are untrusted) from one
thread; loading, tracing and swapping happen there too, so requests never wait for them.
Only the newest `KEEP_VERSIONS` versions stay loaded: memory stays flat however long the
run trains.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mnist_cli.core.config import CONFIG_FILE
from mnist_cli.core.errors import MnistError, UsageError
from mnist_cli.runs import checkpoint_state, layout, runs

KEEP_VERSIONS = 2  # the current version and the one before it (requests may still hold it)
POLL_S = 0.25  # how often the run's files are looked at


@dataclass(frozen=True)
class VersionNote:
    """A model version as the page shows it: its number (the step), epoch and where it came from."""

    version: int
    epoch: int | None
    partial: bool
    source: str


@dataclass(frozen=True)
class RunView:
    """What `/events` tells the page: the run's history, the versions loaded and the current one."""

    revision: int = 0
    run: str | None = None
    history: tuple[dict[str, Any], ...] = ()
    versions: tuple[VersionNote, ...] = ()
    current: int | None = None
    following: bool = False
    problem: str | None = None  # why the newest checkpoint or history could not be read, if so

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {
            "revision": self.revision,
            "run": self.run,
            "history": list(self.history),
            "versions": [note.__dict__ for note in self.versions],
            "current": self.current,
            "following": self.following,
            "problem": self.problem,
        }


@dataclass
class Feed:
    """The run's view, changed from any thread; `/events` subscribers wait for the next revision."""

    view: RunView = field(default_factory=RunView)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _changed: asyncio.Event | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake subscribers on `loop` (the server's event loop) from now on."""
        self._loop, self._changed = loop, asyncio.Event()

    def publish(self, **changes: Any) -> None:
        """Replace some of the view's fields and wake every subscriber."""
        with self._lock:
            self.view = replace(self.view, revision=self.view.revision + 1, **changes)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        if changed is not None:
            changed.set()

    async def next_view(self, after: int, *, timeout: float) -> RunView | None:
        """The view once its revision passes `after`, or None after `timeout` seconds without a change."""
        view = self.view
        if view.revision > after:
            return view
        changed = self._changed
        if changed is None:
            await asyncio.sleep(timeout)
            return None
        try:
            await asyncio.wait_for(changed.wait(), timeout)
        except asyncio.TimeoutError:
            return None
        return self.view


def note_of(version: int, loaded: Any) -> VersionNote:
    """The page's note for a loaded model version."""
    source = loaded.source
    return VersionNote(version=version, epoch=source.epoch, partial=source.partial, source=Path(source.path).name)


def newest_complete(run_dir: Path) -> Path | None:
    """The checkpoint prefix the run's state file names, once its index is there; None before the first one."""
    directory = Path(run_dir) / layout.CHECKPOINTS_DIR
    state = checkpoint_state.read_checkpoint_state(directory)
    if state is None:
        return None
    # Only the file name counts: a state file never sends the loader outside its directory.
    prefix = directory / Path(state.latest).name
    return prefix if Path(f"{prefix}.index").is_file() else None


def run_to_follow(target: Path | str | None, *, runs_root: Path | None = None) -> Path:
    """The run directory `--follow` watches: `target`, else the most recent run; UsageError when it is not a run."""
    run_dir = runs.latest_run(runs.runs_root(runs_root)) if target is None else Path(target)
    if not run_dir.is_dir():
        raise UsageError(f"--follow needs a run directory, got {run_dir}", "give the run directory `mnist train` writes (it may not have a checkpoint yet)")
    return run_dir


def wait_for_first(run_dir: Path, *, on_wait: Callable[[], None] | None = None, poll_s: float = POLL_S) -> Path:
    """Block until the run has a complete checkpoint and its config.json, and return the checkpoint's prefix."""
    waited = False
    while True:
        prefix = newest_complete(run_dir)
        if prefix is not None and (Path(run_dir) / CONFIG_FILE).is_file():
            return prefix
        if not waited and on_wait is not None:
            on_wait()
        waited = True
        time.sleep(poll_s)  # Ctrl-C ends the wait


Load = Callable[[Path], Any]  # a checkpoint prefix -> a Loaded model
Install = Callable[[int, Any], None]  # (version, loaded) -> ready to answer, then made current
Retire = Callable[[int], None]  # version -> no longer held


class Follower:
    """A thread that turns each new complete checkpoint of `run_dir` into a version, and each epoch into the feed."""

    def __init__(
        self,
        run_dir: Path,
        feed: Feed,
        *,
        load: Load,
        install: Install,
        retire: Retire,
        current: tuple[int, Any] | None = None,
        keep: int = KEEP_VERSIONS,
        poll_s: float = POLL_S,
    ) -> None:
        self.run_dir, self.feed, self.keep, self.poll_s = Path(run_dir), feed, keep, poll_s
        self._load, self._install, self._retire = load, install, retire
        self._held: list[VersionNote] = [note_of(*current)] if current else []
        self._seen_checkpoint: str | None = current[1].source.path if current else None
        self._history_stamp: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="follow-run", daemon=True)
        feed.publish(run=self.run_dir.name, following=True, versions=tuple(self._held), current=current[0] if current else None)

    def start(self) -> None:
        """Start watching (returns at once)."""
        self.poll()
        self._thread.start()

    def stop(self) -> None:
        """Stop watching and wait for a load in progress to finish."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll()

    def poll(self) -> None:
        """Look at the run's files once: a new history, a new complete checkpoint."""
        problem = None
        try:
            self._read_history()
            self._take_checkpoint()
        except MnistError as exc:  # a damaged file now may be whole at the next look; the server goes on
            problem = exc.message
        except OSError as exc:
            problem = f"reading {self.run_dir}: {exc.strerror or exc}"
        if problem != self.feed.view.problem:
            self.feed.publish(problem=problem)

    def _read_history(self) -> None:
        path = self.run_dir / layout.HISTORY_FILE
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp == self._history_stamp:
            return
        history = runs.load_history(self.run_dir)
        self._history_stamp = stamp
        self.feed.publish(history=tuple(history))

    def _take_checkpoint(self) -> None:
        prefix = newest_complete(self.run_dir)
        if prefix is None or str(prefix) == self._seen_checkpoint:
            return
        self._seen_checkpoint = str(prefix)  # tried once: a broken one is reported, not reloaded every poll
        loaded = self._load(prefix)
        version = loaded.source.step or (max((n.version for n in self._held), default=0) + 1)
        if any(note.version == version for note in self._held):
            return
        self._install(version, loaded)
        self._held.append(note_of(version, loaded))
        while len(self._held) > self.keep:
            self._retire(self._held.pop(0).version)
        self.feed.publish(versions=tuple(self._held), current=version)


def show_run(feed: Feed, loaded: Any, version: int) -> None:
    """Put a served run's history and its one version on the feed (a server that does not follow)."""
    run_dir = loaded.source.run_dir
    history: tuple[dict[str, Any], ...] = ()
    problem = None
    if run_dir:
        try:
            history = tuple(runs.load_history(Path(run_dir)))
        except MnistError as exc:
            problem = exc.message
    feed.publish(run=Path(run_dir).name if run_dir else None, history=history, versions=(note_of(version, loaded),), current=version, problem=problem)


def follower_for(state: Any, feed: Feed, run_dir: Path) -> Follower:
    """A Follower that loads each new checkpoint into `state`'s registry (serving.state.ServingState)."""
    from mnist_cli.inference import loading
    from mnist_cli.serving.models import make_servable
    from mnist_cli.serving.routers import explain

    def install(version: int, loaded: Any) -> None:
        servable = make_servable(loaded, version, state.config)  # traced and sized before it takes requests
        explain.prepare(servable)
        state.models.add(servable)

    current = state.models.current()
    # Each version runs in float32, as the first one and `mnist predict` do: never emulated bf16.
    return Follower(run_dir, feed, load=functools.partial(loading.load, float32=True), install=install, retire=state.models.remove, current=(current.version, current.loaded))
