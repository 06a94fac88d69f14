"""optuna-dashboard on a study storage, with every aiq-search study showing its aIQ Pareto figure and the
per-layer efficiency of its best trials there.

The figures live in the study itself (optuna-dashboard's ``save_plotly_graph_object`` stores them as study
system attributes, in a format of its own that `aiq_search._compat.dashboard_figure` reads), so whoever
opens the dashboard sees them without running anything, and every worker refreshes them through
`publish_figures` as trials finish (at most every few seconds) and when it stops. optuna-dashboard draws
such figures in half-width cards 450 px tall after its own history figure (its page fixes where), so they
are laid out for that card: a slim top margin, the legend above the plot, no note.
A dashboard that does not allow writes never writes: it opens the storage read-only (a SELECT-only database
role, a write-protected SQLite file) and leaves refreshing the figures to the workers.
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
from typing import Any

import optuna
import plotly.graph_objects as go
import sqlalchemy
import sqlalchemy.exc
from optuna.exceptions import ExperimentalWarning, StorageInternalError
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from aiq_search._compat import dashboard_figure, rdb_engine
from aiq_search.errors import StorageError
from aiq_search.readers._plots import layer_efficiency_figure, pareto_figure
from aiq_search.readers._webapp import (
    DashboardGuard,
    DashboardServer,
    bind,
    is_outage,
    outage_reason,
    retry_outages,
)
from aiq_search.study import (
    METRIC_NAMES,
    POSTGRES_CONNECT_TIMEOUT_S,
    SETTINGS_ATTR,
    complete_trials,
    holds_optuna_storage,
    open_artifact_store,
    open_storage,
    read_only_here,
    redact,
    study_settings,
)

PARETO_FIGURE_ID = "aiq-pareto-front"
LAYER_FIGURE_ID = "aiq-layer-efficiency"
FIGURE_IDS = (LAYER_FIGURE_ID, PARETO_FIGURE_ID)  # written in this order: the Pareto figure, last, says both are
_REVISION = "aiq_search_revision"
# Raised when the figures' look changes, so that the dashboard's startup refresh replaces older figures.
FIGURE_VERSION = 3
# How long the dashboard waits for an unreachable database when it starts (e.g. started with PostgreSQL).
STARTUP_RETRY_S = 30.0


def stored_figure(storage: BaseStorage, study_name: str, figure_id: str = PARETO_FIGURE_ID) -> dict[str, Any] | None:
    """The figure ``figure_id`` stored in the study for the dashboard, as plotly JSON; None when it is
    missing or half-written (chunks missing, or from two writers that interleaved)."""
    system_attrs = storage.get_study_system_attrs(storage.get_study_id_from_name(study_name))
    return dashboard_figure(system_attrs, figure_id)


def _stored_revision(storage: BaseStorage, study_name: str) -> int | None:
    """How many COMPLETE trials the stored figures show (the fewer of the two); None when one is missing,
    broken, not ours or drawn by an older aiq-search."""
    revisions = []
    for figure_id in FIGURE_IDS:
        figure = stored_figure(storage, study_name, figure_id)
        try:
            meta = figure["layout"]["meta"]  # type: ignore[index]
            if meta.get("aiq_search_figure") != FIGURE_VERSION:
                return None
            revisions.append(int(meta[_REVISION]))
        except (AttributeError, KeyError, TypeError, ValueError):
            return None
    return min(revisions)


# The card's layer labels are cut to their last this many characters (a MobileNet's run to 30 and more).
CARD_LABEL_CHARS = 22


def card_figures(trials: list[FrozenTrial], *, eval_split: str = "validation") -> dict[str, go.Figure]:
    """The dashboard's figures by id, laid out for its half-width card (about 600 × 450 px on a 1280 px
    laptop screen): a short title, no note, no template; the per-layer legend above the plot, the Pareto
    legend inside its lower right corner (small, inaccurate networks are rare: that corner is mostly empty),
    where its four long entries take no height from the plot."""
    figures = {LAYER_FIGURE_ID: layer_efficiency_figure(trials, label_chars=CARD_LABEL_CHARS),
               PARETO_FIGURE_ID: pareto_figure(trials, eval_split=eval_split)}
    titles = {LAYER_FIGURE_ID: "Per-layer efficiency, top 5 by aIQ", PARETO_FIGURE_ID: "aIQ: accuracy against size"}
    for figure_id, figure in figures.items():
        figure.layout.annotations = ()  # the report's note: the card has no room for it
        figure.update_layout(title=dict(text=titles[figure_id], x=0.01, y=0.98, yanchor="top"), template="none",
                             font=dict(size=11), margin=dict(r=10, l=60))
    figures[LAYER_FIGURE_ID].update_layout(
        margin=dict(t=90), legend=dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom"))
    figures[PARETO_FIGURE_ID].update_layout(
        margin=dict(t=40, b=50), legend=dict(orientation="v", x=0.99, xanchor="right", y=0.01, yanchor="bottom",
                                             bgcolor="rgba(255,255,255,0.85)", font=dict(size=10)))
    return figures


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
        figures = card_figures(trials, eval_split=settings.eval_split)
        for figure_id in FIGURE_IDS:
            figures[figure_id].update_layout(meta={_REVISION: len(trials), "aiq_search_figure": FIGURE_VERSION})
            save_plotly_graph_object(study, figures[figure_id], graph_object_id=figure_id)
    return False


def publish_all(storage: BaseStorage, *, write: bool = True) -> list[str]:
    """Refresh the figures of every aiq-search study in the storage (``write``), e.g. ones whose workers were
    killed between finishing a trial and publishing it. Returns the names of those studies. A database
    that refuses the writes (a role that may only read) leaves the figures as they are, in one line."""
    names = [summary.study_name for summary in optuna.get_all_study_summaries(storage, include_best_trial=False)
             if SETTINGS_ATTR in summary.user_attrs]
    for name in names if write else ():
        try:
            publish_figures(optuna.load_study(study_name=name, storage=storage), storage)
        except (sqlalchemy.exc.SQLAlchemyError, StorageInternalError) as exc:
            if is_outage(exc):
                raise
            print(f"aiq-search: the dashboard's figures of {name!r} were not refreshed: the storage refused "
                  f"the write ({outage_reason(exc)})", file=sys.stderr, flush=True)
            break
    return names


def require_optuna_storage(storage_url: str) -> None:
    """Refuse a database that holds no Optuna storage: opening it with Optuna would create Optuna's tables
    in it, and a dashboard only looks. Checked on a separate engine that creates nothing. (A URL that is
    not one, a missing driver or any SQLite file is left to `open_storage`, which checks it the same way,
    read-only where this process may not write it.)"""
    try:
        url = make_url(storage_url)
        if url.get_backend_name() == "sqlite":
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
    checked (it must hold Optuna's tables: nothing is created), opened and, when writes are allowed, every
    aiq-search study's figures refreshed, retrying for up to ``startup_retry_s`` while the database is out of
    reach. A read-only dashboard opens the storage read-only and writes nothing, at start-up or later; so is
    one on a storage this process may not write.
    ``allow_writes`` None allows the dashboard's changes (notes, deleting studies...) only when it is bound
    to this machine's loopback address: reachable from other machines, it is read-only unless True.
    ``artifacts`` is a study's artifact location (a folder or ``s3://bucket/prefix``), so the dashboard can
    offer its trials' weights.
    """
    from optuna_dashboard import wsgi

    server = bind(host, port)
    try:
        # a storage this process may not write (a write-protected SQLite file) makes the dashboard read-only too
        server.read_only = read_only_here(storage_url) or not (
            server.is_loopback if allow_writes is None else allow_writes)

        def open_and_publish() -> tuple[RDBStorage, list[str]]:
            require_optuna_storage(storage_url)
            # pre-pings PostgreSQL links; during an outage, requests wait at most retry_s for a connection
            storage = open_storage(storage_url, create=False, read_only=server.read_only, outage_timeout=retry_s)
            return storage, publish_all(storage, write=not server.read_only)

        storage, server.studies = retry_outages(open_and_publish, within_s=startup_retry_s,
                                                what="opening it for the dashboard")
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
