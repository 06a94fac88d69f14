"""Riding out a storage outage (a PostgreSQL restart, a managed database's failover, a network blip).

A worker that loses its database keeps its trial: every new connection waits for the server, retrying with
backoff, and a storage call whose connection broke mid-statement is made again. One line is logged when
the outage starts and one when it ends. Only an outage longer than the study's ``outage_timeout`` stops
the worker, with a one-line `OutageError`.

Two layers, because Optuna wraps an `RDBStorage` in its trial cache, which calls some of the storage's
private methods directly (`aiq_search._compat.CACHE_PRIVATE_CALLS`; every reliance on RDBStorage's internals
is in `aiq_search._compat`):

* the engine's ``do_connect`` event (SQLAlchemy's public hook) makes connecting wait: this covers every
  path, private ones included, and is where almost every outage shows (the pool pings each connection
  before use, so one that the restart broke is replaced, and the replacement waits for the server);
* `RetryingStorage` overrides the public storage methods (`aiq_search._compat.RETRIED_METHODS`) to make a
  call again when SQLAlchemy reports its connection lost mid-statement. A state change that committed just
  before the connection broke finds the trial already in the requested state on the second try: that
  counts as done.

Heartbeats stop during an outage, so once it ends, another worker might fail this worker's live trial as
stale before its heartbeat resumes. For one grace period (plus one retry step) after an outage it saw end,
a worker therefore fails no other worker's trial as stale; a worker that died during the outage has its
trial failed after that.

Optuna's trial cache also reads trials and writes parameters through private methods, which no public
override reaches: a statement that the server kills while it runs there raises as before. The worker goes
on after such an error when it escapes Optuna's loop (`lost_connection`); inside a trial (sampling,
pruning) it fails that trial, which the study replaces. It takes the server going down during those few
milliseconds: under two busy workers, about one restart in 40 (Optuna then warns "Caught an error from
sqlalchemy ... Falling back", and the worker went on every time).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy
import sqlalchemy.exc
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from aiq_search._compat import RETRIED_METHODS, driver_error, is_stale_check, rdb_engine, stale_after_s
from aiq_search.errors import StorageError

__all__ = ["OUTAGE_TIMEOUT_S", "Outage", "OutageError", "RetryingStorage", "first_line", "lost_connection",
           "outage_behind"]

# How long a worker waits for its storage by default: longer than a PostgreSQL restart or a managed
# database's failover (typically 1-2 minutes).
OUTAGE_TIMEOUT_S = 300.0
# Backoff between tries: doubling from the first to the longest step, each jittered by ±20 %.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 5.0

log = logging.getLogger(__name__)
T = TypeVar("T")


class OutageError(StorageError):
    """The storage stayed unreachable for longer than the outage timeout."""


def first_line(exc: BaseException) -> str:
    """The first line of what the database driver said (Optuna's and SQLAlchemy's wrapping and SQL left out)."""
    while exc.__cause__ is not None and not isinstance(exc, sqlalchemy.exc.DBAPIError):
        exc = exc.__cause__
    cause = getattr(exc, "orig", None) or exc
    return next((line.strip() for line in str(cause).splitlines() if line.strip()), type(cause).__name__)


def outage_behind(exc: BaseException | None) -> OutageError | None:
    """The `OutageError` behind ``exc``: Optuna, failing to record a trial's end during an outage, raises
    errors of its own (an assertion, an unbound local) whose context holds the outage."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OutageError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _lost_connection(exc: BaseException | None) -> bool:
    """Whether SQLAlchemy found the connection under a statement lost (as Optuna raises it: wrapped)."""
    error = driver_error(exc)
    return error is not None and error.connection_invalidated


