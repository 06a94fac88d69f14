"""Opening a study storage: Optuna's SQL storage tuned for several workers, and one-line errors.

SQLite gets WAL mode and a long busy timeout (several local workers and a dashboard share one file without
"database is locked"); PostgreSQL gets a connect timeout and connection pre-ping (a dashboard outlives
server restarts). Heartbeats, when asked for, come with Optuna's retry of a dead worker's trial.
Every reader and writer of studies opens them here, so they all behave alike.

Each Optuna storage call is its own ORM transaction (about 2–4 ms on PostgreSQL, mostly client-side), and a
trial of a few seconds makes dozens of them. `BufferedRDBStorage` therefore holds the records of a trial this
process runs that no other process needs yet (its parameters until its next attribute write, which the
objective makes before training, and its per-epoch intermediate values for up to ``flush_interval_s``) and
writes them, with the attributes, in one transaction. This process always sees them at once.
"""

from __future__ import annotations

import copy
import json
import sqlite3
import threading
import time
import warnings
from collections import Counter
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.distributions import BaseDistribution, check_distribution_compatibility, distribution_to_json
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._cached_storage import _CachedStorage
from optuna.storages._rdb import models
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import make_url

from aiq_search.errors import StorageError

__all__ = ["BufferedRDBStorage", "buffered_backend", "open_storage", "redact"]

# SQLite waits this long for another worker's write lock instead of failing with "database is locked".
SQLITE_BUSY_TIMEOUT_S = 120
POSTGRES_CONNECT_TIMEOUT_S = 10
# the databases whose upserts BufferedRDBStorage writes; others get Optuna's RDBStorage as it is
_UPSERT_BACKENDS = ("sqlite", "postgresql")


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


STALE_REASON = "its worker stopped sending heartbeats (killed or lost)"


