"""Where studies stand: trial counts by state and the best trials by aIQ, for ``aiq-search status`` and the
summaries workers print. A reader: it opens storages read-only and imports no torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from aiq_search.study import (
    SETTINGS_ATTR,
    TOP_DEFAULT,
    by_aiq,
    count_states,
    dead_layers,
    describe_trial,
    fail_reason,
    open_storage,
    open_study,
)

__all__ = ["StudyStatus", "TrialRow", "best_rows", "study_status"]


@dataclass(frozen=True)
class TrialRow:
    """One trial as status and summaries show it."""

    number: int
    state: str
    aiq: float | None
    accuracy: float | None
    test_accuracy: float | None
    n_params: int | None
    network_efficiency: float | None
    epochs: int | None
    architecture: str
    params: dict[str, Any]
    fail_reason: str | None = None
    repeat_of: int | None = None  # a repeat answered from this earlier trial's record (nothing trained)
    dead_layers: list[str] = field(default_factory=list)  # efficiency 0: why a trial's aIQ is 0
    warnings: list[str] = field(default_factory=list)  # signs its scores mean little (its worker's)

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialRow:
        attrs = trial.user_attrs
        return cls(trial.number, trial.state.name, attrs.get("aiq"), attrs.get("accuracy"),
                   attrs.get("test_accuracy"), attrs.get("n_params"), attrs.get("network_efficiency"),
                   attrs.get("epochs"), describe_trial(trial), dict(trial.params), fail_reason(trial),
                   attrs.get("repeat_of"), dead_layers(trial), list(attrs.get("warnings") or []))


def best_rows(trials: list[FrozenTrial], top: int = TOP_DEFAULT) -> list[TrialRow]:
    """The COMPLETE trials with the highest aIQ (recorded in both modes); a repeat is shown by its original."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and "aiq" in t.user_attrs
            and "repeat_of" not in t.user_attrs]
    return [TrialRow.of(t) for t in by_aiq(done)[:top]]


@dataclass(frozen=True)
class StudyStatus:
    """One study in a storage: its mode, target, trial counts by state, best trials by aIQ, and in
    trial-number order its failed trials (each with its ``fail_reason``) and the COMPLETE ones whose aIQ a
    dead layer zeroed (each with its ``dead_layers``)."""

    name: str
    mode: str
    n_trials: int | None
    counts: dict[str, int]
    best: list[TrialRow]
    failed: list[TrialRow] = field(default_factory=list)
    dead: list[TrialRow] = field(default_factory=list)  # COMPLETE trials with a layer of efficiency 0

    def as_dict(self) -> dict[str, Any]:
        """Plain data, for ``status --json``."""
        return asdict(self)


def study_status(storage_url: str, study_name: str | None = None, *, top: int = TOP_DEFAULT) -> list[StudyStatus]:
    """The studies in a storage (or just ``study_name``)."""
    if study_name is not None:
        studies = [open_study(storage_url, study_name)]
    else:
        storage = open_storage(storage_url, create=False)
        studies = [optuna.load_study(study_name=name, storage=storage)
                   for name in sorted(optuna.get_all_study_names(storage))]
    statuses = []
    for study in studies:
        config = study.user_attrs.get(SETTINGS_ATTR, {}).get("config", {}).get("study", {})
        mode = config.get("mode") or ("aiq" if len(study.directions) == 1 else "pareto")
        trials = study.get_trials(deepcopy=False)
        ordered = sorted(trials, key=lambda t: t.number)
        failed = [TrialRow.of(t) for t in ordered if t.state == TrialState.FAIL]
        dead = [TrialRow.of(t) for t in ordered if t.state == TrialState.COMPLETE and dead_layers(t)
                and "repeat_of" not in t.user_attrs]
        statuses.append(StudyStatus(study.study_name, mode, config.get("n_trials"), dict(count_states(trials)),
                                    best_rows(trials, top), failed, dead))
    return statuses