def lost_connection(exc: BaseException | None) -> bool:
    """Whether a lost connection is behind ``exc``, also where Optuna raised errors of its own while
    handling it."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if _lost_connection(exc):
            return True
        seen.add(id(exc))
        exc = exc.__context__
    return False


class Outage:
    """One process's view of its storage: since when it has been unreachable, when it last came back.

    Shared by every thread using the storage, so one line is logged per outage and all of them give up
    together when it has lasted ``timeout`` seconds."""

    def __init__(self, where: str, timeout: float) -> None:
        self.where = where
        self.timeout = timeout
        self.lock = threading.Lock()
        self.since: float | None = None
        self.ended = float("-inf")

    def failed(self, exc: BaseException) -> float:
        """Note a refused or lost connection; returns how long the outage has lasted."""
        now = time.monotonic()
        with self.lock:
            if self.since is None:
                self.since = now
                log.warning("storage %s unreachable (%s); retrying for up to %g s", self.where, first_line(exc),
                            self.timeout)
            return now - self.since

    def over(self) -> None:
        """A connection worked: end the outage, if there was one."""
        if self.since is None:  # the common case, without taking the lock
            return
        with self.lock:
            if self.since is None:
                return
            now = time.monotonic()
            lasted, self.since, self.ended = now - self.since, None, now
        log.warning("storage %s reachable again after %.1f s", self.where, lasted)

    def ended_within(self, seconds: float) -> bool:
        """Whether an outage ended less than ``seconds`` ago (or is going on)."""
        return self.since is not None or time.monotonic() - self.ended < seconds

    def retry(self, call: Callable[[], T], *, lost: Callable[[BaseException], bool]) -> T:
        """``call()``, made again with backoff while it fails with an error that ``lost`` says is a lost or
        refused connection, until it succeeds or the outage (or this call) has lasted the timeout."""
        started = time.monotonic()
        delay = RETRY_FIRST_S
        while True:
            try:
                result = call()
            except Exception as exc:
                if not lost(exc):
                    raise
                lasted = max(self.failed(exc), time.monotonic() - started)
                if lasted >= self.timeout:
                    raise OutageError(f"storage {self.where} unreachable for more than {self.timeout:g} s "
                                      f"(outage_timeout), giving up: {first_line(exc)}") from None
                time.sleep(min(delay * random.uniform(0.8, 1.2), self.timeout - lasted + 0.01))
                delay = min(2 * delay, RETRY_MAX_S)
                continue
            self.over()
            return result

    def wait_for_server(self, engine: sqlalchemy.Engine) -> None:
        """Make every new connection of ``engine`` wait for the server (through an outage)."""
        dialect = engine.dialect
        refused = dialect.loaded_dbapi.OperationalError

        def connect(dialect: Any, record: Any, cargs: list[Any], cparams: dict[str, Any]) -> Any:
            return self.retry(lambda: dialect.connect(*cargs, **cparams), lost=lambda e: isinstance(e, refused))

        sqlalchemy.event.listen(engine, "do_connect", connect)


class RetryingStorage(RDBStorage):
    """Optuna's `RDBStorage` that rides out an outage of up to ``outage_timeout`` seconds (see the module).

    ``where`` names the storage in messages (its URL with credentials masked)."""

    def __init__(self, url: str, *, where: str, outage_timeout: float = OUTAGE_TIMEOUT_S, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.outage = Outage(where, outage_timeout)
        self.outage.wait_for_server(rdb_engine(self))
        self.heartbeated: set[int] = set()  # this process's trials: those it sent heartbeats for

    def record_heartbeat(self, trial_id: int) -> None:
        """Optuna's heartbeat thread dies at the first exception: past the outage timeout, the heartbeat
        is skipped (the main thread stops the worker with the outage's one line) and the thread lives."""
        self.heartbeated.add(trial_id)
        try:
            self.outage.retry(lambda: RDBStorage.record_heartbeat(self, trial_id), lost=_lost_connection)
        except OutageError:
            pass

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        if (is_stale_check(state, values) and trial_id not in self.heartbeated
                and self.get_heartbeat_interval() is not None and self.outage.ended_within(self.stale_guard_s())):
            return False  # a stale check right after an outage: the trial's heartbeats may not have resumed yet
        tries = 0

        def attempt() -> bool:
            nonlocal tries
            tries += 1
            try:
                return RDBStorage.set_trial_state_values(self, trial_id, state, values)
            except UpdateFinishedTrialError:
                if tries > 1 and self.holds(trial_id, state, values):
                    return True  # the first try committed before its connection broke
                raise

        updated = self.outage.retry(attempt, lost=_lost_connection)
        if not updated and state == TrialState.RUNNING and tries > 1 and self.get_heartbeat_interval() is not None:
            # Taking a WAITING trial: did the broken first try take it, or another worker? A heartbeat makes
            # sure that, if it was this worker's (which Optuna will not run), the trial ends as stale.
            self.outage.retry(lambda: RDBStorage.record_heartbeat(self, trial_id), lost=_lost_connection)
        return updated

    def holds(self, trial_id: int, state: TrialState, values: Sequence[float] | None) -> bool:
        """Whether the trial is already in ``state`` with ``values``."""
        trial = self.get_trial(trial_id)
        return trial.state == state and (values is None or trial.values == [float(v) for v in values])

    def stale_guard_s(self) -> float:
        """How long after an outage this worker fails no other worker's trial as stale: a grace period
        (Optuna's default: two heartbeat intervals) and one retry step."""
        return stale_after_s(self) + RETRY_MAX_S * 1.2


def _retried(name: str) -> Callable[..., Any]:
    method = getattr(RDBStorage, name)

    def call(self: RetryingStorage, *args: Any, **kwargs: Any) -> Any:
        return self.outage.retry(lambda: method(self, *args, **kwargs), lost=_lost_connection)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = method.__doc__
    return call


# The public storage methods that Optuna's trial cache and readers call, whose writes are idempotent (which
# ones, and why the others are not, is in aiq_search._compat).
for _name in RETRIED_METHODS:
    setattr(RetryingStorage, _name, _retried(_name))
del _name