class _RetryStaleTrial(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a dead worker's trial (same params, queued WAITING for any worker), after recording
    why it failed; the retry starts clean, without the dead trial's ``fail_reason`` or partial records."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        backend = buffered_backend(study._storage)
        if backend is not None:
            backend.set_fail_reason(trial._trial_id, STALE_REASON)
        clean = copy.deepcopy(trial)
        clean.user_attrs = {}
        super().__call__(study, clean)


@dataclass
class _Own:
    """A running trial of this process: what it looks like with every write (``trial``, None until first
    read for a trial this process took from the queue), and the records not written yet."""

    trial: FrozenTrial | None
    params: dict[str, tuple[float, BaseDistribution]] = field(default_factory=dict)
    intermediate: dict[int, float] = field(default_factory=dict)
    written_at: float = field(default_factory=time.monotonic)


class BufferedRDBStorage(RDBStorage):
    """Optuna's RDBStorage that writes the running trials of this process in batches.

    A trial's parameters go out with its next attribute write (the objective records the architecture before
    it trains, so TPE's constant liar in other workers sees them) and its intermediate values at most
    ``flush_interval_s`` late, with the next attribute write, or before the trial is told: Optuna's pruners
    read other trials' curves only once they complete (Hyperband's rungs are system attributes, written at
    once). Several attributes go in one transaction, as upserts. This process reads its running trials from
    memory, as they are with every write; other trials, and every trial's state, come from the database.
    A worker killed mid-trial loses up to ``flush_interval_s`` of that trial's curve; the trial is failed by
    heartbeat and re-run from scratch anyway.
    """

    def __init__(self, url: str, *, flush_interval_s: float = 5.0, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.flush_interval_s = flush_interval_s
        self._prepare()

    def _prepare(self) -> None:
        self._own: dict[int, _Own] = {}
        self._lock = threading.RLock()
        name = self.engine.name
        self._upserts = {
            "params": _upsert(name, models.TrialParamModel, ("trial_id", "param_name")),
            "values": _upsert(name, models.TrialIntermediateValueModel, ("trial_id", "step")),
            "user": _upsert(name, models.TrialUserAttributeModel, ("trial_id", "key")),
            "system": _upsert(name, models.TrialSystemAttributeModel, ("trial_id", "key")),
        }
        trials = models.TrialModel.__table__
        self._state_query = sqlalchemy.select(trials.c.state).where(
            trials.c.trial_id == sqlalchemy.bindparam("trial_id"))

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        for name in ("_own", "_lock", "_upserts", "_state_query"):
            del state[name]
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._prepare()

    # -- writes

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        trial = super()._create_new_trial(study_id, template_trial)
        if trial.state == TrialState.RUNNING:
            with self._lock:
                self._own[trial._trial_id] = _Own(copy.deepcopy(trial))
        return trial

    def _set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                         distribution: BaseDistribution, previous_distribution: BaseDistribution | None) -> None:
        with self._lock:
            own = self._own.get(trial_id)
            if own is None or previous_distribution is None:
                # first use of this name in this process: Optuna checks it against the study's records
                super()._set_trial_param(trial_id, param_name, param_value_internal, distribution,
                                         previous_distribution)
            else:
                check_distribution_compatibility(previous_distribution, distribution)
                own.params[param_name] = (param_value_internal, distribution)
            if own is not None and own.trial is not None:
                own.trial.params[param_name] = distribution.to_external_repr(param_value_internal)
                own.trial.distributions[param_name] = distribution

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        with self._lock:
            own = self._own.get(trial_id)
            if own is None:
                super().set_trial_intermediate_value(trial_id, step, intermediate_value)
                return
            own.intermediate[step] = intermediate_value
            if own.trial is not None:
                own.trial.intermediate_values[step] = intermediate_value
            if time.monotonic() - own.written_at >= self.flush_interval_s:
                self._write(trial_id)

    def set_trial_user_attrs(self, trial_id: int, attrs: Mapping[str, Any]) -> None:
        """Several user attributes (and whatever of the trial is pending) in one transaction: they appear
        together or not at all."""
        self._write(trial_id, user_attrs=attrs)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._write(trial_id, user_attrs={key: value})

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._write(trial_id, system_attrs={key: value})

    def set_fail_reason(self, trial_id: int, reason: str) -> None:
        """Record why a trial failed, also once it has ended (Optuna fails a dead worker's trial first)."""
        self._write(trial_id, user_attrs={"fail_reason": reason}, ended_ok=True)

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        with self._lock:
            if trial_id in self._own:
                self._write(trial_id)  # a finished trial carries all its records
            try:
                changed = super().set_trial_state_values(trial_id, state, values)
            except UpdateFinishedTrialError:
                self._own.pop(trial_id, None)
                raise
            if changed and state == TrialState.RUNNING:  # a queued trial (a retry) this process now runs
                self._own[trial_id] = _Own(None)
            elif changed:
                self._own.pop(trial_id, None)
            return changed

    def _write(self, trial_id: int, *, user_attrs: Mapping[str, Any] | None = None,
               system_attrs: Mapping[str, Any] | None = None, ended_ok: bool = False) -> None:
        """One transaction: the trial's pending records and the given attributes (upserted row sets)."""
        # serialized first: a value that cannot be stored fails the call before anything is written
        user_rows = [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                     for k, v in (user_attrs or {}).items()]
        system_rows = [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)}
                       for k, v in (system_attrs or {}).items()]
        with self._lock:
            own = self._own.get(trial_id) or _Own(None)
            param_rows = [{"trial_id": trial_id, "param_name": name, "param_value": value,
                           "distribution_json": distribution_to_json(dist)}
                          for name, (value, dist) in own.params.items()]
            value_rows = []
            for step, value in own.intermediate.items():
                stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(value)
                value_rows.append({"trial_id": trial_id, "step": step, "intermediate_value": stored,
                                   "intermediate_value_type": kind})
            batches = [(rows, self._upserts[name]) for name, rows in
                       (("params", param_rows), ("values", value_rows), ("user", user_rows), ("system", system_rows))
                       if rows]
            if not batches:
                return
            try:
                with self.engine.begin() as connection:
                    # writes first: an SQLite transaction that has read cannot always become a writer later
                    for rows, statement in batches:
                        connection.execute(statement, rows)
                    state = connection.execute(self._state_query, {"trial_id": trial_id}).scalar_one_or_none()
                    if state is None:
                        raise KeyError(f"no trial with id {trial_id}")
                    if not ended_ok:  # raising here rolls the writes back
                        self.check_trial_is_updatable(trial_id, state)
            except UpdateFinishedTrialError:
                self._own.pop(trial_id, None)  # another worker ended it (heartbeat): nothing left to write
                raise
            except sqlalchemy.exc.SQLAlchemyError as exc:
                raise optuna.exceptions.StorageInternalError(f"writing trial {trial_id} failed: {exc}") from exc
            own.params.clear()
            own.intermediate.clear()
            own.written_at = time.monotonic()
            if own.trial is not None:
                own.trial.user_attrs.update(user_attrs or {})
                own.trial.system_attrs.update(system_attrs or {})

    # -- reads

    def _as_known(self, trial: FrozenTrial) -> FrozenTrial:
        """A trial read from the database, as this process knows it: a running trial of its own with what
        is pending; one that another worker ended (heartbeat) is no longer its own."""
        own = self._own.get(trial._trial_id)
        if own is None:
            return trial
        if trial.state.is_finished():
            self._own.pop(trial._trial_id, None)
            return trial
        for name, (value, dist) in own.params.items():
            trial.params[name] = dist.to_external_repr(value)
            trial.distributions[name] = dist
        trial.intermediate_values.update(own.intermediate)
        if own.trial is None:
            own.trial = copy.deepcopy(trial)
        return trial

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            own = self._own.get(trial_id)
            if own is not None and own.trial is not None:
                return copy.deepcopy(own.trial)
            return self._as_known(super().get_trial(trial_id))

    def _get_trials(self, study_id: int, states: Container[TrialState] | None, included_trial_ids: set[int],
                    trial_id_greater_than: int) -> list[FrozenTrial]:
        with self._lock:
            if states is None and any(own.trial is not None for own in self._own.values()):
                mine = self._only_own_running(study_id, included_trial_ids, trial_id_greater_than)
                if mine is not None:
                    return mine
            trials = super()._get_trials(study_id, states, included_trial_ids, trial_id_greater_than)
            return [self._as_known(trial) for trial in trials]

    def _only_own_running(self, study_id: int, included_trial_ids: set[int],
                          trial_id_greater_than: int) -> list[FrozenTrial] | None:
        """Optuna's cache re-reads the unfinished trials and any new ones before every pruning check (each
        epoch) and every sampling, loading each with five more queries. When a light query shows that this
        would only bring back this process's own running trials, they come from memory; else None."""
        trials = models.TrialModel.__table__
        included = [i for i in included_trial_ids if i <= trial_id_greater_than]
        query = sqlalchemy.select(trials.c.trial_id, trials.c.state).where(
            trials.c.study_id == study_id,
            sqlalchemy.or_(trials.c.trial_id.in_(included), trials.c.trial_id > trial_id_greater_than))
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        known = [self._own.get(trial_id) for trial_id, _ in rows]
        if not rows or any(own is None or own.trial is None or state != TrialState.RUNNING
                           for own, (_, state) in zip(known, rows, strict=True)):
            return None
        return [copy.deepcopy(own.trial) for own in sorted(known, key=lambda own: own.trial._trial_id)]

    def get_trial_param(self, trial_id: int, param_name: str) -> float:
        with self._lock:
            own = self._own.get(trial_id)
            if own is not None and param_name in own.params:
                return own.params[param_name][0]
            return super().get_trial_param(trial_id, param_name)

    def count_trials(self, study_id: int, *, below_number: int | None = None) -> Counter[TrialState]:
        """The study's trials (those numbered below ``below_number``) by state, in one query: workers ask
        before every trial, and Optuna's reads fetch whole trials."""
        trials = models.TrialModel.__table__
        query = sqlalchemy.select(trials.c.state, sqlalchemy.func.count()).where(trials.c.study_id == study_id)
        if below_number is not None:
            query = query.where(trials.c.number < below_number)
        with self.engine.connect() as connection:
            return Counter(dict(connection.execute(query.group_by(trials.c.state)).all()))


