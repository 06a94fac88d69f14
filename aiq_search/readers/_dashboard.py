"""optuna-dashboard on a study storage, with every aiq-search study showing its aIQ Pareto figure there.

The figure lives in the study itself (optuna-dashboard's ``save_plotly_graph_object`` stores it as study
system attributes, in a format of its own that `aiq_search._compat.dashboard_figure` reads), so whoever
opens the dashboard sees the front without running anything, and every worker refreshes it through
`publish_figures` as trials finish (at most every few seconds) and when it stops.
The web server around the dashboard (read-only when shared, 503 while the storage is out of reach) is
`aiq_search.readers._webapp`.

optuna_dashboard is imported where it is used: importing it imports scikit-learn (through Optuna's
importance module), which ``aiq-search plot`` and ``status`` must not pay for.
"""

from __future__ import annotations

import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage, RDBStorage
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from aiq_search._compat import dashboard_figure, rdb_engine
from aiq_search.errors import StorageError
from aiq_search.readers._plots import pareto_figure
from aiq_search.readers._webapp import DashboardGuard, DashboardServer, bind, retry_outages
from aiq_search.study import (
    METRIC_NAMES,
    POSTGRES_CONNECT_TIMEOUT_S,
    SETTINGS_ATTR,
    complete_trials,
    holds_optuna_storage,
    open_artifact_store,
    open_storage,
    redact,
    study_settings,
)

PARETO_FIGURE_ID = "aiq-pareto-front"
_REVISION = "aiq_search_revision"
# Raised when the figure's look changes, so that the dashboard's startup refresh replaces older figures.
FIGURE_VERSION = 2
# How long the dashboard waits for an unreachable database when it starts (e.g. started with PostgreSQL).
STARTUP_RETRY_S = 30.0


def stored_figure(storage: BaseStorage, study_name: str, figure_id: str = PARETO_FIGURE_ID) -> dict[str, Any] | None:
    """The figure ``figure_id`` stored in the study for the dashboard, as plotly JSON; None when it is
    missing or half-written (chunks missing, or from two writers that interleaved)."""
    system_attrs = storage.get_study_system_attrs(storage.get_study_id_from_name(study_name))
    return dashboard_figure(system_attrs, figure_id)


def _stored_revision(storage: BaseStorage, study_name: str) -> int | None:
    """How many COMPLETE trials the stored figure shows; None when it is missing, broken, not ours or drawn
    by an older aiq-search."""
    figure = stored_figure(storage, study_name)
    try:
        meta = figure["layout"]["meta"]  # type: ignore[index]
        return int(meta[_REVISION]) if meta.get("aiq_search_figure") == FIGURE_VERSION else None
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def publish_figures(study: optuna.Study, storage: BaseStorage, *, attempts: int = 5) -> bool:
    """Store the study's aIQ Pareto figure for the dashboard and name its objectives if they are unnamed.

    ``storage`` is the one the study was loaded from (Optuna offers no public way to get it from the study).
    Workers call this as trials finish and when they stop. The figure is stored in chunks, so two writers
    can interleave and leave a broken one, and a slow writer can overwrite a newer figure with an older one.
    Hence the figure records how many COMPLETE trials it shows, and a call returns only once the stored
    figure is intact and shows at least as many trials as the study now has, writing (again, after a
    random pause) until then: whoever writes last has checked what stays. A call that finds the figure
    already current writes nothing. Returns False when ``attempts`` writes were all overtaken (by other
    writers, or by trials finishing faster than this writes); the next finished trial publishes again.
    """
    from optuna_dashboard import save_plotly_graph_object

    settings = study_settings(study)
    if study.metric_names is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)  # set_metric_names is stable in use since 3.2
            study.set_metric_names(METRIC_NAMES[settings.mode])
    for attempt in range(attempts + 1):
        trials = complete_trials(study)
        stored = _stored_revision(storage, study.study_name)
        if not trials or (stored is not None and stored >= len(trials)):
            return True
        if attempt == attempts:
            break
        if attempt:
            time.sleep(random.uniform(0.05, 0.25) * attempt)  # let the writer we collided with finish
        figure = pareto_figure(trials, eval_split=settings.eval_split)
        figure.update_layout(meta={_REVISION: len(trials), "aiq_search_figure": FIGURE_VERSION},
                             template="none")  # no template: fewer chunks
        save_plotly_graph_object(study, figure, graph_object_id=PARETO_FIGURE_ID)
    return False


