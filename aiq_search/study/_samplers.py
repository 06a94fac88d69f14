"""How a study chooses and stops trials: its objectives, Optuna sampler and pruner, and the per-epoch gate
that reports a trial's aIQ and asks whether to stop it — one function, used by the built-in objective and
by the search benchmark's replay (bench/search.py), so the benchmark measures what the service does."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, Trial, TrialState

from aiq_search.studyfile import Mode, StudySection

__all__ = ["completed_repeat", "directions", "first_prunable_epoch", "grid_exhausted", "grid_twin", "make_pruner",
           "make_sampler", "should_stop", "startup_trials"]

# successive halving keeps the best third of the trials at each rung (epochs e, 3e, 9e, ...)
HALVING_REDUCTION = 3


def directions(mode: Mode) -> list[StudyDirection]:
    """aiq mode maximizes aIQ; pareto mode maximizes accuracy and minimizes parameters."""
    if mode == "aiq":
        return [StudyDirection.MAXIMIZE]
    return [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]


def startup_trials(study: StudySection, n_dims: int) -> int:
    """Random trials before the model-based sampler takes over: the file's ``startup_trials``, else one more
    than the number of searched dimensions (at least 4)."""
    return study.startup_trials if study.startup_trials is not None else max(4, n_dims + 1)


def make_sampler(study: StudySection, n_dims: int, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """The study file's sampler; each worker gets its own seed so parallel workers do not sample alike.
    ``n_dims``: how many choices the search space leaves open (for the start-up trials)."""
    seed = (study.seed + worker_index) % 2**32  # numpy's seed range
    startup = startup_trials(study, n_dims)
    if study.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=startup)
    if study.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    if study.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if study.sampler == "grid":  # every combination of the (discrete) space, conditional choices included
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            return optuna.samplers.BruteForceSampler(seed=seed)
    return optuna.samplers.NSGAIISampler(seed=seed)


def first_prunable_epoch(study: StudySection, max_epochs: int) -> int | None:
    """The first epoch at which the study's pruner may stop a trial (None: never). Early aIQ ranks networks
    badly (small networks, which aIQ favours, learn slowly: the rank correlation of epoch-1 with final aIQ
    is 0.4-0.5 on the recorded grids, 0.98 at epoch 5), so no pruner acts before ``prune_from_epoch``
    (default: a sixth of the epochs, at least 1); the median pruner waits for half the epochs, since its bar
    is set by the survivors and creeps up."""
    if study.pruner == "none":
        return None
    if study.pruner == "median":
        return max(1, max_epochs // 2)
    return study.prune_from_epoch if study.prune_from_epoch is not None else max(1, max_epochs // 6)


def make_pruner(study: StudySection, max_epochs: int) -> optuna.pruners.BasePruner:
    """Pruning on the per-epoch aIQ, from `first_prunable_epoch` on (pareto mode prunes in `should_stop`)."""
    first = first_prunable_epoch(study, max_epochs)
    if study.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=first or 0)
    if study.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first or 1, reduction_factor=HALVING_REDUCTION)
    if study.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=first or 1, max_resource=max_epochs,
                                              reduction_factor=HALVING_REDUCTION)
    return optuna.pruners.NopPruner()


def should_stop(trial: Trial, study: StudySection, max_epochs: int, epoch: int, aiq: float, *,
                val_accuracy: float, n_params: int) -> bool:
    """Report epoch ``epoch`` of ``trial`` and say whether to stop it now. aiq mode reports the epoch's aIQ
    to Optuna and asks its pruner. Pareto mode (Optuna keeps no intermediate values for multi-objective
    trials) applies the ``dominated`` rule: stop a trial whose validation accuracy at this epoch is below
    that of a finished trial of no more parameters at the same epoch (or at its last, if it stopped
    sooner) — it can only end dominated if its curve stays below."""
    first = first_prunable_epoch(study, max_epochs)
    if study.mode == "aiq":
        trial.report(aiq, epoch)
        return first is not None and epoch >= first and trial.should_prune()
    if study.pruner != "dominated" or first is None or epoch < first:
        return False
    return any(_accuracy_at(other, epoch) > val_accuracy
               for other in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
               if other.user_attrs.get("n_params", n_params + 1) <= n_params)


def _accuracy_at(trial: FrozenTrial, epoch: int) -> float:
    """A finished trial's validation accuracy at ``epoch`` of its recorded history (its last, if it
    stopped before; -1 without a history)."""
    history: Sequence[dict[str, Any]] = trial.user_attrs.get("history") or ()
    reached = [h for h in history if h["epoch"] <= epoch]
    return float(reached[-1]["val_accuracy"]) if reached else -1.0


class _StopRecorder:
    """A study as a sampler sees it, that records a call of ``stop()`` instead of stopping anything."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True

    def __getattr__(self, name: str) -> object:
        return getattr(self._study, name)


def grid_exhausted(study: optuna.Study) -> bool:
    """Whether a grid study has every combination finished or running, asked of the grid sampler itself
    (its ``after_trial`` stops the study when nothing is left), so a worker that joins late starts no
    repeat. False for other samplers and for a study with no finished trial."""
    sampler = study.sampler
    if not isinstance(sampler, optuna.samplers.BruteForceSampler):
        return False
    finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    if not finished:
        return False
    recorder = _StopRecorder(study)
    last = finished[-1]
    sampler.after_trial(recorder, last, last.state, last.values)  # type: ignore[arg-type]
    return recorder.stopped


def grid_twin(study: optuna.Study, trial: Trial) -> FrozenTrial | None:
    """In a grid study, another trial with ``trial``'s parameters that ``trial`` should give way to: one that
    completed, or one that runs with a lower number. The grid sampler can hand one combination to two
    workers that sample at the same instant (Optuna documents repeats in distributed runs); the lower number
    always wins, so exactly one of the twins goes on. Asked again at each epoch, since a twin's parameters
    may still have been on their way to the storage the first time. None for other samplers."""
    if not isinstance(study.sampler, optuna.samplers.BruteForceSampler):
        return None
    params = trial.params
    for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
        if other.number != trial.number and other.params == params and (
                other.state == TrialState.COMPLETE or other.number < trial.number):
            return other
    return None


def completed_repeat(study: optuna.Study, trial: Trial, spec: dict[str, Any]) -> FrozenTrial | None:
    """A COMPLETE trial of ``study`` (other than ``trial``) with the architecture ``spec``, to answer a
    sampler's repeat from instead of training the same network again (TPE retrained a finished
    architecture in ~20-27% of its trials on the recorded grids). None in a grid study, which draws each
    combination once and gives way to twins instead (`grid_twin`)."""
    if isinstance(study.sampler, optuna.samplers.BruteForceSampler):
        return None
    for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if other.number != trial.number and other.user_attrs.get("architecture") == spec:
            return other
    return None
