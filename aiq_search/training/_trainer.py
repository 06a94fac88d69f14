"""A fast trainer for small networks: the whole split lives as tensors on the training device.

Batches are index slices of one seeded permutation per epoch (no DataLoader, no per-sample Python work),
the loss is summed on the device and read once per epoch (no per-batch host sync), and every epoch ends
with one validation pass that gives both the accuracy and the efficiency of the hidden layers, which the
study layer uses for pruning. Early stopping keeps the best-validation weights.

On the CPU, identical seeds give identical results: the permutations come from a generator seeded with
``seed`` and dropout draws from the global generator re-seeded (inside a forked RNG state, so the
caller's random state is untouched) with the same seed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from aiq_search.data import DataSplits
from aiq_search.metrics import DEFAULT_METRICS, EVAL_SPLITS, EfficiencyProbe, EfficiencyReport, MetricsConfig
from aiq_search.training._config import DEFAULT_TRAINING, TrainConfig

__all__ = [
    "DivergenceError",
    "EpochReport",
    "TrainResult",
    "evaluate",
    "resolve_device",
    "train",
]

class DivergenceError(RuntimeError):
    """The training loss (or the model's output) became NaN or infinite."""


@dataclass(frozen=True)
class EpochReport:
    """One epoch: mean training loss and the accuracy on the training batches as they were trained (in
    training mode, so with dropout), then validation accuracy and efficiency from one pass; ``seconds`` is
    the time of the training pass alone."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_accuracy: float
    efficiency: EfficiencyReport
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        """The epoch as plain data, for a trial's recorded history."""
        return {"epoch": self.epoch, "train_loss": self.train_loss, "train_accuracy": self.train_accuracy,
                "val_accuracy": self.val_accuracy, "network_efficiency": self.efficiency.network,
                "layer_efficiencies": self.efficiency.layer_efficiencies, "seconds": self.seconds}


@dataclass(frozen=True)
class TrainResult:
    """The outcome for the best-validation weights; ``efficiency`` and ``eval_accuracy`` come from one pass
    over ``eval_split``; ``history`` holds every epoch (`EpochReport.as_dict`)."""

    val_accuracy: float
    test_accuracy: float
    eval_split: str
    eval_accuracy: float
    efficiency: EfficiencyReport
    epochs: int
    best_epoch: int
    seconds: float
    device: str
    history: list[dict[str, Any]]
    train_accuracy: float  # the best epoch's, on the training batches as trained (training mode)
    predicted_classes: int  # distinct classes predicted on eval_split


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is CUDA when available, else the CPU; a CUDA device that is not there is an error."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but CUDA is not available here")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} asked for, but only {torch.cuda.device_count()} CUDA device(s)")
    elif resolved.type != "cpu":
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return resolved


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """Fraction of ``x`` classified as ``y`` in eval mode; the model's mode is restored afterwards."""
    return _classify(model, x, y, batch_size)[0]


