"""`mnist serve`: keep a model loaded behind a page to draw digits on and an HTTP API (ours and TF Serving's)."""

from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

from mnist_cli.cli import common, options, progress
from mnist_cli.cli.lazy import command_app
from mnist_cli.serving.config import MIB, ServeConfig

_DEFAULT = ServeConfig()
app = command_app()
_PATH_SHOWN = 200  # characters of a request path in the log line


@app.command()
@common.handles_errors
def serve(
    target: options.TargetArgument = None,
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 lets other machines in.")] = _DEFAULT.host,
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = _DEFAULT.port,
    grpc_port: Annotated[
        Optional[int], typer.Option(help="Also serve TF Serving's gRPC API on this port (TF Serving uses 8500); 0 picks a free one.")
    ] = _DEFAULT.grpc_port,
    batching: Annotated[
        bool, typer.Option("--batching/--no-batching", help="Let concurrent requests share one model call (dynamic batching).")
    ] = _DEFAULT.batching,
    max_batch_size: Annotated[int, typer.Option(help="Most images in one batched model call.")] = _DEFAULT.max_batch_size,
    batch_wait_ms: Annotated[
        float, typer.Option(help="How long the oldest waiting request waits for others to share its model call.")
    ] = _DEFAULT.batch_wait_ms,
    max_instances: Annotated[int, typer.Option(help="Most pictures or TF Serving instances in one request.")] = _DEFAULT.max_instances,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body, in MiB; larger ones are refused unread.")] = (
        _DEFAULT.max_body_bytes / MIB
    ),
    body_timeout: Annotated[
        float, typer.Option(help="Seconds a client has to send its whole body; slower ones are cut off (408).")
    ] = _DEFAULT.body_timeout_s,
    model_name: Annotated[str, typer.Option(help="The model's name in TF Serving's URLs, /v1/models/NAME:predict.")] = _DEFAULT.model_name,
    model_threads: Annotated[
        int, typer.Option(help="Threads of each model call (TF Serving's intra-op parallelism); 0: one per core.")
    ] = _DEFAULT.model_threads,
    runs_root: options.RunsRootOption = None,
    follow: Annotated[
        bool, typer.Option("--follow", help="Serve a run while it trains: each new complete checkpoint is swapped in as a model version.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No line per request; only the address, warnings and errors.")] = False,
) -> None:
    """Serve a trained model: a page to draw digits on, POST /predict, and TensorFlow Serving's REST API."""
    config = ServeConfig(
        host=host,
        port=port,
        grpc_port=grpc_port,
        batching=batching,
        max_batch_size=max_batch_size,
        batch_wait_ms=batch_wait_ms,
        max_instances=max_instances,
        max_body_bytes=int(max_body_mb * MIB),
        body_timeout_s=body_timeout,
        model_name=model_name,
        model_threads=model_threads,
    )
    from mnist_cli.serving import server

    server.limit_model_threads(config)  # before the model's load starts TensorFlow

    # The address first: a port in use is reported in milliseconds, before the model loads.
    sock = server.bind(config.host, config.port)
    grpc_sock = None
    try:
        if config.grpc_port is not None:
            grpc_sock = server.bind(config.host, config.grpc_port, option="--grpc-port")
        from mnist_cli.inference import loading

        if not quiet:  # TensorFlow's import and the model's load take a few seconds
            common.err.print(f"loading {escape(str(target)) if target else 'the most recent run'}…", highlight=False)
        run_dir = None
        if follow:
            from mnist_cli.serving import follow as following

            run_dir = following.run_to_follow(target, runs_root=runs_root)
            import mnist_cli.serving.app  # noqa: F401 - TensorFlow's import while the first epoch trains, not after it
            waiting = lambda: common.err.print(f"waiting for the first checkpoint of {escape(str(run_dir))}…", highlight=False)  # noqa: E731
            loaded = loading.load(following.wait_for_first(run_dir, on_wait=None if quiet else waiting), float32=True)
        else:
            loaded = loading.load(target, runs_root=runs_root, float32=True)  # as `mnist predict` runs it, never emulated bf16
        from mnist_cli.serving.app import create_app  # imports TensorFlow

        url = server.url(sock, config.host)
        on_request = None if quiet else _log_request
        grpc_address = server.address(grpc_sock, config.host) if grpc_sock else None
        application = create_app(
            loaded, config, on_request=on_request, on_ready=lambda: _announce(loaded, config, url, grpc_address), follow=run_dir
        )
        stopped_by = server.run(application, sock, config, grpc_sock=grpc_sock, on_request=on_request, on_stopping=_stopping)
    finally:
        sock.close()
        if grpc_sock is not None:
            grpc_sock.close()
    common.err.print(f"stopped{f' ({stopped_by})' if stopped_by else ''}", highlight=False)


def _announce(loaded: Any, config: ServeConfig, url: str, grpc_address: str | None = None) -> None:
    from mnist_cli.serving.app import model_info

    info = model_info(loaded, config)
    what = f"{info['architecture'] or 'model'} on {info['dataset'] or 'an unknown data set'}"
    if info["test_accuracy"] is not None:
        what += f", test accuracy {info['test_accuracy']:.2%}"
    common.err.print(f"model {escape(loaded.source.describe())}: {escape(what)}", highlight=False, soft_wrap=True)
    batching = (
        f"batching up to {config.max_batch_size} images, waiting at most {config.batch_wait_ms:g} ms"
        if config.batching
        else "batching off: one model call per request"
    )
    common.err.print(batching, highlight=False)
    if config.reachable_by_others:
        common.err.print(
            f"[bold yellow]warning:[/] listening on every interface ({escape(config.host or '*')}): anyone who can reach this machine can use the server",
            highlight=False,
            soft_wrap=True,
        )
    if grpc_address:
        from mnist_cli.serving.grpc_v2 import AVAILABLE as with_v2

        also = " and the Open Inference Protocol's" if with_v2 else ""
        common.err.print(f"gRPC at {escape(grpc_address)}: TF Serving's API{also}", highlight=False)
    # The address goes to standard output, alone on its line, for people and for scripts.
    from mnist_cli.serving.launch import serving_line

    common.out.print(escape(serving_line(url)), highlight=False, soft_wrap=True)
    sys.stdout.flush()


def clipped(text: str, *, limit: int = _PATH_SHOWN) -> str:
    """`text` with control and other unprintable characters as \\xNN escapes, cut to `limit` characters."""
    shown = "".join(char if char.isprintable() else f"\\x{ord(char):02x}" for char in text[: limit + 1])
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _log_request(entry: Any) -> None:
    line = f"{entry.method} {clipped(entry.path)} {entry.status} {entry.milliseconds:.1f} ms"
    if progress.plain_progress(common.err):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    else:
        colour = "green" if entry.status < 400 else "yellow" if entry.status < 500 else "red"
        common.err.print(line, style=colour, markup=False, highlight=False, soft_wrap=True)


def _stopping(signal_name: str) -> None:
    common.err.print(f"stopping ({signal_name}): finishing the requests in flight", highlight=False)
