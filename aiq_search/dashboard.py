"""optuna-dashboard on a study storage, with every aiq-search study showing its aIQ Pareto figure there.

The figure lives in the study itself (optuna-dashboard's ``save_plotly_graph_object`` stores it as study
system attributes), so whoever opens the dashboard sees the front without running anything, and every
worker refreshes it through `publish_figures` as trials finish (at most every few seconds) and when it stops.
"""

from __future__ import annotations

import json
import random
import sys
import time
import warnings

import optuna
from optuna.artifacts import FileSystemArtifactStore
from optuna.exceptions import ExperimentalWarning
from optuna_dashboard import run_server, save_plotly_graph_object

# The dashboard's own reader of stored figures: checking with it checks exactly what the dashboard shows.
from optuna_dashboard._custom_plot_data import get_plotly_graph_objects

from aiq_search.plots import pareto_figure
from aiq_search.results import SETTINGS_ATTR, complete_trials, study_settings
from aiq_search.storage import open_storage, redact

PARETO_FIGURE_ID = "aiq-pareto-front"
METRIC_NAMES = {"aiq": ["aIQ"], "pareto": ["accuracy", "n_params"]}
_REVISION = "aiq_search_revision"


def _stored_revision(study: optuna.Study) -> int | None:
    """How many COMPLETE trials the stored figure shows; None when it is missing or half-written."""
    system_attrs = study._storage.get_study_system_attrs(study._study_id)
    stored = get_plotly_graph_objects(system_attrs).get(PARETO_FIGURE_ID)
    if not stored:
        return None
    try:
        return int(json.loads(stored)["layout"]["meta"][_REVISION])
    except (ValueError, KeyError, TypeError):  # chunks from two writers interleaved, or not ours
        return None


def publish_figures(study: optuna.Study, *, attempts: int = 5) -> bool:
    """Store the study's aIQ Pareto figure for the dashboard and name its objectives if they are unnamed.

    Workers call this as trials finish and when they stop. The figure is stored in chunks, so two writers can
    interleave and leave a broken one, and a slow writer can overwrite a newer figure with an older one.
    Hence the figure records how many COMPLETE trials it shows, and a call returns only once the stored
    figure is intact and shows at least as many trials as the study now has, writing (again, after a
    random pause) until then: whoever writes last has checked what stays. A call that finds the figure
    already current writes nothing. Returns False when ``attempts`` writes were all overtaken (by other
    writers, or by trials finishing faster than this writes); the next finished trial publishes again.
    """
    settings = study_settings(study)
    if study.metric_names is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)  # set_metric_names is stable in use since 3.2
            study.set_metric_names(METRIC_NAMES[settings["mode"]])
    for attempt in range(attempts + 1):
        trials = complete_trials(study)
        stored = _stored_revision(study)
        if not trials or (stored is not None and stored >= len(trials)):
            return True
        if attempt == attempts:
            break
        if attempt:
            time.sleep(random.uniform(0.05, 0.25) * attempt)  # let the writer we collided with finish
        figure = pareto_figure(trials, eval_split=settings.get("eval_split", "validation"))
        figure.update_layout(meta={_REVISION: len(trials)}, template="none")  # no template: fewer chunks
        save_plotly_graph_object(study, figure, graph_object_id=PARETO_FIGURE_ID)
    return False


def publish_all(storage: optuna.storages.BaseStorage) -> list[str]:
    """Refresh the figure of every aiq-search study in the storage, e.g. ones whose workers were killed
    between finishing a trial and publishing it. Returns the names of those studies."""
    names = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        if SETTINGS_ATTR in summary.user_attrs:
            publish_figures(optuna.load_study(study_name=summary.study_name, storage=storage))
            names.append(summary.study_name)
    return names


def serve(storage_url: str, host: str = "127.0.0.1", port: int = 8080, *, artifacts: str | None = None) -> None:
    """Serve optuna-dashboard on ``storage_url`` until interrupted (bound to localhost by default).

    ``artifacts`` is a study's artifact directory, so the dashboard can offer its trials' weights.
    """
    storage = open_storage(storage_url, create=False)  # waits out SQLite locks, re-checks PostgreSQL links
    studies = publish_all(storage)
    store = FileSystemArtifactStore(artifacts) if artifacts else None
    print(f"aiq-search: dashboard of {redact(storage_url)} ({len(studies)} aiq-search studies) "
          f"at http://{host}:{port}/dashboard", file=sys.stderr, flush=True)
    run_server(storage, host=host, port=port, artifact_store=store)
