"""Opening a study storage: Optuna's own `RDBStorage`, tuned for several workers, with one-line errors.

SQLite gets WAL mode and a long busy timeout (several local workers and a dashboard share one file without
"database is locked"); PostgreSQL gets a connect timeout and connection pre-ping. Every storage rides out
an outage (a server restart, a failover) of up to its outage timeout (`aiq_search.study._outage`); one that cannot
be reached when it is opened is a one-line error after a short retry. Heartbeats, when asked for, come with
Optuna's retry of a dead worker's trial, which starts clean (`aiq_search._compat.CleanStaleTrialRetry`).
Every reader and writer of studies opens them here, so they all behave alike. Readers open with
``create=False``, which never creates or migrates a schema; ``read_only=True`` (a shared dashboard) never
writes at all, and an SQLite file this process may not write (or whose folder it may not write: WAL needs
its ``-shm`` file there) is opened read-only too, so a shared, write-protected study can be read.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import urllib.parse
import warnings
from pathlib import Path
from typing import Any

import sqlalchemy
import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning, StorageInternalError
from sqlalchemy.engine import URL, make_url

from aiq_search._compat import OPTUNA_TABLE, CleanStaleTrialRetry
from aiq_search.errors import StorageError
from aiq_search.study._outage import OUTAGE_TIMEOUT_S, RetryingStorage, first_line

__all__ = ["STALE_REASON", "holds_optuna_storage", "open_storage", "read_only_here", "redact"]

# SQLite waits this long for another worker's write lock instead of failing with "database is locked".
SQLITE_BUSY_TIMEOUT_S = 120
POSTGRES_CONNECT_TIMEOUT_S = 10
# A storage that refuses connections when it is opened is retried this long (a restart in progress), not
# for the whole outage timeout: a wrong host or port is reported soon.
OPEN_RETRY_S = 5.0
# Why a trial failed when no reason was recorded with it: Optuna's heartbeat check failed it because its
# worker stopped (killed, or cut off from the database for longer than the grace period).
STALE_REASON = "its worker stopped sending heartbeats (killed or lost)"
# Query parameters of a URL that carry credentials (libpq's and common driver spellings).
_SECRET_KEYS = ("password", "passwd", "pwd", "sslpassword", "token", "secret", "key", "auth")


def redact(storage_url: str) -> str:
    """The storage URL with every credential masked (user info's password and credential-bearing query
    parameters), for messages and records. A URL that cannot be parsed is never echoed: only its scheme."""
    try:
        url = make_url(storage_url)
        query = {k: ("***" if any(s in k.lower() for s in _SECRET_KEYS) else v) for k, v in url.query.items()}
        return url.set(query=query).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")
    except (sqlalchemy.exc.ArgumentError, ValueError, TypeError):
        scheme = str(storage_url).partition("://")[0] if "://" in str(storage_url) else "?"
        return f"<unparseable {scheme[:20]} URL>"


def _sqlite_file(url: str) -> Path | None:
    """The database file of an SQLite URL (None for in-memory or non-SQLite URLs)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _prepare_sqlite(path: Path) -> None:
    """WAL lets workers read while one writes; the mode is stored in the file, so setting it once is enough."""
    if path.exists() and not path.is_file():
        raise StorageError(f"the SQLite study database {path} is not a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
        connection.close()
    except FileExistsError as exc:  # mkdir met a file where a folder should be
        raise StorageError(f"cannot create the SQLite study database {path}: {exc.filename} is not a folder"
                           ) from None
    except (OSError, sqlite3.Error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise StorageError(f"cannot create or open the SQLite study database {path}: {reason}") from None


def _read_only_sqlite(path: Path) -> str:
    """An SQLAlchemy URL opening ``path`` read-only through SQLite's URI filenames: ``mode=ro``, else (a WAL
    database in a folder where its ``-shm`` file cannot be made, so no writer is active on it) ``immutable=1``,
    which reads the file as it is now."""
    location = "file:" + urllib.parse.quote(str(path.resolve()))
    reason: sqlite3.Error | None = None
    for mode in ("mode=ro", "immutable=1"):
        try:
            with contextlib.closing(sqlite3.connect(f"{location}?{mode}", uri=True,
                                                    timeout=SQLITE_BUSY_TIMEOUT_S)) as connection:
                connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return f"sqlite:///{location}?{mode}&uri=true"
        except sqlite3.Error as exc:
            reason = exc
    raise StorageError(f"cannot open the SQLite study database {path} read-only: {reason}")


def read_only_here(url: str) -> bool:
    """Whether readers open ``url`` read-only because this process may not write it: an SQLite file, or its
    folder (where its journal files live), that is write-protected for this user."""
    try:
        path = _sqlite_file(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return False
    return path is not None and path.is_file() and not (os.access(path, os.W_OK)
                                                       and os.access(path.parent, os.W_OK))


def holds_optuna_storage(url: str | URL, engine_kwargs: dict[str, Any]) -> bool:
    """Whether the database has Optuna's tables (`aiq_search._compat.OPTUNA_TABLE`), asked without creating
    anything."""
    engine = sqlalchemy.create_engine(url, **engine_kwargs)
    try:
        return OPTUNA_TABLE in sqlalchemy.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def open_storage(url: str, *, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 max_retry: int = 3, create: bool = True, read_only: bool = False,
                 outage_timeout: float = OUTAGE_TIMEOUT_S) -> RetryingStorage:
    """Optuna's `RDBStorage` for ``url``, tuned for several workers, with heartbeats when an interval is given,
    riding out outages of up to ``outage_timeout`` seconds.

    ``create=False`` (readers, joining workers) refuses an SQLite file that does not exist and a database
    without Optuna's tables, and never creates or migrates a schema; it opens an SQLite file this process may
    not write read-only. ``read_only=True`` (implies ``create=False``) never writes: SQLite read-only,
    PostgreSQL sessions in read-only transactions. A storage that cannot be reached is a one-line
    `StorageError` naming the URL (credentials masked) and the cause.
    """
    create = create and not read_only
    try:
        sqlite_file = _sqlite_file(url)
        backend = make_url(url).get_backend_name()
    except (sqlalchemy.exc.ArgumentError, ValueError) as exc:
        raise StorageError(f"not a storage URL: {redact(url)} ({type(exc).__name__})") from None
    engine_kwargs: dict[str, Any]
    opened = url  # what the engine opens: the URL as given, or a read-only spelling of it
    if sqlite_file is not None:
        if create:
            _prepare_sqlite(sqlite_file)
        elif not sqlite_file.is_file():  # SQLAlchemy would silently create an empty database
            raise StorageError(f"no SQLite study database at {sqlite_file}")
        if read_only or (not create and read_only_here(url)):
            opened = _read_only_sqlite(sqlite_file)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    elif backend == "postgresql":
        engine_kwargs = {"connect_args": {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
        if read_only:  # the server refuses every write of these sessions
            engine_kwargs["connect_args"]["options"] = "-c default_transaction_read_only=on"
    else:
        engine_kwargs = {"pool_pre_ping": True}
    deadline = time.monotonic() + OPEN_RETRY_S
    while True:
        try:
            if not create and not holds_optuna_storage(opened, engine_kwargs):
                raise StorageError(f"{redact(url)} holds no Optuna storage (no study was ever created there)")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeats are experimental in Optuna
                heartbeat: dict[str, Any] = {}
                if heartbeat_interval is not None:
                    heartbeat = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period,
                                 "heartbeat_stale_trial_callback": CleanStaleTrialRetry(max_retry=max_retry)}
                return RetryingStorage(opened, where=redact(url), outage_timeout=outage_timeout,
                                       engine_kwargs=engine_kwargs, skip_table_creation=not create, **heartbeat)
        except (sqlalchemy.exc.SQLAlchemyError, StorageInternalError, ImportError, RuntimeError) as exc:
            refused = isinstance(exc, sqlalchemy.exc.OperationalError) or isinstance(
                exc.__cause__, sqlalchemy.exc.OperationalError)  # or a restart in progress: a short retry
            if not refused or time.monotonic() >= deadline:
                raise StorageError(f"cannot open the storage {redact(url)}: {first_line(exc)}") from None
            time.sleep(0.5)
