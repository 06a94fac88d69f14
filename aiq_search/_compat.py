"""Every reliance of aiq-search on a dependency's internals, in one place, each with the reason it is needed.

No other module of aiq_search touches an ``_``-prefixed name of optuna, optuna_dashboard or sqlalchemy, or
mirrors what those libraries keep to themselves (their stored formats, their undocumented attributes, how
their code happens to call itself). What it needs of that lives here, and ``tests/test_compat.py`` checks
each fact against the installed libraries, failing with a message that says what changed upstream.

Checked against optuna 5.1.0, optuna-dashboard 0.21.0 and SQLAlchemy 2.1.9, and against the lower bounds of
pyproject.toml (optuna 4.9.0, optuna-dashboard 0.15.0, SQLAlchemy 2.0.5.post1).

What aiq-search uses of SQLAlchemy is its public API (engine events, ``DBAPIError.connection_invalidated``,
``Dialect.loaded_dbapi``): nothing of it is here. optuna_dashboard is not imported here: importing it imports
scikit-learn, which the readers that use this module must not pay for.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

__all__ = ["CACHE_PRIVATE_CALLS", "DASHBOARD_FIGURE_PREFIX", "OPTUNA_TABLE", "OVERRIDDEN_METHODS",
           "RETRIED_METHODS", "RETRIED_THROUGH_BASE", "UNRETRIED_METHODS", "CleanStaleTrialRetry",
           "dashboard_figure", "driver_error", "is_stale_check", "rdb_engine", "stale_after_s"]

# ------------------------------------------------------------------------------------------ Optuna's schema

OPTUNA_TABLE = "studies"
"""A table that every Optuna RDB storage has (``optuna.storages._rdb.models.StudyModel``): a database without
it holds no Optuna storage. Readers ask for it before opening a storage with ``skip_table_creation=True``, on
which Optuna would otherwise fail with its own "no such table" (`aiq_search.study._storage`)."""

# ------------------------------------------------------------------- RDBStorage, as RetryingStorage wraps it
# `aiq_search.study._outage.RetryingStorage` subclasses RDBStorage and makes a storage call again when its
# connection was lost mid-statement. Which methods it wraps is a judgement on each public method of
# RDBStorage; a public method added upstream needs one too (the test lists it).

RETRIED_METHODS = (
    "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name", "get_study_name_from_id",
    "get_study_directions", "get_study_user_attrs", "get_study_system_attrs", "get_all_studies",
    "set_trial_param", "get_trial_id_from_study_id_trial_number", "get_trial_param",
    "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr", "get_trial",
    "get_all_trials", "get_trial_user_attrs", "get_trial_system_attrs",
)
"""The public storage methods that Optuna's trial cache and readers call, each made again as it is (same
arguments) while its connection is lost. Reads are harmless to repeat; the writes are idempotent in Optuna:
it upserts attributes and intermediate values and ignores a duplicate parameter (an IntegrityError that
``_create_scoped_session(..., ignore_integrity_error=True)`` swallows), so a write whose commit landed just
before the connection broke can be made again."""

OVERRIDDEN_METHODS = ("record_heartbeat", "set_trial_state_values")
"""Public methods that RetryingStorage overrides with logic of its own (same signature as RDBStorage's): a
heartbeat that never kills Optuna's heartbeat thread, and a state change that, made again, finds the trial
already in the state asked for (RDBStorage raises ``UpdateFinishedTrialError`` for a finished trial and
returns False for RUNNING asked of a trial that is not WAITING)."""

RETRIED_THROUGH_BASE = ("get_n_trials", "get_trial_number_from_id", "get_trial_params")
"""Reads that RDBStorage inherits from BaseStorage, which implements them with `get_all_trials` and
`get_trial`: retried through those, as long as RDBStorage does not implement them with queries of its own."""

UNRETRIED_METHODS = {
    "create_new_study": "not idempotent: made again after its commit landed, it finds the name taken",
    "create_new_trial": "not idempotent (a second trial); the trial cache creates through _create_new_trial",
    "delete_study": "not idempotent (the study is gone); only the dashboard deletes, its guard rides out outages",
    "get_best_trial": "the trial cache answers it through _get_best_trial_id; only the dashboard asks for it",
    "check_trial_is_updatable": "no database access",
    "get_heartbeat_interval": "no database access",
    "get_heartbeat_stale_trial_callback": "no database access",
    "get_failed_trial_callback": "no database access",
    "remove_session": "no database access",
    "get_all_versions": "schema versions, read when a storage is opened, not during a study",
    "get_current_version": "schema versions, read when a storage is opened, not during a study",
    "get_head_version": "schema versions, read when a storage is opened, not during a study",
    "upgrade": "schema migration, made by hand (optuna storage upgrade)",
}
"""The other public methods of RDBStorage, left as they are, with why (``RETRIED_THROUGH_BASE`` aside)."""

CACHE_PRIVATE_CALLS = frozenset({"_create_new_trial", "_set_trial_param", "_get_best_trial_id", "_get_trials",
                                 "_get_stale_trial_ids"})
"""The private RDBStorage methods that Optuna's trial cache (``optuna.storages._CachedStorage``, which every
study on an RDBStorage goes through) calls directly, past RetryingStorage's public overrides: only its
``do_connect`` layer covers them (see `aiq_search.study._outage`). A private call added upstream, e.g. the
cache changing a trial's state without `set_trial_state_values`, would escape the retry and the stale
guard."""


def rdb_engine(storage: RDBStorage) -> sqlalchemy.Engine:
    """The SQLAlchemy engine behind ``storage``: where RetryingStorage makes new connections wait for the server
    (its ``do_connect`` event) and what the dashboard's guard pings. RDBStorage documents no way to reach it;
    it keeps the engine that every one of its sessions is bound to in its ``engine`` attribute."""
    engine: sqlalchemy.Engine = storage.engine
    return engine


def stale_after_s(storage: RDBStorage) -> float:
    """How long Optuna lets a RUNNING trial's heartbeat age before its stale check fails the trial: the
    storage's grace period, two heartbeat intervals by default. RDBStorage keeps the grace period in its
    ``grace_period`` attribute (no getter) and applies the default in its private ``_get_stale_trial_ids``.
    Only for a storage with heartbeats."""
    interval = storage.get_heartbeat_interval()
    assert interval is not None
    return float(storage.grace_period or 2 * interval)


def is_stale_check(state: TrialState, values: Sequence[float] | None) -> bool:
    """Whether a `set_trial_state_values` call is shaped like Optuna's stale check
    (``optuna.storages.fail_stale_trials``), which fails a stale trial through the public method, with no
    values. (A worker failing its own trial also looks like this; RetryingStorage tells them apart by the
    trials this process sent heartbeats for.)"""
    return state == TrialState.FAIL and values is None


def driver_error(exc: BaseException | None) -> sqlalchemy.exc.DBAPIError | None:
    """SQLAlchemy's error behind what a storage call raised: Optuna wraps it (a ``StorageInternalError``
    raised ``from`` it, in ``optuna.storages._rdb.storage._create_scoped_session``), so it is found by its
    ``__cause__`` chain. It says whether SQLAlchemy found the connection lost (``connection_invalidated``)."""
    while exc is not None:
        if isinstance(exc, sqlalchemy.exc.DBAPIError):
            return exc
        exc = exc.__cause__
    return None


class CleanStaleTrialRetry(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a dead worker's trial (same params, queued WAITING for any worker); the retry starts
    clean, without the dead attempt's partial records (its user attributes).

    RetryHeartbeatStaleTrialCallback builds the retry from the FrozenTrial it is handed (params,
    distributions, user and system attributes), not from the storage: handing it a copy without user
    attributes is how they are left out."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        clean = copy.deepcopy(trial)
        clean.user_attrs = {}
        super().__call__(study, clean)


# ------------------------------------------------------------------------- optuna-dashboard's stored figures

DASHBOARD_FIGURE_PREFIX = "dashboard:plot_data:"
"""How optuna-dashboard (``save_plotly_graph_object``, ``optuna_dashboard._custom_plot_data``) stores a
figure: its plotly JSON cut into numbered chunks, one study system attribute each, under
``dashboard:plot_data:<figure id>:<i>`` (a shorter figure saved over a longer one leaves the extra chunks
empty). optuna-dashboard has no public reader of it; `dashboard_figure` joins it as the dashboard's own
``concat_plot_data`` does."""


def dashboard_figure(system_attrs: Mapping[str, Any], figure_id: str) -> dict[str, Any] | None:
    """The figure ``figure_id`` that optuna-dashboard stored among a study's system attributes, as plotly
    JSON; None when it is missing or half-written (chunks missing, or from two writers that interleaved)."""
    prefix = f"{DASHBOARD_FIGURE_PREFIX}{figure_id}:"
    chunks = {key[len(prefix):]: value for key, value in system_attrs.items() if key.startswith(prefix)}
    try:
        figure: dict[str, Any] = json.loads("".join(chunks[str(i)] for i in range(len(chunks))))
    except (KeyError, TypeError, ValueError):
        return None
    return figure
