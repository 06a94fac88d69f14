"""A Lightning callback that scores an `AiqTrial` inside Lightning's own loops: every validation epoch it
measures accuracy and efficiency in the same pass, reports aIQ to the pruner (raising ``optuna.TrialPruned``
when it says so, as Optuna's PyTorchLightningPruningCallback does), and a test pass gives the test accuracy;
`AiqCallback.finish` then records the trial. Needs Lightning: ``pip install 'aiq-search[lightning]'``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from aiq_search.errors import ConfigError
from aiq_search.integration._own_loop import AiqTrial
from aiq_search.metrics import EVAL_SPLITS, EfficiencyProbe, EfficiencyReport

try:
    from lightning.pytorch import Callback, LightningModule, Trainer
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError("aiq_search.integration._lightning needs Lightning: pip install 'aiq-search[lightning]'",
                              name=exc.name) from exc

__all__ = ["AiqCallback"]


def batch_target(batch: Any) -> torch.Tensor:
    """The labels of an ``(inputs, labels)`` batch."""
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ConfigError(f"AiqCallback reads labels from (inputs, labels) batches, got a {type(batch).__name__}; "
                          "pass target= a function that takes a batch and returns its labels")
    return batch[1]


class _Pass:
    """One evaluation pass: the probe counting layer states, and the network's outputs compared with each
    batch's labels, counted exactly (correct / seen)."""

    def __init__(self, network: nn.Module, probe: EfficiencyProbe) -> None:
        self.probe = probe.__enter__()
        self.outputs: torch.Tensor | None = None
        self.hook = network.register_forward_hook(self._keep)
        self.correct: torch.Tensor | int = 0  # summed on the device, read once
        self.seen = 0

    def _keep(self, _module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        self.outputs = output

    def count(self, target: torch.Tensor) -> None:
        if self.outputs is None:
            raise ConfigError("AiqCallback saw no output of the trial's network in an evaluation batch: the "
                              "LightningModule must run the network given to AiqTrial on every batch")
        if self.outputs.shape[0] != target.shape[0]:
            raise ConfigError(f"the network gave {self.outputs.shape[0]} outputs for {target.shape[0]} labels")
        self.correct = self.correct + (self.outputs.argmax(1) == target).sum()
        self.seen += target.shape[0]
        self.outputs = None

    def close(self) -> None:
        self.hook.remove()
        self.probe.__exit__(None, None, None)

    def result(self) -> tuple[float, EfficiencyReport]:
        if self.seen == 0:
            raise ConfigError("AiqCallback saw an evaluation pass without batches")
        return int(self.correct) / self.seen, self.probe.report()


class AiqCallback(Callback):
    """Scores ``aiq`` (an `AiqTrial` of the network the LightningModule trains) in the validation and test
    loops of a single-device ``Trainer``::

        with AiqTrial(trial, net) as aiq:
            callback = AiqCallback(aiq)
            trainer = lightning.Trainer(max_epochs=5, callbacks=[callback])
            trainer.fit(module, train_loader, val_loader)     # aIQ reported each validation epoch
            trainer.test(module, test_loader)                 # the test accuracy
            return callback.finish()

    Each evaluation batch's labels are ``target(batch)`` (default: the second item of an ``(x, y)`` batch)
    and its predictions the argmax of the network's output for it (so the module runs the network once per
    batch). Use evaluation batches as large as `aiq_search.training._trainer.evaluate`'s (1000) for ``evaluate``
    to remeasure the same numbers bit for bit.
    """

    def __init__(self, aiq: AiqTrial, *, target: Callable[[Any], torch.Tensor] = batch_target) -> None:
        super().__init__()
        self.aiq = aiq
        self.target = target
        self.scores: dict[str, tuple[float, EfficiencyReport]] = {}  # split -> its last (accuracy, efficiency)
        self._fresh: set[str] = set()  # splits measured since the network last trained
        self._pass: _Pass | None = None

    def _begin(self) -> None:
        self._end()
        self._pass = _Pass(self.aiq.model, self.aiq.probe())

    def _end(self) -> _Pass | None:
        done, self._pass = self._pass, None
        if done is not None:
            done.close()
        return done

    def _measured(self, split: str) -> tuple[float, EfficiencyReport] | None:
        done = self._end()
        if done is None:  # the sanity check's batches were not counted
            return None
        self.scores[split] = done.result()
        self._fresh.add(split)
        return self.scores[split]

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.world_size > 1:
            raise ConfigError("AiqCallback measures in one process: train each trial on one device")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._fresh.clear()

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._begin()

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._pass is not None:
            self._pass.count(self.target(batch))

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        measured = self._measured("validation")
        if measured is not None:
            self.aiq.report(trainer.current_epoch + 1, *measured)  # raises TrialPruned when the pruner says so

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._begin()

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._pass is not None:
            self._pass.count(self.target(batch))

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._measured("test")

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._end()  # the probe's and the output hook's handles off the network

    def finish(self, *, test_accuracy: float | None = None,
               val_accuracy: float | None = None) -> float | tuple[float, float]:
        """Record the trial (`AiqTrial.finish`) from the last pass over the study's eval split and the other
        split's accuracy (measured by a pass since the network last trained, or given); returns the
        objective's value."""
        given = {"validation": val_accuracy, "test": test_accuracy}
        accuracies: dict[str, float] = {}
        for split in EVAL_SPLITS:
            value = given[split]
            if value is not None and split != self.aiq.eval_split:
                accuracies[split] = value
            elif split in self._fresh:
                accuracies[split] = self.scores[split][0]
            else:
                run, argument = (("trainer.validate", "val_accuracy") if split == "validation"
                                 else ("trainer.test", "test_accuracy"))
                also = "" if split == self.aiq.eval_split else f", or give {argument}="
                raise ConfigError(f"no {split} pass since the network last trained: run {run}(...) with this "
                                  f"callback before finish(){also}")
        accuracy, efficiency = self.scores[self.aiq.eval_split]
        return self.aiq.finish(accuracy, efficiency, test_accuracy=accuracies["test"],
                               val_accuracy=accuracies["validation"])
