"""One trial of the built-in search: sample a spec, build the network, train it (reporting aIQ per epoch for
pruning), record its scores and save its weights.

A trial that raises ends FAIL with ``fail_reason`` recorded and the study goes on (`Faults` says when it
must stop instead); KeyboardInterrupt is recorded too and never swallowed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import optuna
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import Trial
from torch import nn

from aiq_search.data import DataSplits
from aiq_search.families import Family, build_model, count_parameters
from aiq_search.metrics import EfficiencyProbe
from aiq_search.study import (
    completed_repeat,
    grid_twin,
    open_artifact_store,
    record_architecture,
    record_failure,
    record_repeat,
    record_scores,
    save_weights,
    should_stop,
)
from aiq_search.studyfile import StudyFile
from aiq_search.training import EpochReport, train
from aiq_search.worker._doubts import doubts
from aiq_search.worker._faults import SAVE, SETUP, TRAIN, Faults
from aiq_search.worker._interrupt import allowed as ctrl_c_allowed, check as check_interrupt
from aiq_search.worker._quota import Places, Surplus

__all__ = ["Objective", "check_network"]


class Objective:
    """The built-in objective of a study file's search, for ``study.optimize``."""

    def __init__(self, config: StudyFile, data: DataSplits, device: torch.device, places: Places, *,
                 on_start: Callable[[Trial], None], on_epoch: Callable[[Trial, EpochReport], None],
                 faults: Faults | None = None) -> None:
        self.config = config
        self.faults = faults or Faults(config.study.name)
        self.stage = SETUP
        self.data = data
        self.device = device
        self.places = places
        self.on_start = on_start
        self.on_epoch = on_epoch
        self.family = config.search.resolve()
        self.space = config.search.space()
        self.store = open_artifact_store(config.study.artifacts, create=True)
        self.trial_number: int | None = None  # the trial last started, to tell whose it was if it is lost

    def __call__(self, trial: Trial) -> float | tuple[float, float]:
        self.trial_number, self.stage = trial.number, SETUP
        try:
            with ctrl_c_allowed():  # the worker holds Ctrl-C around Optuna's loop; a trial may stop at once
                return self._run(trial)
        except Surplus as exc:
            trial.set_user_attr("fail_reason", str(exc))
            raise
        except BaseException as exc:
            if isinstance(exc, Exception) and not isinstance(exc, (optuna.TrialPruned, UpdateFinishedTrialError)):
                self.faults.failed(trial, exc, self.stage)  # first: the storage may be what failed
            record_failure(trial, exc)
            raise

    def _run(self, trial: Trial) -> float | tuple[float, float]:
        self.places.wait_for_place(trial)
        self.on_start(trial)
        config = self.config
        seed = config.study.seed + trial.number  # reproducible whichever worker runs it
        spec, model, n_params = _network(config, self.data, trial, seed, family=self.family, space=self.space)
        record_architecture(trial, spec, n_params, self.family.describe(spec))
        self._give_way_to_twin(trial)
        pareto = config.study.mode == "pareto"
        original = completed_repeat(trial.study, trial, spec)
        if original is not None:  # the sampler drew a finished network again: answer from its record
            record_repeat(trial, original)
            return (original.values[0], original.values[1]) if pareto else original.values[0]

        def report(epoch: EpochReport) -> None:
            check_interrupt()
            self._give_way_to_twin(trial)
            self.on_epoch(trial, epoch)
            aiq = config.metrics.aiq(epoch.efficiency.network, epoch.val_accuracy)
            if should_stop(trial, config.study, config.training.max_epochs, epoch.epoch, aiq,
                           val_accuracy=epoch.val_accuracy, n_params=n_params):
                raise optuna.TrialPruned(f"stopped by the {config.study.pruner} pruner after epoch {epoch.epoch}")

        self.stage = TRAIN
        result = train(model, self.data, config.training, seed=seed, device=self.device,
                       eval_split=config.study.eval_split, metrics=config.metrics, epoch_callback=report)
        self.stage = SAVE
        weights = save_weights(trial, model, self.store)
        self.stage = TRAIN
        score = record_scores(trial, accuracy=result.eval_accuracy, efficiency=result.efficiency,
                              metrics=config.metrics, test_accuracy=result.test_accuracy,
                              val_accuracy=result.val_accuracy, epochs=result.epochs, seconds=result.seconds,
                              device=result.device, weights_artifact_id=weights, history=result.history,
                              train_accuracy=result.train_accuracy, predicted_classes=result.predicted_classes,
                              warnings=doubts(result, self.data.num_classes))
        return (result.eval_accuracy, float(n_params)) if pareto else score

    def _give_way_to_twin(self, trial: Trial) -> None:
        """A grid combination runs once: end this trial (FAIL, with why) if a twin already has it."""
        twin = grid_twin(trial.study, trial)
        if twin is not None:
            how = "completed" if twin.state.is_finished() else "is running"
            raise Surplus(f"a repeat: trial {twin.number} {how} the same grid combination (the grid sampler "
                          "gave it to two workers at once)")


def _network(config: StudyFile, data: DataSplits, trial: optuna.Trial, seed: int, *, family: Family,
             space: Mapping[str, Any]) -> tuple[dict[str, Any], nn.Module, int]:
    """The trial's network, its spec and parameter count; [metrics] layers that name none of its modules
    fail here, before training."""
    spec = family.sample(trial, space, data.input_shape, data.num_classes)
    model = build_model(spec, seed=seed)
    EfficiencyProbe(model, config.metrics.layers)
    return spec, model, count_parameters(model)


def check_network(config: StudyFile, data: DataSplits, faults: Faults) -> None:
    """Set up one network of the search (sample, build, probe; nothing trains, nothing is stored) before the
    worker creates anything: a family that cannot build, or [metrics] layers that name nothing, refuse the
    run in one line (`Faults.refusal`)."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created in memory" line
    try:
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=config.study.seed)).ask()
    finally:
        optuna.logging.set_verbosity(verbosity)
    try:
        _network(config, data, trial, config.study.seed, family=config.search.resolve(),
                 space=config.search.space())
    except Exception as exc:
        raise faults.refusal(exc) from None
