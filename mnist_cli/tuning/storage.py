"""Where a study lives: Optuna storage URLs (redacted for printing), opening them, and the locks workers share.

Only `open_storage` and the locks import Optuna or SQLAlchemy, and only when called.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mnist_cli.core.errors import StorageError
from mnist_cli.runs import layout

HEARTBEAT_ENV = "MNIST_TUNE_HEARTBEAT"  # seconds between heartbeats; tests shorten it
DEFAULT_HEARTBEAT = 10
GRACE_FACTOR = 3  # a trial is stale after this many missed heartbeats
_SQLITE_FILE = re.compile(r"^sqlite(\+\w+)?:///(.+)$")


def default_storage(runs_root: Path, study: str) -> str:
    """The SQLite file in the runs root that holds a study by default."""
    return f"sqlite:///{layout.study_database(runs_root, study).resolve()}"


def redact(url: str) -> str:
    """The storage URL with its password hidden, for messages and output."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL: show its scheme only, it may hold a password
        return url.split("://", 1)[0] + "://***" if "://" in url else "***"


def _password(url: str) -> str | None:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).password
    except Exception:
        return None


def quiet_optuna() -> Any:
    """The optuna module, with its info logs and experimental-feature warnings off."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def heartbeat_interval() -> int:
    """Seconds between a running trial's heartbeats ($MNIST_TUNE_HEARTBEAT, default 10)."""
    value = os.environ.get(HEARTBEAT_ENV, "")
    return int(value) if value.isdigit() and int(value) >= 1 else DEFAULT_HEARTBEAT


def _connect_args(url: str) -> dict[str, Any]:
    scheme = url.split(":", 1)[0].lower()
    if scheme.startswith("sqlite"):
        # Several processes write one SQLite file; wait for each other's locks instead of failing.
        return {"connect_args": {"timeout": 60}}
    if scheme.startswith(("postgres", "mysql")):
        return {"connect_args": {"connect_timeout": 10}}
    return {}


def open_storage(url: str, *, heartbeat: bool = True) -> Any:
    """An Optuna RDB storage for `url`; a failure to reach or open it is a StorageError."""
    optuna = quiet_optuna()
    interval = heartbeat_interval()
    for attempt in range(3):
        try:
            with _creation_lock(url):
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=_connect_args(url),
                    heartbeat_interval=interval if heartbeat else None,
                    grace_period=GRACE_FACTOR * interval if heartbeat else None,
                )
        except Exception as exc:  # drivers raise their own types; every one means "cannot use this storage"
            # Two processes creating a new database's tables at once: one loses the race, and retries.
            if attempt < 2 and type(exc).__name__ in ("IntegrityError", "ProgrammingError"):
                time.sleep(1.0 + attempt)
                continue
            raise storage_error(url, exc) from None
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _creation_lock(url: str) -> Iterator[None]:
    # An SQLite file's tables are created under the same lock file as the study's counting.
    match = _SQLITE_FILE.match(url)
    if match is None or match.group(2) == ":memory:" or not Path(match.group(2)).parent.is_dir():
        yield
        return
    import filelock

    with filelock.FileLock(f"{match.group(2)}.lock"):
        yield


def storage_error(url: str, exc: BaseException) -> StorageError:
    """The StorageError for a storage that failed with `exc`: its first line, the password never shown."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    reason = re.sub(r"\(Background on this error at: .*\)", "", reason).strip()
    password = _password(url)
    if password:
        reason = reason.replace(password, "***")
    hint = "check the --storage URL, that the database server is up and reachable, and its user and password"
    if isinstance(exc, ModuleNotFoundError) or "DB access module" in reason:
        # SQLAlchemy 2.1 uses psycopg 3 for postgresql:// (postgresql+psycopg2:// asks for psycopg2).
        hint = "install the database's Python driver: pip install \"psycopg[binary]\" for PostgreSQL, pymysql for mysql+pymysql://"
    return StorageError(f"cannot open the study storage {redact(url)}: {reason}", hint)


_ADVISORY_LOCKS = {
    "postgresql": ("SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"),
    "mysql": ("SELECT GET_LOCK(CAST(:key AS CHAR), 600)", "SELECT RELEASE_LOCK(CAST(:key AS CHAR))"),
    "mariadb": ("SELECT GET_LOCK(CAST(:key AS CHAR), 600)", "SELECT RELEASE_LOCK(CAST(:key AS CHAR))"),
}


@contextlib.contextmanager
def study_lock(storage: Any, study: str) -> Iterator[None]:
    """Mutual exclusion between workers of a study, for the instant they count and queue a trial."""
    engine = storage.engine
    dialect = engine.dialect.name
    if dialect == "sqlite":
        import filelock

        database = engine.url.database
        if database and database != ":memory:":
            with filelock.FileLock(f"{database}.lock"):
                yield
            return
        yield
        return
    if dialect not in _ADVISORY_LOCKS:  # no cross-process lock known for this database: workers may overshoot by one trial each
        yield
        return
    from sqlalchemy import text

    acquire, release = _ADVISORY_LOCKS[dialect]
    key = int.from_bytes(hashlib.sha256(f"mnist-tune:{study}".encode()).digest()[:8], "big", signed=True)
    with engine.connect() as connection:
        connection.execute(text(acquire), {"key": key})
        try:
            yield
        finally:
            connection.execute(text(release), {"key": key})
            connection.commit()
