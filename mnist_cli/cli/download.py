"""`mnist download`: fetch a data set's four files from mirrors and verify them, with progress."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.console import Console
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    DownloadColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from mnist_cli.cli import app, common

if TYPE_CHECKING:
    from mnist_cli.data import download as dl

MirrorOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--mirror",
        "-m",
        metavar="URL_OR_DIR",
        help=(
            "Where to fetch from, tried in order: an http(s):// URL, a file:// URL or a folder holding the .gz "
            "files. Repeat for several. Replaces the built-in mirrors. \\[env var: MNIST_MIRROR, "
            "several separated by spaces or commas]"
        ),
        show_default=False,
    ),
]
_DEFAULT_DATASET = common.Dataset("mnist")
ForceOption = Annotated[bool, typer.Option("--force", "-f", help="Download again even if verified copies are present.")]


class DownloadReporter(common.Reporter):
    """Turns library events into a Rich bar per file on a terminal, or plain lines elsewhere."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.tasks: dict[str, TaskID] = {}

    def columns(self) -> tuple[Any, ...]:
        """A bar per file: name, bar, bytes, speed, time left."""
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
            self.say(f"  {common.safe(event.source)}: {common.safe(event.reason)}{then}")
        elif isinstance(event, dl.ExistingRejected):
            self.say(f"{event.name} on disk failed verification ({common.safe(event.reason)}); downloading it again")
        elif isinstance(event, dl.LockWaiting):
            self.say(f"waiting for another mnist process to finish with {common.safe(str(event.path.parent))}")
        elif isinstance(event, dl.FileDone) and self.progress and event.name in self.tasks:
            self.progress.update(self.tasks[event.name], completed=event.bytes, total=event.bytes)

    def _started(self, event: dl.FileStarted) -> None:
        size = decimal(event.total) if event.total is not None else "size unknown"
        if self.progress is None:
            if event.offset:
                self.say(f"  resuming {event.name} at {decimal(event.offset)} of {size}")
            elif event.name not in self.tasks:
                self.say(f"fetching {event.name} ({size}) from {common.safe(event.source)}")
            self.tasks[event.name] = TaskID(0)
            return
        if event.name in self.tasks:
            self.progress.reset(self.tasks[event.name], completed=event.offset, total=event.total)
        else:
            self.tasks[event.name] = self.progress.add_task(event.name, total=event.total, completed=event.offset)


def _print_result(result: dl.DownloadResult) -> None:
    from mnist_cli.data import download as dl

    width = max(len(item.name) for item in result.files) if result.files else 0
    for item in result.files:
        source = f"  from {item.source}" if item.status == "downloaded" and item.source else ""
        if item.verified_by == dl.UNVERIFIED:
            source += "  (unverified: IDX structure checked, digest not)"
        common.out.print(
            f"{item.status:<10}  {item.name:<{width}}  {decimal(item.bytes):>8}{common.safe(source)}",
            highlight=False,
            soft_wrap=True,
        )
    common.out.print(
        f"{result.dataset} ready in {common.safe(str(result.directory))} "
        f"({len(result.files)} files, {result.seconds:.1f} s)",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
@common.handles_errors
def download(
    dataset: common.DatasetOption = _DEFAULT_DATASET,
    data_dir: common.DataDirOption = None,
    mirror: MirrorOption = None,
    force: ForceOption = False,
    no_verify: Annotated[
        bool,
        typer.Option(
            "--no-verify",
            help="Take files that differ from the published ones (your own IDX files): their structure is still "
            "checked, the manifest records them as unverified, and later downloads keep them (--force replaces them).",
        ),
    ] = False,
    json_output: common.JsonOption = False,
    quiet: common.QuietOption = False,
) -> None:
    """Download a data set's four files, verify their digests, and skip files already verified."""
    from mnist_cli.data import download as dl  # here, not at import: `mnist --help` stays fast

    reporter = None if quiet else DownloadReporter(common.err)
    with reporter.live() if reporter else contextlib.nullcontext():
        result = dl.download(dataset.value, data_dir, mirrors=mirror, force=force, verify=not no_verify, on_event=reporter)
    if json_output:
        common.print_json(result.to_dict())
    else:
        _print_result(result)
