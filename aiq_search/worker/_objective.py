"""One trial of the built-in search: sample a spec, build the network, train it (reporting aIQ per epoch for
pruning), record its scores and save its weights.

A trial that raises ends FAIL with ``fail_reason`` recorded and the study goes on; KeyboardInterrupt is
recorded too and never swallowed.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna
import torch
from optuna.trial import Trial

from aiq_search.data import DataSplits
from aiq_search.families import build_model, count_parameters
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
from aiq_search.worker._interrupt import allowed as ctrl_c_allowed, check as check_interrupt
from aiq_search.worker._quota import Places, Surplus

__all__ = ["Objective"]


class Objective:
    """The built-in objective of a study file's search, for ``study.optimize``."""

    def __init__(self, config: StudyFile, data: DataSplits, device: torch.device, places: Places, *,
                 on_start: Callable[[Trial], None], on_epoch: Callable[[Trial, EpochReport], None]) -> None:
        self.config = config
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
        self.trial_number = trial.number
        try:
            with ctrl_c_allowed():  # the worker holds Ctrl-C around Optuna's loop; a trial may stop at once
                return self._run(trial)
        except Surplus as exc:
            trial.set_user_attr("fail_reason", str(exc))
            raise
        except BaseException as exc:
            record_failure(trial, exc)
            raise

    def _run(self, trial: Trial) -> float | tuple[float, float]:
        self.places.wait_for_place(trial)
        self.on_start(trial)
        config = self.config
        spec = self.family.sample(trial, self.space, self.data.input_shape, self.data.num_classes)
        seed = config.study.seed + trial.number  # reproducible whichever worker runs it
        model = build_model(spec, seed=seed)
        n_params = count_parameters(model)
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

        result = train(model, self.data, config.training, seed=seed, device=self.device,
                       eval_split=config.study.eval_split, metrics=config.metrics, epoch_callback=report)
        score = record_scores(trial, accuracy=result.eval_accuracy, efficiency=result.efficiency,
                              metrics=config.metrics, test_accuracy=result.test_accuracy,
                              val_accuracy=result.val_accuracy, epochs=result.epochs, seconds=result.seconds,
                              device=result.device, weights_artifact_id=save_weights(trial, model, self.store),
                              history=result.history)
        return (result.eval_accuracy, float(n_params)) if pareto else score

    def _give_way_to_twin(self, trial: Trial) -> None:
        """A grid combination runs once: end this trial (FAIL, with why) if a twin already has it."""
        twin = grid_twin(trial.study, trial)
        if twin is not None:
            how = "completed" if twin.state.is_finished() else "is running"
            raise Surplus(f"a repeat: trial {twin.number} {how} the same grid combination (the grid sampler "
                          "gave it to two workers at once)")
