"""Listening: binding the address before the model loads, and running uvicorn until Ctrl-C or SIGTERM."""

from __future__ import annotations

import errno
import gc
import signal
import socket
from collections.abc import Callable
from typing import Any

from mnist_cli.core.errors import AddressError, UsageError
from mnist_cli.serving.config import ServeConfig

_BACKLOG = 2048


def bind(host: str, port: int, *, option: str = "--port") -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one), or AddressError saying why not (`option` sets the port)."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError):
        raise UsageError(f"--host {host!r} is not an address or a known host name", "use 127.0.0.1, or 0.0.0.0 for every interface") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # Lets a restarted server take its port back from connections in TIME_WAIT; a port
        # another server listens on is still refused.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        # Listening at once: clients that connect while the model loads wait in the backlog.
        sock.listen(_BACKLOG)
    except OSError as exc:
        sock.close()
        where = f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise AddressError(
                f"port {port} on {host} is already in use", f"stop the other server, or choose another {option} (0 picks a free one)"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise AddressError(f"{host} is not an address of this machine", "use 127.0.0.1, or 0.0.0.0 for every interface") from None
        if exc.errno == errno.EACCES:
            raise AddressError(f"listening on {where} needs privileges this user lacks", "use a port above 1023") from None
        raise AddressError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    return sock


def limit_model_threads(config: ServeConfig) -> None:
    """Before TensorFlow starts: each model call on `config.model_threads` threads (0 leaves TensorFlow's default)."""
    if config.model_threads:
        from mnist_cli.core.tf_setup import limit_op_threads

        limit_op_threads(config.model_threads)


def address(sock: socket.socket, host: str) -> str:
    """host:port for a client of a bound socket (an address of every interface shown as loopback)."""
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else f"[{host}]" if ":" in host else host
    return f"{shown}:{port}"


def url(sock: socket.socket, host: str) -> str:
    """The address to open in a browser for a bound socket."""
    return f"http://{address(sock, host)}/"


def run(
    app: Any,
    sock: socket.socket,
    config: ServeConfig,
    *,
    grpc_sock: socket.socket | None = None,
    on_request: Callable[[Any], None] | None = None,
    on_stopping: Callable[[str], None] | None = None,
) -> str | None:
    """Serve `app` on `sock` (and the gRPC APIs on `grpc_sock`) until Ctrl-C or SIGTERM; in-flight requests finish.

    `on_request` hears of every gRPC call (the app reports HTTP requests itself). Returns the signal's name, if any.
    """
    import uvicorn

    grpc_server = None
    if grpc_sock is not None:
        from mnist_cli.serving.grpc_api import GrpcServer

        grpc_server = GrpcServer(app.state.serving, grpc_sock, config.host, on_request=on_request)

    class Server(uvicorn.Server):
        stopped_by: str | None = None

        def handle_exit(self, sig: int, frame: Any) -> None:
            # uvicorn re-raises the signal once it has shut down, which would end the process
            # with 130 or -15; `mnist serve` stops on purpose here, so it exits 0.
            if self.stopped_by is None:
                self.stopped_by = signal.Signals(sig).name
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True  # a second Ctrl-C: stop waiting for requests in flight
            else:
                self.should_exit = True

        async def startup(self, sockets: Any = None) -> None:
            # gRPC first: it listens by the time the address line says the server is ready.
            if grpc_server is not None:
                await grpc_server.start()
            await super().startup(sockets=sockets)

        async def shutdown(self, sockets: Any = None) -> None:
            if on_stopping is not None:
                on_stopping(self.stopped_by or "shutdown")
            if grpc_server is not None:  # before the batcher stops with the app: RPCs in flight still need it
                await grpc_server.stop(config.shutdown_timeout_s)
            await super().shutdown(sockets=sockets)

    server = Server(
        uvicorn.Config(
            app,
            lifespan="on",
            log_level="warning",
            access_log=False,  # the app logs each request itself, with its duration
            server_header=False,
            limit_concurrency=config.max_connections,
            timeout_graceful_shutdown=config.shutdown_timeout_s,
            timeout_keep_alive=5,
        )
    )
    # Everything alive now (TensorFlow's, Keras' and the model's objects, hundreds of thousands)
    # lives as long as the server. Frozen, they are no longer scanned by each full collection,
    # which under load stalled every request in flight: p99 at 32 clients on the TF Serving
    # API fell from 250-315 ms to 49-55 ms (benchmarks/RESULTS.md, section 6).
    gc.collect()
    gc.freeze()
    server.run(sockets=[sock])
    return server.stopped_by
