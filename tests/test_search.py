"""How a study chooses and stops trials: repeats answered from the record, the pruner's first rung, and
pareto mode's dominated rule (issue 19's behaviours; the numbers live in bench/search.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from aiq_search.cli import main
from aiq_search.study import first_prunable_epoch, make_pruner, should_stop
from aiq_search.studyfile import StudySection, load_study_file
from aiq_search.worker import run_study


def _history(accuracies: list[float]) -> list[dict[str, float]]:
    return [{"epoch": e, "val_accuracy": a, "network_efficiency": 0.5} for e, a in enumerate(accuracies, 1)]


@pytest.mark.slow
def test_a_repeat_of_a_finished_network_is_answered_from_its_record(
        write_study: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    path = write_study(study={"n_trials": 4}, search={"width": [4, 8]})
    summary = run_study(load_study_file(path), progress_bar=False)
    assert summary.counts == {"COMPLETE": 4}
    config = load_study_file(path)
    study = optuna.load_study(study_name="tiny", storage=config.study.storage)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    originals = {t.number: t for t in trials if "repeat_of" not in t.user_attrs}
    repeats = [t for t in trials if "repeat_of" in t.user_attrs]
    networks = {json.dumps(t.user_attrs["architecture"], sort_keys=True) for t in trials}
    assert len(originals) == len(networks) <= 2 and len(repeats) == 4 - len(networks)  # each trained once
    for repeat in repeats:
        original = originals[repeat.user_attrs["repeat_of"]]
        assert repeat.value == original.value
        assert repeat.user_attrs["architecture"] == original.user_attrs["architecture"]
        assert repeat.user_attrs["train_seconds"] == 0.0
        assert repeat.user_attrs["weights_artifact_id"] == original.user_attrs["weights_artifact_id"]
    assert main(["status", str(path), "--json"]) == 0
    [shown] = json.loads(capsys.readouterr().out)
    assert sorted(row["number"] for row in shown["best"]) == sorted(originals)  # each network listed once


def test_no_pruner_stops_a_trial_before_its_first_rung() -> None:
    section = StudySection(name="rungs", pruner="halving")
    assert first_prunable_epoch(section, 30) == 5  # max_epochs // 6: aIQ ranks settle by then
    assert first_prunable_epoch(StudySection(name="m", pruner="median"), 30) == 15
    assert first_prunable_epoch(StudySection(name="n", pruner="halving", prune_from_epoch=3), 30) == 3
    study = optuna.create_study(direction="maximize", pruner=make_pruner(section, 30))
    for _ in range(3):  # trials that asked the pruner at every epoch, as the objective does
        good = study.ask()
        assert not any(should_stop(good, section, 30, epoch, 0.9, val_accuracy=0.9, n_params=10)
                       for epoch in range(1, 31))
        study.tell(good, 0.9)
    bad = study.ask()
    stops = [should_stop(bad, section, 30, epoch, 0.1, val_accuracy=0.1, n_params=10) for epoch in range(1, 6)]
    assert stops == [False, False, False, False, True]


def test_pareto_mode_stops_a_network_that_a_smaller_finished_one_beats_at_the_same_epoch() -> None:
    section = StudySection(name="front", mode="pareto", pruner="dominated")
    study = optuna.create_study(directions=["maximize", "minimize"])
    small = optuna.trial.create_trial(values=[0.9, 100.0], user_attrs={"n_params": 100,
                                                                       "history": _history([0.5, 0.8, 0.9])})
    study.add_trial(small)
    trial = study.ask()

    def stop(epoch: int, accuracy: float, n_params: int) -> bool:
        return should_stop(trial, section, 18, epoch, 0.0, val_accuracy=accuracy, n_params=n_params)

    assert not stop(2, 0.1, 500)  # before the first rung (18 // 6 = 3) nothing stops
    assert stop(3, 0.85, 500)  # larger, and below the smaller network's 0.9 at epoch 3
    assert stop(7, 0.85, 500)  # the smaller one stopped at epoch 3: its last accuracy counts
    assert not stop(3, 0.95, 500)  # more accurate: it may join the front
    assert not stop(3, 0.5, 50)  # smaller: not dominated by a larger network
    off = StudySection(name="off", mode="pareto", pruner="none")
    assert not should_stop(trial, off, 18, 3, 0.0, val_accuracy=0.1, n_params=500)


@pytest.mark.slow
def test_a_pareto_study_prunes_through_optunas_public_api(write_study: Callable[..., Path]) -> None:
    path = write_study(study={"mode": "pareto", "sampler": "random", "pruner": "dominated", "n_trials": 4,
                              "prune_from_epoch": 1},
                       search={"width": [4, 64]}, training={"max_epochs": 2, "patience": 2})
    summary = run_study(load_study_file(path), progress_bar=False)
    assert summary.counts.get("COMPLETE") == 4 and set(summary.counts) <= {"COMPLETE", "PRUNED"}
