"""Neural efficiency and aIQ (Schaub & Hotaling, "Assessing Intelligence in Artificial Neural Networks", 2020).

A layer's *state* for one observation is the on/off pattern of its neurons, on = the value its nonlinearity
receives is > 0: a Linear/Conv layer is read at its own output, or, when that output goes straight into a
normalization (Linear/Conv -> BatchNorm -> activation), at the normalization's output, or, past a residual
add (``act(bn(conv(x)) + shortcut)``), at the activation module's input (see
`aiq_search.metrics._readout`). A Linear layer's neurons are its output's last dimension, every other
position (e.g. each token) one observation; a convolution's are its channels, every spatial position one observation.

Layer efficiency is the entropy of the observed state distribution divided by the number of neurons (the
entropy's maximum); network efficiency is the geometric mean of the layer efficiencies; and
``aIQ = (network_efficiency * accuracy**beta) ** (1 / (beta + 1))``. States are counted exactly
(`aiq_search.metrics._states`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from aiq_search.metrics._readout import Readout

__all__ = [
    "PROBED_TYPES",
    "EfficiencyProbe",
    "EfficiencyReport",
    "LayerStats",
    "aiq",
    "entropy",
    "measure_efficiency",
    "model_device",
    "network_efficiency",
]

#: Module types probed by default (all but the last of them to run: the model's classifier).
PROBED_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# measure_efficiency first runs this many samples, uncounted, to find where states are read.
_TRACE_SAMPLES = 8


# --------------------------------------------------------------------------------------------- formulas


def _check_unit_interval(name: str, value: float) -> float:
    value = float(value)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return value


def aiq(network_efficiency: float, accuracy: float, beta: float = 2.0) -> float:
    """aIQ = (network_efficiency * accuracy**beta) ** (1 / (beta + 1)); beta weighs accuracy (2 in the paper)."""
    eff = _check_unit_interval("network_efficiency", network_efficiency)
    acc = _check_unit_interval("accuracy", accuracy)
    beta = float(beta)
    if math.isnan(beta) or math.isinf(beta) or beta <= 0:
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    return float((eff * acc**beta) ** (1.0 / (beta + 1.0)))


def network_efficiency(layer_efficiencies: Iterable[float] | Mapping[str, float]) -> float:
    """Geometric mean of the layer efficiencies: one wasteful layer drags the whole network down."""
    values = list(layer_efficiencies.values() if isinstance(layer_efficiencies, Mapping) else layer_efficiencies)
    if not values:
        raise ValueError("network_efficiency needs at least one layer efficiency, got none")
    checked = [_check_unit_interval("layer efficiency", v) for v in values]
    if any(v == 0.0 for v in checked):
        return 0.0
    return float(math.exp(math.fsum(math.log(v) for v in checked) / len(checked)))


def entropy(counts: Sequence[float] | np.ndarray | torch.Tensor, alpha: float = 1.0) -> float:
    """Rényi entropy of order ``alpha`` in bits of a vector of counts (alpha = 1: Shannon; 0: Hartley;
    inf: min-entropy). Zero counts are ignored; the counts need not be normalized."""
    alpha = float(alpha)
    if math.isnan(alpha) or alpha < 0:
        raise ValueError(f"alpha must be >= 0 (or inf), got {alpha!r}")
    c = counts.detach() if isinstance(counts, torch.Tensor) else torch.as_tensor(np.asarray(counts))
    if c.dim() != 1:
        raise ValueError(f"counts must be a 1-D vector, got shape {tuple(c.shape)}")
    c = c.to(torch.float64)
    if c.numel() == 0:
        raise ValueError("counts is empty: no observations to take the entropy of")
    if bool(torch.isnan(c).any()) or bool((c < 0).any()):
        raise ValueError("counts must be non-negative numbers")
    c = c[c > 0]
    if c.numel() == 0:
        raise ValueError("counts are all zero: no observations to take the entropy of")
    p = c / c.sum()
    if alpha == 1.0:
        h = -(p * torch.log2(p)).sum()
    elif alpha == 0.0:
        h = torch.log2(torch.tensor(float(p.numel()), dtype=torch.float64))
    elif math.isinf(alpha):
        h = -torch.log2(p.max())
    else:
        h = torch.log2((p**alpha).sum()) / (1.0 - alpha)
    return max(float(h), 0.0)


# --------------------------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class LayerStats:
    """What was observed of one layer: its width, how often it was seen and how varied its states were;
    ``read_at`` names the module the states were read at: the layer or its normalization (their output), or
    the activation module that receives a residual add of that output (its input)."""

    neurons: int
    observations: int
    unique_states: int
    entropy_bits: float
    efficiency: float
    read_at: str


@dataclass(frozen=True)
class EfficiencyReport:
    """Per-layer statistics keyed by the probed module's name (in model order) and the network efficiency;
    ``skipped`` names the probed layers that never ran (e.g. attention's ``out_proj``, used functionally)."""

    layers: OrderedDict[str, LayerStats]
    network: float
    skipped: tuple[str, ...] = field(default=())

    @property
    def layer_efficiencies(self) -> dict[str, float]:
        return {name: s.efficiency for name, s in self.layers.items()}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable view, for trial attributes and exported metrics."""
        return {"network": self.network, "layers": {name: asdict(s) for name, s in self.layers.items()},
                "skipped": list(self.skipped)}


# --------------------------------------------------------------------------------------------- probing


def _resolve_layers(
    model: nn.Module, layers: str | type[nn.Module] | Sequence[str | type[nn.Module]] | None
) -> OrderedDict[str, nn.Module]:
    """The modules to probe, in model order; ``None``: every Linear/Conv (the classifier among them)."""
    named = [(name, m) for name, m in model.named_modules() if name]
    if layers is None:
        candidates = [(name, m) for name, m in named if isinstance(m, PROBED_TYPES)]
        if len(candidates) < 2:
            raise ValueError(
                "the model has no hidden Linear or Conv layer to probe (its only one is taken as the "
                "classifier); pass layers= with module names or types"
            )
        return OrderedDict(candidates)
    wanted = [layers] if isinstance(layers, (str, type)) else list(layers)
    if not wanted:
        raise ValueError("layers= is empty: name at least one module or module type to probe")
    by_name = dict(named)
    chosen: OrderedDict[str, nn.Module] = OrderedDict()
    names = [w for w in wanted if isinstance(w, str)]
    types = tuple(w for w in wanted if isinstance(w, type))
    for w in wanted:
        if not isinstance(w, (str, type)):
            raise TypeError(f"layers= takes module names or nn.Module types, got {w!r}")
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"no module named {missing[0]!r} in the model; its modules are: {', '.join(by_name)}")
    for name, m in named:  # model order, whatever order the caller gave
        if name in names or (types and isinstance(m, types)):
            chosen[name] = m
    if not chosen:
        raise ValueError(f"no module of type {', '.join(t.__name__ for t in types)} in the model")
    return chosen


class EfficiencyProbe:
    """Counts layer states while the caller drives the model, so one evaluation pass can give both accuracy
    and efficiency::

        with EfficiencyProbe(model) as probe, torch.no_grad():
            for x, y in loader:
                correct += (model(x).argmax(1) == y).sum()
        report = probe.report()

    The first forward pass of ``model`` under the probe shows where each layer's state is read (after a
    normalization that takes its output) and, for the default layers, which one is the classifier (the last
    Linear/Conv to run), which is then left out.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: str | type[nn.Module] | Sequence[str | type[nn.Module]] | None = None,
        *,
        alpha: float = 1.0,
    ) -> None:
        self.model = model
        self.alpha = float(alpha)
        if math.isnan(self.alpha) or self.alpha < 0:
            raise ValueError(f"alpha must be >= 0 (or inf), got {alpha!r}")
        self._readout = Readout(model, _resolve_layers(model, layers), drop_last_run=layers is None)

    @property
    def modules(self) -> OrderedDict[str, nn.Module]:
        """The probed layers, in model order. For the default layers, until a forward pass has shown which
        one runs last, the classifier is taken to be the last one registered."""
        layers = self._readout.layers
        if self._readout.traced or not self._readout.drop_last_run:
            return OrderedDict(layers)
        return OrderedDict(list(layers.items())[:-1])

    def __enter__(self) -> EfficiencyProbe:
        if self._readout.attached:
            raise RuntimeError("this EfficiencyProbe is already attached")
        self._readout.attach()
        return self

    def __exit__(self, *exc: object) -> None:
        self._readout.detach()

    def reset(self) -> None:
        """Forget every state seen so far (e.g. between epochs)."""
        self._readout.reset()

    def report(self) -> EfficiencyReport:
        """Statistics of every probed layer that ran; raises ValueError when none did."""
        readout = self._readout
        readout.finish_trace()
        stats: OrderedDict[str, LayerStats] = OrderedDict()
        skipped = []
        for name, counter in readout.counters.items():
            if counter.observations == 0:
                skipped.append(name)
                continue
            counts = counter.state_counts()
            assert counter.neurons is not None
            h = entropy(counts, self.alpha)
            stats[name] = LayerStats(neurons=counter.neurons, observations=counter.observations,
                                     unique_states=int(counts.numel()), entropy_bits=h,
                                     efficiency=min(h / counter.neurons, 1.0), read_at=readout.read_at[name])
        if not stats:
            raise ValueError(f"no probed layer ran ({', '.join(skipped)}): no observations to measure")
        return EfficiencyReport(layers=stats, network=network_efficiency([s.efficiency for s in stats.values()]),
                                skipped=tuple(skipped))