def _classify(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[float, int]:
    """`_accuracy`, and how many distinct classes the model predicts on ``x`` (1: a network that answers one
    class whatever it is shown, e.g. one whose BatchNorm statistics are off in eval mode)."""
    if x.shape[0] == 0:
        raise ValueError("cannot evaluate on an empty split")
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    finite = torch.ones((), dtype=torch.bool, device=x.device)
    predicted: torch.Tensor | None = None
    try:
        with torch.inference_mode():
            for xb, yb in zip(x.split(batch_size), y.split(batch_size), strict=True):
                logits = model(xb)
                finite &= torch.isfinite(logits).all()
                guesses = logits.argmax(1)
                correct += (guesses == yb).sum()
                seen = torch.bincount(guesses, minlength=logits.shape[1]) > 0
                predicted = seen if predicted is None else predicted | seen
    finally:
        model.train(was_training)
    if not bool(finite):
        raise DivergenceError("the model's outputs are NaN or infinite: training has diverged")
    assert predicted is not None  # x is not empty
    return int(correct) / x.shape[0], int(predicted.sum())


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1000,
             metrics: MetricsConfig = DEFAULT_METRICS) -> tuple[float, EfficiencyReport]:
    """Accuracy and efficiency report of ``model`` on ``(x, y)``, from one pass (x on the model's device);
    ``metrics`` says which layers are probed and the entropy's order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    with EfficiencyProbe(model, metrics.layers, alpha=metrics.alpha) as probe:
        accuracy = _accuracy(model, x, y, batch_size)
    return accuracy, probe.report()


def _make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                           weight_decay=config.weight_decay)


def _train_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
                 batch_size: int, generator: torch.Generator) -> tuple[float, float]:
    """One pass over a fresh permutation; the mean loss and the accuracy on the batches as trained, summed
    on the device and read once."""
    model.train()
    n = x.shape[0]
    order = torch.randperm(n, generator=generator).to(x.device, non_blocking=True)
    total = torch.zeros((), device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        targets = y.index_select(0, idx)
        logits = model(x.index_select(0, idx))
        loss = F.cross_entropy(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach() * idx.numel()
        correct += (logits.detach().argmax(1) == targets).sum()
    return float(total / n), int(correct) / n


def train(model: nn.Module, data: DataSplits, config: TrainConfig = DEFAULT_TRAINING, *, seed: int = 0,
          device: str | torch.device | None = None, eval_split: str = "validation",
          metrics: MetricsConfig = DEFAULT_METRICS,
          epoch_callback: Callable[[EpochReport], None] | None = None) -> TrainResult:
    """Train ``model`` on ``data.train``, stop early on validation accuracy, and report the best weights.

    ``seed`` fixes the batch order and dropout; ``device`` overrides ``config.device``; ``metrics`` says how
    efficiency is measured after every epoch and at the end.

    ``epoch_callback`` sees every `EpochReport`; whatever it raises (e.g. ``optuna.TrialPruned``)
    propagates. However training ends, the model (moved to ``device``) holds its best-validation weights.
    Raises `DivergenceError` when the loss becomes NaN or infinite.
    """
    if eval_split not in EVAL_SPLITS:
        raise ValueError(f"eval_split must be one of {', '.join(EVAL_SPLITS)}, got {eval_split!r}")
    started = time.perf_counter()
    dev = resolve_device(config.device if device is None else device)
    data = data.to(dev)
    model.to(dev)
    channels_last = dev.type == "cpu" and any(isinstance(m, nn.Conv2d) for m in model.modules())
    if channels_last:
        # oneDNN's convolutions and max pooling run ~1.7x faster on NHWC tensors (LeNet-5, 2 cores)
        model.to(memory_format=torch.channels_last)
    optimizer = _make_optimizer(model, config)
    generator = torch.Generator().manual_seed(seed)
    best: tuple[float, int, EfficiencyReport, dict[str, torch.Tensor]] | None = None
    history: list[dict[str, Any]] = []
    epoch = 0
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        try:
            for epoch in range(1, config.max_epochs + 1):
                epoch_start = time.perf_counter()
                loss, train_accuracy = _train_epoch(model, data.train_x, data.train_y, optimizer,
                                                    config.batch_size, generator)
                seconds = time.perf_counter() - epoch_start
                if not math.isfinite(loss):
                    raise DivergenceError(f"training diverged: the loss became {loss} in epoch {epoch} "
                                          f"(lr={config.lr}); try a lower learning rate")
                val_accuracy, efficiency = evaluate(model, data.val_x, data.val_y, metrics=metrics)
                if best is None or val_accuracy > best[0]:
                    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    best = (val_accuracy, epoch, efficiency, state)
                report = EpochReport(epoch, loss, train_accuracy, val_accuracy, efficiency, seconds)
                history.append(report.as_dict())
                if epoch_callback is not None:
                    epoch_callback(report)
                if config.patience is not None and epoch - best[1] >= config.patience:
                    break
        finally:
            if best is not None:
                model.load_state_dict(best[3])
            model.to(memory_format=torch.contiguous_format)  # contiguous weights, as safetensors needs
    assert best is not None  # max_epochs >= 1, and a failed epoch raised above
    val_accuracy, best_epoch, val_efficiency, _ = best
    if eval_split == "validation" and not channels_last:
        eval_accuracy, efficiency = val_accuracy, val_efficiency
    else:
        # Measured on the weights as handed back (NCHW after channels_last training): NHWC kernels round
        # differently, and a unit sitting at zero could flip and change a count that an export re-measures.
        eval_accuracy, efficiency = evaluate(model, *data.split(eval_split), metrics=metrics)
    test_accuracy = eval_accuracy if eval_split == "test" else _accuracy(model, data.test_x, data.test_y, 1000)
    predicted_classes = _classify(model, *data.split(eval_split), 1000)[1]
    return TrainResult(
        val_accuracy=val_accuracy,
        test_accuracy=test_accuracy,
        eval_split=eval_split,
        eval_accuracy=eval_accuracy,
        efficiency=efficiency,
        epochs=epoch,
        best_epoch=best_epoch,
        seconds=time.perf_counter() - started,
        device=str(dev),
        history=history,
        train_accuracy=history[best_epoch - 1]["train_accuracy"],
        predicted_classes=predicted_classes,
    )
