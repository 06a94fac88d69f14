"""The grid sampler's study: every combination once, however many workers draw at the same instant."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import pytest
from optuna.exceptions import ExperimentalWarning
from optuna.trial import TrialState

from aiq_search.study import grid_exhausted, grid_twin


def grid_study(sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return optuna.create_study(sampler=sampler or optuna.samplers.BruteForceSampler(seed=0))


def drawn(study: optuna.Study, x: int) -> optuna.Trial:
    """A trial that drew ``x``, as if the sampler had handed it to this worker."""
    study.enqueue_trial({"x": x})
    trial = study.ask()
    assert trial.suggest_int("x", 0, 1) == x
    return trial


def test_the_lower_number_wins_among_running_twins() -> None:
    study = grid_study()
    first, second, other = drawn(study, 0), drawn(study, 0), drawn(study, 1)
    assert grid_twin(study, first) is None
    twin = grid_twin(study, second)
    assert twin is not None and twin.number == first.number
    assert grid_twin(study, other) is None


def test_a_completed_twin_wins_whatever_its_number() -> None:
    study = grid_study()
    first, second = drawn(study, 0), drawn(study, 0)
    study.tell(second, 1.0)
    twin = grid_twin(study, first)
    assert twin is not None and twin.number == second.number and twin.state == TrialState.COMPLETE


def test_ended_twins_that_did_not_complete_leave_the_combination_free() -> None:
    study = grid_study()
    first, second = drawn(study, 0), drawn(study, 0)
    study.tell(first, state=TrialState.FAIL)
    assert grid_twin(study, second) is None


def test_other_samplers_may_repeat_a_combination() -> None:
    study = grid_study(optuna.samplers.RandomSampler(seed=0))
    drawn(study, 0)
    assert grid_twin(study, drawn(study, 0)) is None


@pytest.mark.parametrize("last", [TrialState.COMPLETE, TrialState.RUNNING])
def test_a_grid_is_exhausted_once_every_combination_ended_or_runs(tmp_path: Path, last: TrialState) -> None:
    url = f"sqlite:///{tmp_path / 'grid.db'}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        study = optuna.create_study(study_name="grid", storage=url, sampler=optuna.samplers.BruteForceSampler())
    # told through a plain handle: outside a study's optimize loop the grid sampler may not stop it
    teller = optuna.load_study(study_name="grid", storage=url, sampler=optuna.samplers.RandomSampler())
    assert not grid_exhausted(study)
    teller.tell(drawn(study, 0).number, 1.0)
    assert not grid_exhausted(study)
    trial = drawn(study, 1)
    if last == TrialState.COMPLETE:
        teller.tell(trial.number, 2.0)
    assert grid_exhausted(study)
