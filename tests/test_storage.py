"""The workers' storage: a running trial's records are batched, never lost, and always visible to its own
process; the count query agrees with Optuna's reads; a raced trial waits for its place or gives itself up."""

from __future__ import annotations

import math
import threading
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from aiq_search.storage import STALE_REASON, BufferedRDBStorage, open_storage
from aiq_search.study import _counts, _Surplus, _wait_for_place


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'buffered.db'}"
    return request.getfixturevalue("postgres_url")


def two_views(url: str, **kwargs: object) -> tuple[optuna.Study, optuna.Study]:
    """The same study through this worker's buffered storage and through another process's plain one."""
    storage = open_storage(url, **kwargs)
    assert isinstance(storage, BufferedRDBStorage)
    mine = optuna.create_study(storage=storage, study_name="buffered")
    other = optuna.load_study(study_name="buffered", storage=optuna.storages.RDBStorage(url))
    return mine, other


def stored(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    return study.get_trials(deepcopy=False)[number]


def test_params_and_curve_are_batched_but_seen_at_once_here(url: str) -> None:
    mine, other = two_views(url)
    warmup = mine.ask()  # the first use of a name is written at once, checked against the study's records
    warmup.suggest_int("width", 1, 8)
    warmup.suggest_float("lr", 1e-3, 1.0, log=True)
    assert stored(other, 0).params == warmup.params
    mine.tell(warmup, 0.1)

    trial = mine.ask()
    width = trial.suggest_int("width", 1, 8)
    lr = trial.suggest_float("lr", 1e-3, 1.0, log=True)
    trial.report(0.25, 0)
    trial.report(0.5, 1)
    assert stored(other, 1).params == {} and stored(other, 1).intermediate_values == {}  # not written yet
    for seen in (mine.get_trials()[1], mine._storage.get_trial(trial._trial_id)):  # this process sees them
        assert seen.params == {"width": width, "lr": lr} and seen.intermediate_values == {0: 0.25, 1: 0.5}
    assert mine._storage.get_trial_param(trial._trial_id, "lr") == lr

    backend = mine._storage._backend
    backend.set_trial_user_attrs(trial._trial_id, {"architecture": {"widths": [width]}, "n_params": 7})
    written = stored(other, 1)  # one transaction: the attributes with everything pending
    assert written.params == {"width": width, "lr": lr} and written.intermediate_values == {0: 0.25, 1: 0.5}
    assert written.user_attrs == {"architecture": {"widths": [width]}, "n_params": 7}

    trial.report(float("nan"), 2)
    trial.report(float("inf"), 3)
    mine.tell(trial, 0.75)  # telling writes what is pending first
    done = stored(other, 1)
    assert done.state == TrialState.COMPLETE and done.value == 0.75
    assert sorted(done.intermediate_values) == [0, 1, 2, 3]
    assert math.isnan(done.intermediate_values[2]) and done.intermediate_values[3] == math.inf
    assert done.distributions == {"width": IntDistribution(1, 8), "lr": FloatDistribution(1e-3, 1.0, log=True)}


def test_reads_from_memory_only_while_nothing_else_changed(url: str) -> None:
    mine, other = two_views(url)
    trial = mine.ask()
    trial.report(0.5, 0)
    backend = mine._storage._backend
    assert backend._only_own_running(mine._study_id, set(), -1) is not None  # only its own running trial
    assert [t.intermediate_values for t in mine.get_trials()] == [{0: 0.5}]
    other.ask()  # another worker's new trial is read from the database, with this one from memory
    assert backend._only_own_running(mine._study_id, set(), -1) is None
    assert [(t.number, t.intermediate_values) for t in mine.get_trials()] == [(0, {0: 0.5}), (1, {})]
    assert [t.intermediate_values for t in other.get_trials()] == [{}, {}]


def test_a_long_trial_writes_its_curve_every_interval(url: str) -> None:
    mine, other = two_views(url)
    mine._storage._backend.flush_interval_s = 0.0  # every report is "late": written at once
    trial = mine.ask()
    trial.report(0.5, 0)
    assert stored(other, 0).intermediate_values == {0: 0.5}


def test_a_pruned_trial_keeps_its_last_reported_value(url: str) -> None:
    mine, other = two_views(url)
    trial = mine.ask()
    trial.report(0.3, 0)
    trial.report(0.4, 1)
    mine.tell(trial, state=TrialState.PRUNED)
    pruned = stored(other, 0)
    assert pruned.state == TrialState.PRUNED and pruned.value == 0.4 and pruned.intermediate_values == {0: 0.3, 1: 0.4}


def test_attributes_that_cannot_be_stored_write_nothing(url: str) -> None:
    mine, other = two_views(url)
    trial = mine.ask()
    trial.report(0.5, 0)
    backend = mine._storage._backend
    with pytest.raises(TypeError):
        backend.set_trial_user_attrs(trial._trial_id, {"accuracy": 0.9, "device": object()})
    assert stored(other, 0).user_attrs == {} and stored(other, 0).intermediate_values == {}
    backend.set_trial_user_attrs(trial._trial_id, {"accuracy": 0.9})  # what was pending is still there
    assert stored(other, 0).user_attrs == {"accuracy": 0.9} and stored(other, 0).intermediate_values == {0: 0.5}


def test_a_trial_another_worker_ended_is_given_up(url: str) -> None:
    mine, other = two_views(url)
    trial = mine.ask()
    trial.report(0.5, 0)
    other._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)  # as a heartbeat check would
    assert mine.get_trials()[0].state == TrialState.FAIL  # the read drops what it had pending
    with pytest.raises(UpdateFinishedTrialError):
        mine._storage._backend.set_trial_user_attrs(trial._trial_id, {"accuracy": 0.9})
    mine._storage._backend.set_fail_reason(trial._trial_id, STALE_REASON)  # the reason can still be recorded
    assert stored(other, 0).user_attrs == {"fail_reason": STALE_REASON}