def buffered_backend(storage: BaseStorage) -> BufferedRDBStorage | None:
    """The `BufferedRDBStorage` under a study's storage (Optuna wraps RDB storages in its cache), if any."""
    backend = storage._backend if isinstance(storage, _CachedStorage) else storage
    return backend if isinstance(backend, BufferedRDBStorage) else None


def _upsert(engine_name: str, model: Any, keys: tuple[str, ...]) -> sqlalchemy.Insert:
    """An insert of ``model`` rows that updates the row with the same ``keys`` instead (built once: building
    costs more than running it)."""
    table = model.__table__
    updated = [c.name for c in table.columns if not c.primary_key and c.name not in keys]
    statement = (postgresql if engine_name == "postgresql" else sqlite_dialect).insert(table)
    return statement.on_conflict_do_update(index_elements=list(keys), set_={c: statement.excluded[c] for c in updated})


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
    backend = make_url(url).get_backend_name()
    if sqlite_file is not None:
        if create:
            _prepare_sqlite(sqlite_file)
        elif not sqlite_file.is_file():  # SQLAlchemy would silently create an empty database
            raise StorageError(f"no SQLite study database at {sqlite_file}")
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    elif backend == "postgresql":
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
            kind = BufferedRDBStorage if backend in _UPSERT_BACKENDS else RDBStorage
            return kind(url, engine_kwargs=engine_kwargs, **heartbeat)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as exc:
        cause = getattr(exc, "orig", None) or exc
        reason = next((line.strip() for line in str(cause).splitlines() if line.strip()), type(cause).__name__)
        raise StorageError(f"cannot open the storage {redact(url)}: {reason}") from None
