"""`mnist export`: write a trained model as a Keras file, a SavedModel or TFLite."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.filesize import decimal

from mnist_cli.cli import common, options
from mnist_cli.cli.lazy import command_app
from mnist_cli.runs.layout import EXPORT_FORMATS

Format = options.choices_enum("Format", EXPORT_FORMATS)
app = command_app()


@app.command()
@common.handles_errors
def export(
    target: options.TargetArgument = None,
    export_format: Annotated[Format, typer.Option("--format", help="keras: a .keras file; savedmodel: TF Serving; tflite: mobile.")] = Format("savedmodel"),
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Where to write \\[default: <run>/export/<model.keras|saved_model|model.tflite>].", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing export.")] = False,
    runs_root: options.RunsRootOption = None,
    json_output: options.JsonOption = False,
) -> None:
    """Export a trained model; the SavedModel's serving signature takes uint8 [N, 28, 28] images and scales them itself."""
    from mnist_cli.inference import loading

    loaded = loading.load(target, runs_root=runs_root)  # a wrong target fails before TensorFlow is imported
    from mnist_cli.inference import export as exporting
    source = loaded.source
    destination = output or exporting.default_output(
        Path(source.run_dir) if source.run_dir else None, Path(source.path), export_format.value
    )
    result = exporting.export_model(loaded.model, export_format=export_format.value, output=destination, overwrite=force)
    if json_output:
        common.print_json({**result.to_dict(), "source": source.to_dict()})
        return
    common.out.print(
        f"exported {common.safe(source.describe())}\n"
        f"     to {common.safe(result.path)} ({result.format}, {decimal(result.bytes)})\n"
        f"checked: same predictions on {result.checked_images} images, max |logit difference| {result.max_abs_logit_difference:.2g}",
        highlight=False,
        soft_wrap=True,
    )
