"""How a study chooses and stops trials: its objectives, Optuna sampler and pruner, from the study file."""

from __future__ import annotations

import warnings

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, Trial, TrialState

from aiq_search.studyfile import StudyFile

__all__ = ["directions", "first_prunable_epoch", "grid_exhausted", "grid_twin", "make_pruner", "make_sampler"]


def directions(config: StudyFile) -> list[StudyDirection]:
    """aiq mode maximizes aIQ; pareto mode maximizes accuracy and minimizes parameters."""
    if config.study.mode == "aiq":
        return [StudyDirection.MAXIMIZE]
    return [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]


def make_sampler(config: StudyFile, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """The study file's sampler; each worker gets its own seed so parallel workers do not sample alike."""
    seed = (config.study.seed + worker_index) % 2**32  # numpy's seed range
    name = config.study.sampler
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":  # every combination of the (discrete) space, conditional choices included
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            return optuna.samplers.BruteForceSampler(seed=seed)
    return optuna.samplers.NSGAIISampler(seed=seed)


def first_prunable_epoch(config: StudyFile) -> int | None:
    """The first epoch at which the study's pruner may stop a trial (None: never). The median pruner waits
    for half the epochs: early aIQ says little, and the bar (the median of finished trials) is set by
    survivors, so pruning at epoch 1 would stop nearly all."""
    return {"median": config.training.max_epochs // 2, "hyperband": 0}.get(config.study.pruner)


def make_pruner(config: StudyFile) -> optuna.pruners.BasePruner:
    """Pruning on the per-epoch aIQ, from `first_prunable_epoch` on."""
    if config.study.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=first_prunable_epoch(config))
    if config.study.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=config.training.max_epochs)
    return optuna.pruners.NopPruner()


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
