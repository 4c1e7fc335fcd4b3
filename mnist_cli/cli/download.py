"""`mnist download`: fetch a data set's four files from mirrors and verify them, with progress."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.filesize import decimal

from mnist_cli.cli import common, options, progress
from mnist_cli.cli.lazy import command_app

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
_DEFAULT_DATASET = options.Dataset("mnist")
ForceOption = Annotated[bool, typer.Option("--force", "-f", help="Download again even if verified copies are present.")]


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


app = command_app()


@app.command()
@common.handles_errors
def download(
    dataset: options.DatasetOption = _DEFAULT_DATASET,
    data_dir: options.DataDirOption = None,
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
    json_output: options.JsonOption = False,
    quiet: options.QuietOption = False,
) -> None:
    """Download a data set's four files, verify their digests, and skip files already verified."""
    from mnist_cli.data import download as dl  # here, not at import: `mnist --help` stays fast

    with progress.downloads(common.err, quiet=quiet) as reporter:
        result = dl.download(dataset.value, data_dir, mirrors=mirror, force=force, verify=not no_verify, on_event=reporter)
    if json_output:
        common.print_json(result.to_dict())
    else:
        _print_result(result)