def publish_all(storage: BaseStorage) -> list[str]:
    """Refresh the figure of every aiq-search study in the storage, e.g. ones whose workers were killed
    between finishing a trial and publishing it. Returns the names of those studies."""
    names = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if SETTINGS_ATTR in summary.user_attrs:
            publish_figures(optuna.load_study(study_name=summary.study_name, storage=storage), storage)
            names.append(summary.study_name)
    return names


def require_optuna_storage(storage_url: str) -> None:
    """Refuse a database that holds no Optuna storage: opening it with Optuna would create Optuna's tables
    in it, and a dashboard only looks. Checked on a separate engine that creates nothing. (A URL that is
    not one, a missing driver or a missing SQLite file is left to `open_storage`, which names it.)"""
    try:
        url = make_url(storage_url)
        if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
            return
        postgres = url.get_backend_name() == "postgresql"
        holds = holds_optuna_storage(url, {"poolclass": NullPool, "connect_args": {
            "connect_timeout": POSTGRES_CONNECT_TIMEOUT_S} if postgres else {}})
    except (sqlalchemy.exc.ArgumentError, ImportError):
        return
    if not holds:
        raise StorageError(f"{redact(storage_url)} holds no Optuna storage; the dashboard creates none")


def _artifact_store(location: str | None) -> Any:
    """The study's artifact store for the dashboard's weights view; a location that is not reachable from
    here leaves the view empty (one line says so) rather than keeping the dashboard from starting."""
    if not location:
        return None
    try:
        return open_artifact_store(location)
    except StorageError as exc:
        print(f"aiq-search: the dashboard shows no trial weights: {exc}", file=sys.stderr, flush=True)
        return None


def open_dashboard(storage_url: str, host: str = "127.0.0.1", port: int = 8080, *, artifacts: str | None = None,
                   allow_writes: bool | None = None, retry_s: float = 5.0,
                   startup_retry_s: float = STARTUP_RETRY_S) -> DashboardServer:
    """A dashboard server on ``storage_url``, bound and ready for ``serve_forever()`` (port 0: any free port).

    The port is bound first, so a bad or busy one fails at once, as a one-line error. Then the storage is
    checked (it must hold Optuna's tables: nothing is created), opened and every aiq-search study's figure
    refreshed, retrying for up to ``startup_retry_s`` while the database is out of reach.
    ``allow_writes`` None allows the dashboard's changes (notes, deleting studies...) only when it is bound
    to this machine's loopback address: reachable from other machines, it is read-only unless True.
    ``artifacts`` is a study's artifact location (a folder or ``s3://bucket/prefix``), so the dashboard can
    offer its trials' weights.
    """
    from optuna_dashboard import wsgi

    server = bind(host, port)
    try:
        def open_and_publish() -> tuple[RDBStorage, list[str]]:
            require_optuna_storage(storage_url)
            # pre-pings PostgreSQL links; during an outage, requests wait at most retry_s for a connection
            storage = open_storage(storage_url, create=False, outage_timeout=retry_s)
            return storage, publish_all(storage)

        storage, server.studies = retry_outages(open_and_publish, within_s=startup_retry_s,
                                                what="opening it for the dashboard")
        server.read_only = not (server.is_loopback if allow_writes is None else allow_writes)
        store = _artifact_store(artifacts)
        server.set_app(DashboardGuard(wsgi(storage, artifact_store=store), rdb_engine(storage),
                                      read_only=server.read_only, retry_s=retry_s))
    except BaseException:
        server.server_close()
        raise
    return server


def serve(storage_url: str, host: str = "127.0.0.1", port: int = 8080, *, artifacts: str | None = None,
          allow_writes: bool | None = None) -> None:
    """Serve the dashboard (`open_dashboard`) until interrupted; bound to this machine only by default."""
    server = open_dashboard(storage_url, host, port, artifacts=artifacts, allow_writes=allow_writes)
    if server.is_loopback:
        access = "read-only" if server.read_only else "changes allowed"
    else:
        access = ("reachable from other machines, so read-only (--allow-writes to allow changes)"
                  if server.read_only else "reachable from other machines and changes allowed: it has no login")
    print(f"aiq-search: dashboard of {redact(storage_url)} ({len(server.studies)} aiq-search studies) "
          f"at {server.url}, {access}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