def test_counts_agree_with_optunas_reads(url: str) -> None:
    mine, _ = two_views(url)
    for state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED, TrialState.COMPLETE):
        trial = mine.ask()
        mine.tell(trial, 1.0 if state == TrialState.COMPLETE else None, state=state)
    mine.ask()
    mine.enqueue_trial({})
    expected = Counter(t.state for t in mine.get_trials(deepcopy=False))
    assert _counts(mine) == expected == Counter({TrialState.COMPLETE: 2, TrialState.FAIL: 1,
                                                 TrialState.PRUNED: 1, TrialState.RUNNING: 1,
                                                 TrialState.WAITING: 1})
    assert _counts(mine, below_number=3) == Counter({TrialState.COMPLETE: 1, TrialState.FAIL: 1,
                                                     TrialState.PRUNED: 1})


@pytest.mark.parametrize("first_ends", [TrialState.COMPLETE, TrialState.FAIL])
def test_a_raced_trial_waits_for_its_place(tmp_path: Path, first_ends: TrialState) -> None:
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 'race.db'}"))
    first = study.ask()  # worker A's trial: the last one a study of 1 needs
    late = study.ask()  # worker B counted the study before A asked, so it started one too
    timer = threading.Timer(0.2, lambda: study.tell(first, 0.5 if first_ends == TrialState.COMPLETE else None,
                                                    state=first_ends))
    timer.start()
    try:
        if first_ends == TrialState.COMPLETE:  # B's trial is not needed: it gives itself up
            with pytest.raises(_Surplus, match="not needed: 1 earlier trials completed the study of 1"):
                _wait_for_place(late, 1, Counter(), poll_s=0.01)
        else:  # A's trial failed: B's runs in its place
            _wait_for_place(late, 1, Counter(), poll_s=0.01)
    finally:
        timer.join()
    assert study.get_trials()[0].state == first_ends


def test_a_trial_that_cannot_fill_the_study_does_not_ask_the_database(tmp_path: Path) -> None:
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 'place.db'}"))
    for _ in range(3):
        study.tell(study.ask(), state=TrialState.FAIL)
    trial = study.ask()  # number 3; three FAIL trials below it, so none below can fill a study of 1
    study._storage = None  # any storage access would raise
    _wait_for_place(trial, 1, Counter({TrialState.FAIL: 3}), poll_s=0.01)
