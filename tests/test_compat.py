"""Each fact `aiq_search._compat` holds about a dependency's internals, checked against the installed library:
a failure here names what changed upstream, and the code that relies on it needs a look."""

from __future__ import annotations

import inspect
import json
import re
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import optuna
import plotly.graph_objects as go
import pytest
import sqlalchemy
import sqlalchemy.exc
from conftest import serving
from optuna.distributions import IntDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.study import StudyDirection
from optuna.trial import TrialState

from aiq_search import _compat
from aiq_search._compat import (
    CACHE_PRIVATE_CALLS,
    DASHBOARD_FIGURE_PREFIX,
    OPTUNA_TABLE,
    OVERRIDDEN_METHODS,
    RETRIED_METHODS,
    RETRIED_THROUGH_BASE,
    UNRETRIED_METHODS,
    CleanStaleTrialRetry,
    dashboard_figure,
    driver_error,
    is_stale_check,
    rdb_engine,
    stale_after_s,
)
from aiq_search.readers import LAYER_FIGURE_ID, PARETO_FIGURE_ID, publish_figures
from aiq_search.study import holds_optuna_storage, lost_connection, open_storage
from aiq_search.study._outage import RetryingStorage

pytestmark = [pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
              pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used:UserWarning")]


def _storage(tmp_path: Path, name: str = "optuna.db", cls: type[RDBStorage] = RDBStorage,
             **kwargs: Any) -> RDBStorage:
    return cls(f"sqlite:///{tmp_path / name}", **kwargs)


def _public_methods(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_") and callable(getattr(cls, name))}


def _parameters(function: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


# ----------------------------------------------------------------------------------------- Optuna's schema


def test_an_optuna_storage_has_the_table_compat_names(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    tables = sqlalchemy.inspect(rdb_engine(storage)).get_table_names()
    assert OPTUNA_TABLE in tables, (
        f"optuna {optuna.__version__}'s RDBStorage no longer creates a table {OPTUNA_TABLE!r} (it made {tables}): "
        "holds_optuna_storage would refuse every storage; update aiq_search._compat.OPTUNA_TABLE")
    empty = tmp_path / "empty.db"
    sqlalchemy.create_engine(f"sqlite:///{empty}").connect().close()
    assert holds_optuna_storage(f"sqlite:///{tmp_path / 'optuna.db'}", {})
    assert not holds_optuna_storage(f"sqlite:///{empty}", {})


# ------------------------------------------------------------------------ RDBStorage, as RetryingStorage wraps it


def test_every_method_retrying_storage_wraps_is_still_rdbstorages_with_its_signature() -> None:
    for name in (*RETRIED_METHODS, *OVERRIDDEN_METHODS):
        upstream = inspect.getattr_static(RDBStorage, name, None)
        assert inspect.isfunction(upstream), (
            f"optuna {optuna.__version__}'s RDBStorage.{name} is gone or no longer a plain method ({upstream!r}): "
            "RetryingStorage wraps it (aiq_search._compat)")
    for name in RETRIED_METHODS:
        assert _parameters(getattr(RDBStorage, name)) == _parameters(getattr(BaseStorage, name)), (
            f"optuna {optuna.__version__}'s RDBStorage.{name}{inspect.signature(getattr(RDBStorage, name))} no "
            f"longer has BaseStorage's signature {inspect.signature(getattr(BaseStorage, name))}, which Optuna's "
            "trial cache calls and RetryingStorage retries as it is")
        assert getattr(RetryingStorage, name) is not getattr(RDBStorage, name), f"RetryingStorage misses {name}"
    for name in OVERRIDDEN_METHODS:
        assert _parameters(getattr(RetryingStorage, name)) == _parameters(getattr(RDBStorage, name)), (
            f"optuna {optuna.__version__}'s RDBStorage.{name}{inspect.signature(getattr(RDBStorage, name))} "
            f"changed signature: RetryingStorage overrides it as {inspect.signature(getattr(RetryingStorage, name))}")


def test_rdbstorage_has_no_public_method_that_retrying_storage_has_not_judged() -> None:
    known = {*RETRIED_METHODS, *OVERRIDDEN_METHODS, *RETRIED_THROUGH_BASE, *UNRETRIED_METHODS}
    new = sorted(_public_methods(RDBStorage) - known)
    assert not new, (
        f"optuna {optuna.__version__}'s RDBStorage has public methods that RetryingStorage neither retries nor "
        f"says why not: {new}; add each to RETRIED_METHODS or UNRETRIED_METHODS in aiq_search._compat")
    for name in RETRIED_THROUGH_BASE:
        assert name not in vars(RDBStorage) and name in vars(BaseStorage), (
            f"optuna {optuna.__version__}'s RDBStorage implements {name} itself now, not through the retried "
            "get_all_trials/get_trial of BaseStorage: retry it (RETRIED_METHODS in aiq_search._compat)")


def test_optunas_trial_cache_bypasses_no_other_private_storage_method(tmp_path: Path) -> None:
    cache = type(optuna.storages.get_storage(_storage(tmp_path)))
    called = set(re.findall(r"self\._backend\.(_[a-z]\w*)\(", inspect.getsource(cache)))
    assert called, f"optuna {optuna.__version__}'s trial cache ({cache.__qualname__}) no longer wraps the storage"
    assert called <= CACHE_PRIVATE_CALLS, (
        f"optuna {optuna.__version__}'s trial cache now calls private RDBStorage methods "
        f"{sorted(called - CACHE_PRIVATE_CALLS)} directly, past RetryingStorage's retries and stale guard "
        "(CACHE_PRIVATE_CALLS in aiq_search._compat)")


def test_a_write_made_again_after_it_committed_is_harmless(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    study_id = storage.create_new_study([StudyDirection.MAXIMIZE], "s")
    trial_id = storage.create_new_trial(study_id)
    distribution = IntDistribution(0, 9)
    for _ in range(2):  # each write of RETRIED_METHODS, twice: a retry after the first one's commit landed
        storage.set_study_user_attr(study_id, "k", 1)
        storage.set_study_system_attr(study_id, "k", 1)
        storage.set_trial_param(trial_id, "x", 3, distribution)
        storage.set_trial_intermediate_value(trial_id, 0, 0.5)
        storage.set_trial_user_attr(trial_id, "k", 1)
        storage.set_trial_system_attr(trial_id, "k", 1)
    trial = storage.get_trial(trial_id)
    assert (trial.params, trial.intermediate_values, trial.user_attrs) == ({"x": 3}, {0: 0.5}, {"k": 1})
    waiting = storage.create_new_trial(study_id, optuna.trial.create_trial(state=TrialState.WAITING))
    assert storage.set_trial_state_values(waiting, TrialState.RUNNING)
    assert storage.set_trial_state_values(waiting, TrialState.RUNNING) is False, (
        f"optuna {optuna.__version__}: taking a trial that is no longer WAITING no longer returns False")
    storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [1.0])
    with pytest.raises(UpdateFinishedTrialError):  # RetryingStorage then checks the trial holds what it asked
        storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [1.0])


def test_optuna_wraps_sqlalchemys_error_so_a_lost_connection_is_found(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    storage.create_new_study([StudyDirection.MAXIMIZE], "s")
    engine = rdb_engine(storage)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"ALTER TABLE {OPTUNA_TABLE} RENAME TO gone")
    sqlalchemy.event.listen(engine, "handle_error", lambda context: setattr(context, "is_disconnect", True))
    for call in (storage.get_all_studies, lambda: storage.get_study_id_from_name("s")):
        with pytest.raises(Exception) as raised:
            call()
        error = driver_error(raised.value)
        assert error is not None and error.connection_invalidated, (
            f"optuna {optuna.__version__} raised {raised.value!r} without SQLAlchemy's error in its __cause__ "
            "chain: RetryingStorage no longer sees a lost connection (driver_error in aiq_search._compat)")
        assert lost_connection(raised.value)


def test_the_engine_compat_finds_is_the_one_the_storage_connects_through(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    engine = rdb_engine(storage)
    assert isinstance(engine, sqlalchemy.Engine), f"optuna {optuna.__version__}: RDBStorage.engine is {engine!r}"
    assert engine.url == sqlalchemy.make_url(f"sqlite:///{tmp_path / 'optuna.db'}")
    connects: list[object] = []
    sqlalchemy.event.listen(engine, "do_connect", lambda *args: connects.append(args))
    engine.dispose()
    storage.get_all_studies()
    assert connects, (f"optuna {optuna.__version__}'s RDBStorage connects past its engine attribute: "
                      "RetryingStorage's wait for the server no longer applies (rdb_engine in aiq_search._compat)")


def _stale_study(tmp_path: Path, ages_s: dict[str, int], cls: type[RDBStorage] = RDBStorage,
                 **heartbeat: Any) -> tuple[optuna.Study, RDBStorage, dict[str, int]]:
    """A study with one RUNNING trial per entry of ``ages_s``, its last heartbeat that many seconds old."""
    storage = _storage(tmp_path, f"stale-{len(list(tmp_path.iterdir()))}.db", cls, heartbeat_interval=5,
                       **heartbeat)
    study = optuna.create_study(storage=storage, study_name="stale")
    ids = {}
    for name, age in ages_s.items():
        trial = study.ask({"x": IntDistribution(0, 9)})
        trial.set_user_attr("partial", name)
        ids[name] = storage.get_trial_id_from_study_id_trial_number(
            storage.get_study_id_from_name("stale"), trial.number)
        storage.record_heartbeat(ids[name])
        with rdb_engine(storage).begin() as connection:
            connection.exec_driver_sql(
                f"UPDATE trial_heartbeats SET heartbeat = datetime('now', '-{age} seconds') WHERE trial_id = ?",
                (ids[name],))
    return study, storage, ids


@pytest.mark.parametrize(("grace_period", "after_s", "failed"),
                         [(None, 10, {"13 s"}), (6, 6, {"7 s", "13 s"}), (20, 20, set())])
def test_a_trial_goes_stale_after_the_grace_period_compat_says(tmp_path: Path, grace_period: int | None,
                                                                 after_s: float, failed: set[str]) -> None:
    study, storage, ids = _stale_study(tmp_path, {"7 s": 7, "13 s": 13}, grace_period=grace_period)
    assert stale_after_s(storage) == after_s, (
        f"stale_after_s says {stale_after_s(storage)} s for a grace period {grace_period}: not Optuna's rule")
    optuna.storages.fail_stale_trials(study)
    states = {name: storage.get_trial(trial_id).state for name, trial_id in ids.items()}
    assert {name for name, state in states.items() if state == TrialState.FAIL} == failed, (
        f"optuna {optuna.__version__}'s stale check (heartbeat interval 5 s, grace period {grace_period}) left "
        f"trials {states}: it no longer fails them after stale_after_s (aiq_search._compat), which "
        "RetryingStorage's guard after an outage waits out")


class _Spy(RDBStorage):
    calls: list[tuple[TrialState, Any]]

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        self.calls.append((state, values))
        return super().set_trial_state_values(trial_id, state, values)


def test_optunas_stale_check_fails_a_trial_the_way_compat_recognises(tmp_path: Path) -> None:
    study, storage, _ = _stale_study(tmp_path, {"old": 60}, _Spy)
    storage.calls = []
    optuna.storages.fail_stale_trials(study)
    assert storage.calls and all(is_stale_check(state, values) for state, values in storage.calls), (
        f"optuna {optuna.__version__}'s stale check changed trial states through {storage.calls} rather than "
        "set_trial_state_values(FAIL) without values: RetryingStorage's guard after an outage no longer "
        "recognises it (is_stale_check in aiq_search._compat)")


def test_the_stale_trial_retry_starts_clean(tmp_path: Path) -> None:
    study, storage, ids = _stale_study(tmp_path, {"old": 60},
                                       heartbeat_stale_trial_callback=CleanStaleTrialRetry(max_retry=3))
    optuna.storages.fail_stale_trials(study)
    (retry,) = study.get_trials(states=(TrialState.WAITING,))
    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == 0
    assert retry.params == {"x": study.trials[0].params["x"]}
    assert retry.user_attrs == {}, (
        f"optuna {optuna.__version__}'s RetryHeartbeatStaleTrialCallback no longer builds the retry from the "
        f"trial it is handed: the retry carries the dead attempt's records {retry.user_attrs} "
        "(CleanStaleTrialRetry in aiq_search._compat)")
    assert storage.get_trial(ids["old"]).user_attrs == {"partial": "old"}


# ------------------------------------------------------------------------- optuna-dashboard's stored figures


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _served_figures(root: str, study_id: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"{root}/api/studies/{study_id}", timeout=30) as response:
        detail = json.loads(response.read())
    return {f["id"]: json.loads(f["graph_object"]) for f in detail["plotly_graph_objects"]}


def test_optuna_dashboard_serves_the_figure_compat_reads(recorded_study, tmp_path: Path) -> None:
    import optuna_dashboard

    study = recorded_study(6)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert publish_figures(study, open_storage(url, create=False))
    storage = RDBStorage(url, skip_table_creation=True)
    study_id = storage.get_study_id_from_name(study.study_name)
    keys = [k for k in storage.get_study_system_attrs(study_id) if k.startswith(DASHBOARD_FIGURE_PREFIX)]
    ours_only = "|".join(re.escape(f"{DASHBOARD_FIGURE_PREFIX}{f}:") for f in (PARETO_FIGURE_ID, LAYER_FIGURE_ID))
    assert len(keys) > 1 and all(re.fullmatch(rf"({ours_only})\d+", k) for k in keys), (
        f"optuna-dashboard {optuna_dashboard.__version__} stores figures under keys {keys}, not "
        f"{DASHBOARD_FIGURE_PREFIX}<figure id>:<i> (DASHBOARD_FIGURE_PREFIX in aiq_search._compat)")
    with serving(make_server("127.0.0.1", 0, optuna_dashboard.wsgi(storage), handler_class=_Quiet)) as root:
        for round_ in ("as published", "after a shorter figure replaced it"):
            ours = dashboard_figure(storage.get_study_system_attrs(study_id), PARETO_FIGURE_ID)
            served = _served_figures(root, study_id)
            assert ours is not None and served.get(PARETO_FIGURE_ID) == ours, (
                f"optuna-dashboard {optuna_dashboard.__version__} serves figures {sorted(served)} that "
                f"aiq_search._compat.dashboard_figure does not read as stored ({round_}): its storage format changed")
            optuna_dashboard.save_plotly_graph_object(study, go.Figure(), graph_object_id=PARETO_FIGURE_ID)


def test_compat_names_no_fact_it_does_not_test() -> None:
    """Each name `aiq_search._compat` exports is checked above (a new reliance comes with its test)."""
    source = Path(__file__).read_text()
    untested = [name for name in _compat.__all__ if source.count(name) < 2]
    assert not untested, f"aiq_search._compat exports {untested} without a test in tests/test_compat.py"
