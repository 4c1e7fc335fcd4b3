"""`mnist serve` with settings the command line does not offer, for bench_serve.py's comparisons.

    python benchmarks/_serve.py TARGET '{"preprocessing": "threads"}'

Prints the same "serving at URL " line as `mnist serve`, then serves until SIGTERM.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mnist_cli.inference import loading  # noqa: E402
from mnist_cli.serving import server  # noqa: E402
from mnist_cli.serving.app import create_app  # noqa: E402
from mnist_cli.serving.config import ServeConfig  # noqa: E402


def main() -> None:
    target, overrides = sys.argv[1], json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}")
    config = ServeConfig(port=0, **overrides)
    server.limit_model_threads(config)
    sock = server.bind(config.host, config.port)
    url = server.url(sock, config.host)
    application = create_app(loading.load(target), config, on_ready=lambda: print(f"serving at {url} (bench)", flush=True))
    server.run(application, sock, config)


if __name__ == "__main__":
    main()
