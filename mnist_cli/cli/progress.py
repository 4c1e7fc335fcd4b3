"""Progress every command shares: the live-bar skeleton, and the download reporter."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.filesize import decimal

from mnist_cli.cli.common import safe
from mnist_cli.core.precision import PrecisionNotNative

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from mnist_cli.data import download as dl

# rich.progress is imported where bars are drawn: a command that fails on its arguments never needs it.


def plain_progress(console: Console) -> bool:
    """Whether to print plain lines instead of live bars (pipes, CI, dumb terminals)."""
    return not console.is_terminal or console.is_dumb_terminal


class Reporter:
    """Live Rich bars on a terminal, plain lines elsewhere: the skeleton every command's progress shares.

    A subclass gives the bar's columns (`columns`) and turns library events into bars
    and lines (`__call__`); `say` prints a line above the bars, or on its own when plain.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.plain = plain_progress(console)
        self.progress: Progress | None = None

    def columns(self) -> tuple[Any, ...]:
        """The Rich progress columns of this reporter's bars."""
        raise NotImplementedError

    @contextlib.contextmanager
    def live(self) -> Iterator[Any]:
        """Show the bars for the duration of the block (nothing to show when plain)."""
        if self.plain:
            yield self
            return
        from rich.progress import Progress

        self.progress = Progress(*self.columns(), console=self.console)
        try:
            with self.progress:
                yield self
        finally:
            self.progress = None

    def say(self, text: str) -> None:
        """A line above the bars, or on its own when plain."""
        (self.progress.console if self.progress else self.console).print(text, highlight=False, soft_wrap=True)


class DownloadReporter(Reporter):
    """Turns download events into a Rich bar per file on a terminal, or plain lines elsewhere."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.tasks: dict[str, TaskID] = {}

    def columns(self) -> tuple[Any, ...]:
        """A bar per file: name, bar, bytes, speed, time left."""
        from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeRemainingColumn, TransferSpeedColumn

        return (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())

    def __call__(self, event: dl.Event) -> None:
        from mnist_cli.data import download as dl

        if isinstance(event, dl.FileStarted):
            self._started(event)
        elif isinstance(event, dl.FileProgress):
            if self.progress and event.name in self.tasks:
                self.progress.update(self.tasks[event.name], completed=event.done, total=event.total)
        elif isinstance(event, dl.MirrorFailed):
            if event.retry_in is not None:
                then = f"; retrying in {event.retry_in:g} s"
            else:
                then = "; trying the next mirror" if event.more else ""
            self.say(f"  {safe(event.source)}: {safe(event.reason)}{then}")
        elif isinstance(event, dl.ExistingRejected):
            self.say(f"{event.name} on disk failed verification ({safe(event.reason)}); downloading it again")
        elif isinstance(event, dl.LockWaiting):
            self.say(f"waiting for another mnist process to finish with {safe(str(event.path.parent))}")
        elif isinstance(event, dl.FileDone) and self.progress and event.name in self.tasks:
            self.progress.update(self.tasks[event.name], completed=event.bytes, total=event.bytes)

    def _started(self, event: dl.FileStarted) -> None:
        size = decimal(event.total) if event.total is not None else "size unknown"
        if self.progress is None:
            if event.offset:
                self.say(f"  resuming {event.name} at {decimal(event.offset)} of {size}")
            elif event.name not in self.tasks:
                self.say(f"fetching {event.name} ({size}) from {safe(event.source)}")
            self.tasks[event.name] = 0  # type: ignore[assignment]  # a name seen, no bar
            return
        if event.name in self.tasks:
            self.progress.reset(self.tasks[event.name], completed=event.offset, total=event.total)
        else:
            self.tasks[event.name] = self.progress.add_task(event.name, total=event.total, completed=event.offset)


@contextlib.contextmanager
def downloads(console: Console, *, quiet: bool) -> Iterator[DownloadReporter | None]:
    """A download reporter showing its bars for the block, or None when quiet."""
    if quiet:
        yield None
        return
    reporter = DownloadReporter(console)
    with reporter.live():
        yield reporter


def precision_line(notice: PrecisionNotNative) -> str:
    """One line on a mixed precision this machine would only emulate (several times slower than float32)."""
    start = f"this machine has no {notice.lacking}"
    slower = "about 8x slower" if notice.requested == "mixed-bf16" else "several times slower"  # bf16: issue 22, on AVX2
    if notice.downgraded:
        return (
            f"note: {start}, so --recipe {notice.recipe} trains in {notice.used} instead of {notice.requested} "
            f"(emulated, {slower}); --precision {notice.requested} keeps it"
        )
    return f"warning: {start}: {notice.requested} is emulated here, {slower} than --precision float32"


def say_precision(console: Console, notice: PrecisionNotNative) -> None:
    """Print the precision notice as one line (train and tune share it)."""
    console.print(precision_line(notice), highlight=False, soft_wrap=True, markup=False)
