"""Opening a study storage: Optuna's SQL storage tuned for several workers, and one-line errors.

SQLite gets WAL mode and a long busy timeout (several local workers and a dashboard share one file without
"database is locked"); PostgreSQL gets a connect timeout and connection pre-ping (a dashboard outlives
server restarts). Heartbeats, when asked for, come with Optuna's retry of a dead worker's trial.
Every reader and writer of studies opens them here, so they all behave alike.
"""

from __future__ import annotations

import copy
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial
from sqlalchemy.engine import make_url

from aiq_search.errors import StorageError

__all__ = ["open_storage", "redact"]

# SQLite waits this long for another worker's write lock instead of failing with "database is locked".
SQLITE_BUSY_TIMEOUT_S = 120
POSTGRES_CONNECT_TIMEOUT_S = 10


def redact(storage_url: str) -> str:
    """The storage URL without its password, for messages that may end up in logs."""
    try:
        return make_url(storage_url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return storage_url


def _sqlite_file(url: str) -> Path | None:
    """The database file of an SQLite URL (None for in-memory or non-SQLite URLs)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _prepare_sqlite(path: Path) -> None:
    """WAL lets workers read while one writes; the mode is stored in the file, so setting it once is enough."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
    connection.close()


class _RetryStaleTrial(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a dead worker's trial (same params, queued WAITING for any worker), but starting
    clean: the retry must not inherit the dead trial's ``fail_reason`` or partial records."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        clean = copy.deepcopy(trial)
        clean.user_attrs = {}
        super().__call__(study, clean)


def open_storage(url: str, *, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 max_retry: int = 3, create: bool = True) -> RDBStorage:
    """Optuna's SQL storage for ``url``, tuned for several workers, with heartbeats when an interval is given.

    ``create=False`` refuses an SQLite file that does not exist (to join or inspect a study). A storage that
    cannot be reached is a one-line `StorageError` naming the URL (password masked) and the cause.
    """
    try:
        sqlite_file = _sqlite_file(url)
    except sqlalchemy.exc.ArgumentError as exc:
        raise StorageError(f"not a storage URL: {redact(url)!r} ({exc})") from None
    engine_kwargs: dict[str, Any]
    if sqlite_file is not None:
        if create:
            _prepare_sqlite(sqlite_file)
        elif not sqlite_file.is_file():  # SQLAlchemy would silently create an empty database
            raise StorageError(f"no SQLite study database at {sqlite_file}")
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    elif make_url(url).get_backend_name() == "postgresql":
        engine_kwargs = {"connect_args": {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeats are experimental in Optuna
            heartbeat: dict[str, Any] = {}
            if heartbeat_interval is not None:
                heartbeat = {
                    "heartbeat_interval": heartbeat_interval,
                    "grace_period": grace_period,
                    "heartbeat_stale_trial_callback": _RetryStaleTrial(max_retry=max_retry),
                }
            return RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as exc:
        cause = getattr(exc, "orig", None) or exc
        reason = next((line.strip() for line in str(cause).splitlines() if line.strip()), type(cause).__name__)
        raise StorageError(f"cannot open the storage {redact(url)}: {reason}") from None