def _batches(inputs: torch.Tensor | Iterable[Any], batch_size: int) -> Iterator[torch.Tensor]:
    if isinstance(inputs, torch.Tensor):
        if inputs.shape[0] == 0:
            raise ValueError("inputs is an empty tensor: no observations to measure")
        yield from inputs.split(batch_size)
        return
    for batch in inputs:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"each batch must be a tensor or an (x, y) pair of tensors, got {type(x).__name__}")
        yield x


def model_device(model: nn.Module) -> torch.device:
    """Where the model's tensors live (CPU for a model without any)."""
    for tensor in [*model.parameters(), *model.buffers()]:
        return tensor.device
    return torch.device("cpu")


def measure_efficiency(
    model: nn.Module,
    inputs: torch.Tensor | Iterable[Any],
    *,
    layers: str | type[nn.Module] | Sequence[str | type[nn.Module]] | None = None,
    batch_size: int = 1000,
    device: str | torch.device | None = None,
    alpha: float = 1.0,
) -> EfficiencyReport:
    """Evaluate ``model`` on ``inputs`` (a tensor, or an iterable of batches or ``(x, y)`` pairs) and report
    the efficiency of its probed layers. The model runs in eval mode on its own device (or ``device``) and is
    left in the mode and on the device it was found; it runs once more, uncounted, on the first few samples,
    to find where each layer's state is read."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    home = model_device(model)
    target = torch.device(device) if device is not None else home
    modes = {m: m.training for m in model.modules()}
    probe = EfficiencyProbe(model, layers, alpha=alpha)
    seen = 0
    try:
        model.to(target).eval()
        with probe, torch.inference_mode():
            for x in _batches(inputs, batch_size):
                if x.shape[0]:
                    x = x.to(target, non_blocking=True)
                    if seen == 0:
                        # The probe's first pass finds where states are read, counting some layers twice:
                        # give it a few samples and forget them, so each batch is counted once, as it is.
                        model(x[:_TRACE_SAMPLES])
                        probe.reset()
                    model(x)
                    seen += x.shape[0]
    finally:
        model.to(home)
        for m, was_training in modes.items():
            m.training = was_training
    if seen == 0:
        raise ValueError("inputs held no samples: no observations to measure")
    return probe.report()

