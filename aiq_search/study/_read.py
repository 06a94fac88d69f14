"""Reading what aiq_search.study._create stored: a study's settings, its finished trials and their Pareto front.

Plots, export and the dashboard read the same records (docs/CONTRACTS.md, "Trials in storage"); one
reader keeps them agreeing on which trials count and which of them form the front.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from aiq_search.errors import StorageError
from aiq_search.study._records import SETTINGS_ATTR, generic_description
from aiq_search.study._storage import STALE_REASON, open_storage, redact


@dataclass(frozen=True)
class RecordedSettings:
    """What a study recorded when it was created (aiq_search.study._create.settings_record): the validated study
    file as plain data, its data set's input format and where its artifacts are. Read without importing
    torch, so readers start fast."""

    config: dict[str, Any]
    data: dict[str, Any]
    artifacts: str

    @property
    def mode(self) -> str:
        return self.config["study"]["mode"]

    @property
    def eval_split(self) -> str:
        return self.config["study"]["eval_split"]

    @property
    def beta(self) -> float:
        return self.config["metrics"]["beta"]

    @property
    def dataset(self) -> str:
        return self.config["data"]["dataset"]

    @property
    def n_trials(self) -> int:
        return self.config["study"]["n_trials"]


def open_study(storage_url: str, study_name: str) -> optuna.Study:
    """Load an existing study (the storage opened as every worker opens it); a missing study is a one-line
    error that lists the studies the storage does hold."""
    storage = open_storage(storage_url, create=False)
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        held = ", ".join(sorted(optuna.get_all_study_names(storage))) or "no studies"
        raise StorageError(f"no study named {study_name!r} in {redact(storage_url)} (it holds {held})") from None


def study_settings(study: optuna.Study) -> RecordedSettings:
    """The settings an aiq-search study recorded; a one-line error for a study that aiq-search did not make
    (or an older version made)."""
    not_ours = StorageError(f"study {study.study_name!r} was not created by this version of aiq-search "
                            f"(its {SETTINGS_ATTR!r} study attribute is missing or incomplete)")
    settings = study.user_attrs.get(SETTINGS_ATTR)
    if settings is None:
        raise not_ours
    try:
        return RecordedSettings(settings["config"], settings["data"], settings["artifacts"])
    except (TypeError, KeyError):
        raise not_ours from None


def fail_reason(trial: FrozenTrial) -> str | None:
    """Why a FAIL trial failed: the reason its worker recorded, else the heartbeat's (a worker that died
    could record nothing, and Optuna offers no way to write on a trial once it has failed)."""
    if trial.state != TrialState.FAIL:
        return None
    return trial.user_attrs.get("fail_reason") or STALE_REASON


def complete_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The COMPLETE trials in trial-number order: only they carry accuracy, efficiency and aIQ."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(trials, key=lambda t: t.number)


def count_states(trials: Iterable[FrozenTrial]) -> Counter[str]:
    """Trials by state name (``"COMPLETE"``, ``"PRUNED"``, …): the one count that workers, status, progress
    lines and summaries share (a missing state counts 0)."""
    return Counter(t.state.name for t in trials)


def states_in_words(counts: Counter[str]) -> str:
    """The counts in words (``"3 complete, 1 fail"``)."""
    return ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items())) or "no trials"


def require_complete_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The COMPLETE trials, or a clear error when there is none yet to plot or export."""
    trials = complete_trials(study)
    if not trials:
        counts = states_in_words(count_states(study.get_trials(deepcopy=False)))
        raise StorageError(f"study {study.study_name!r} has no COMPLETE trial yet ({counts})")
    return trials


def by_aiq(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Best aIQ first; the earlier trial wins a tie so the order never depends on storage order."""
    return sorted(trials, key=lambda t: (-t.user_attrs["aiq"], t.number))


def pareto_front(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials no other trial beats on both accuracy (higher) and parameter count (lower).

    Computed from the user attributes rather than ``study.best_trials`` so that aIQ-mode studies,
    whose single objective is aIQ, get the same front as Pareto-mode ones. Sorted by parameters.
    """
    ordered = sorted(trials, key=lambda t: (t.user_attrs["n_params"], -t.user_attrs["accuracy"], t.number))
    front: list[FrozenTrial] = []
    best_accuracy = float("-inf")
    params_at_best = -1
    for trial in ordered:
        accuracy, params = trial.user_attrs["accuracy"], trial.user_attrs["n_params"]
        if accuracy > best_accuracy:
            best_accuracy, params_at_best = accuracy, params
            front.append(trial)
        elif accuracy == best_accuracy and params == params_at_best:
            front.append(trial)  # an exact tie: neither dominates the other
    return front


def dead_layers(trial: FrozenTrial) -> list[str]:
    """The probed layers whose efficiency is 0 (every input gave one state), in network order, each as
    ``"name (k of n)"``: one of them makes the geometric mean, the network efficiency and so aIQ 0."""
    layers = trial.user_attrs.get("layer_efficiencies") or {}
    return [f"{name} ({k} of {len(layers)})" for k, (name, value) in enumerate(layers.items(), start=1)
            if value == 0]


def describe_trial(trial: FrozenTrial) -> str:
    """One short line for hover text and tables: the summary the trial's family wrote when the trial
    started, else a generic line of its spec (read without importing any family, so readers start fast)."""
    attrs = trial.user_attrs
    return attrs.get("summary") or generic_description(attrs.get("architecture") or {})
