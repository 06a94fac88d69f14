"""Neural efficiency and aIQ (Schaub & Hotaling, "Assessing Intelligence in Artificial Neural Networks", 2020).

A layer's *state* for one observation is the on/off pattern of its neurons (on = output > 0, taken at the
layer's own output, i.e. before any normalization, activation or dropout that follows it). For a
convolution every spatial position is one observation and the channels are its neurons.

Layer efficiency is the entropy of the observed state distribution divided by the number of neurons (the
entropy's maximum); network efficiency is the geometric mean of the layer efficiencies; and
``aIQ = (network_efficiency * accuracy**beta) ** (1 / (beta + 1))``.

States are counted exactly: each observation's bit pattern is packed losslessly into 64-bit words (no
hashing) on the model's own device; narrow layers are counted in a dense histogram, wide ones buffered
and merged by sorting into a running table of distinct states, so memory grows with the number of
distinct states (plus a bounded buffer) rather than with observations x neurons.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "PROBED_TYPES",
    "EfficiencyProbe",
    "EfficiencyReport",
    "LayerStats",
    "aiq",
    "entropy",
    "measure_efficiency",
    "network_efficiency",
]

#: Module types probed by default (all but the model's last one, its classifier).
PROBED_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

# A layer of up to this many neurons may be counted in a dense histogram of 2**neurons bins
# (2**22 int64 bins = 32 MiB) when a batch has enough observations to make that cheaper than sorting.
_DENSE_MAX_BITS = 22
# Layers this narrow always use the dense histogram (at most 4,096 bins).
_DENSE_ALWAYS_BITS = 12
# Packed codes of wide layers are buffered raw and merged (one sort) into the running table of distinct states
# once they take this many bytes or more than the table itself: each observation is sorted about once, and
# memory stays bounded by ~2x the distinct states (or this buffer).
_MERGE_MIN_BYTES = 32 << 20

_BYTE_WEIGHTS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)


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
    """What was observed of one layer: its width, how often it was seen and how varied its states were."""

    neurons: int
    observations: int
    unique_states: int
    entropy_bits: float
    efficiency: float


@dataclass(frozen=True)
class EfficiencyReport:
    """Per-layer statistics keyed by module name (in model order) and the network efficiency."""

    layers: OrderedDict[str, LayerStats]
    network: float

    @property
    def layer_efficiencies(self) -> dict[str, float]:
        return {name: s.efficiency for name, s in self.layers.items()}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable view, for trial attributes and exported metrics."""
        return {"network": self.network, "layers": {name: asdict(s) for name, s in self.layers.items()}}


# --------------------------------------------------------------------------------------------- counting


def _observations(out: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Bool on/off tensor of an output, channels (neurons) on dim 1, and its neuron count."""
    if out.dim() < 2:
        raise ValueError(f"cannot read neurons from an output of shape {tuple(out.shape)}: expected (N, C, ...)")
    return out > 0, int(out.shape[1])


def _pack(bits: torch.Tensor, neurons: int) -> torch.Tensor:
    """Pack each observation's on/off pattern losslessly: a 1-D int64 code for up to 64 neurons, else an
    (observations, words) int64 matrix. Distinct patterns give distinct codes, so counts stay exact."""
    if neurons <= 64:
        # Channel-by-channel shifts over contiguous (N, positions) slices: no transpose of the activations.
        # In place through one scratch buffer: no allocation (and page faults) per channel.
        dtype = torch.int32 if neurons <= 31 else torch.int64
        packed = bits[:, 0].to(dtype)
        shifted = torch.empty_like(packed)
        for c in range(1, neurons):
            shifted.copy_(bits[:, c]).bitwise_left_shift_(c)
            packed.bitwise_or_(shifted)
        return packed.reshape(-1).to(torch.int64)
    # Wide layers, like numpy.packbits: 8 neurons to a byte, 8 bytes to an int64 word.
    rows = bits.movedim(1, -1).reshape(-1, neurons)
    pad = (-neurons) % 64
    if pad:
        rows = torch.cat([rows, rows.new_zeros(rows.shape[0], pad)], dim=1)
    weights = _BYTE_WEIGHTS.to(rows.device)
    as_bytes = (rows.view(torch.uint8).reshape(rows.shape[0], -1, 8) * weights).sum(-1, dtype=torch.uint8)
    return as_bytes.view(torch.int64)


class _StateCounter:
    """Exact streaming histogram of one layer's states."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.neurons: int | None = None
        self.observations = 0
        self._dense: torch.Tensor | None = None  # counts indexed by the packed state
        self._values: torch.Tensor | None = None  # distinct packed states, (S,) or (S, words)
        self._counts: torch.Tensor | None = None
        self._pending: list[torch.Tensor] = []  # raw packed codes not merged yet
        self._pending_bytes = 0
        self._bad = None  # device flag: a NaN was seen (kept on device to avoid a sync per batch)

    def reset(self) -> None:
        self.__init__(self.name)  # type: ignore[misc]

    def update(self, out: torch.Tensor) -> None:
        out = out.detach()
        if not out.is_floating_point():
            out = out.float()
        bits, neurons = _observations(out)
        if self.neurons is None:
            self.neurons = neurons
        elif neurons != self.neurons:
            raise ValueError(f"layer {self.name!r} changed width from {self.neurons} to {neurons} neurons")
        if bits.numel() == 0:
            return
        # A NaN anywhere makes the sum NaN; one cheap reduction instead of an isnan pass.
        bad = torch.isnan(out.sum())
        self._bad = bad if self._bad is None else self._bad | bad
        n_obs = bits.numel() // neurons
        self.observations += n_obs
        if self._dense is not None or (
            self.observations == n_obs
            and (neurons <= _DENSE_ALWAYS_BITS or (neurons <= _DENSE_MAX_BITS and 4 * n_obs >= 1 << neurons))
        ):
            self._update_dense(bits, neurons)
        else:
            self._update_sparse(bits, neurons)

    def _update_dense(self, bits: torch.Tensor, neurons: int) -> None:
        hist = torch.bincount(_pack(bits, neurons), minlength=1 << neurons)
        if self._dense is None:
            self._dense = hist
        else:
            self._dense += hist

    def _update_sparse(self, bits: torch.Tensor, neurons: int) -> None:
        codes = _pack(bits, neurons)
        self._pending.append(codes)
        self._pending_bytes += codes.numel() * codes.element_size()
        held = 0 if self._values is None else self._values.numel() * self._values.element_size()
        if self._pending_bytes >= max(held, _MERGE_MIN_BYTES):
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        raw = torch.cat(self._pending)
        self._pending, self._pending_bytes = [], 0
        dim = 0 if raw.dim() == 2 else None
        if self._values is None:
            self._values, self._counts = torch.unique(raw, dim=dim, return_counts=True)
            return
        assert self._counts is not None
        values = torch.cat([self._values, raw])
        counts = torch.cat([self._counts, self._counts.new_ones(raw.shape[0])])
        self._values, inverse = torch.unique(values, dim=dim, return_inverse=True)
        self._counts = torch.zeros(self._values.shape[0], dtype=counts.dtype, device=counts.device).index_add_(
            0, inverse, counts
        )

    def state_counts(self) -> torch.Tensor:
        """Counts of the distinct observed states (on the layer's device)."""
        if self.observations == 0 or self.neurons is None:
            raise ValueError(f"layer {self.name!r} was never run: no observations to measure")
        if self._bad is not None and bool(self._bad):
            raise ValueError(
                f"layer {self.name!r} produced NaN activations: the model has diverged or its input holds NaN"
            )
        if self._dense is not None:
            return self._dense[self._dense > 0]
        self._merge()
        assert self._counts is not None
        return self._counts

    def stats(self, alpha: float) -> LayerStats:
        counts = self.state_counts()
        assert self.neurons is not None
        h = entropy(counts, alpha)
        return LayerStats(
            neurons=self.neurons,
            observations=self.observations,
            unique_states=int(counts.numel()),
            entropy_bits=h,
            efficiency=min(h / self.neurons, 1.0),
        )


# --------------------------------------------------------------------------------------------- probing


def _resolve_layers(
    model: nn.Module, layers: str | type[nn.Module] | Sequence[str | type[nn.Module]] | None
) -> OrderedDict[str, nn.Module]:
    named = [(name, m) for name, m in model.named_modules() if name]
    if layers is None:
        candidates = [(name, m) for name, m in named if isinstance(m, PROBED_TYPES)]
        if len(candidates) < 2:
            raise ValueError(
                "the model has no hidden Linear or Conv layer to probe (its only one is taken as the "
                "classifier); pass layers= with module names or types"
            )
        return OrderedDict(candidates[:-1])
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
        self.modules = _resolve_layers(model, layers)
        self._counters = OrderedDict((name, _StateCounter(name)) for name in self.modules)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> EfficiencyProbe:
        if self._handles:
            raise RuntimeError("this EfficiencyProbe is already attached")
        for name, module in self.modules.items():
            counter = self._counters[name]
            self._handles.append(module.register_forward_hook(lambda _m, _i, out, c=counter: c.update(out)))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def reset(self) -> None:
        """Forget every state seen so far (e.g. between epochs)."""
        for c in self._counters.values():
            c.reset()

    def report(self) -> EfficiencyReport:
        stats = OrderedDict((name, c.stats(self.alpha)) for name, c in self._counters.items())
        return EfficiencyReport(layers=stats, network=network_efficiency([s.efficiency for s in stats.values()]))


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


def _model_device(model: nn.Module) -> torch.device:
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
    left in the mode and on the device it was found."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    home = _model_device(model)
    target = torch.device(device) if device is not None else home
    modes = {m: m.training for m in model.modules()}
    probe = EfficiencyProbe(model, layers, alpha=alpha)
    seen = 0
    try:
        model.to(target).eval()
        with probe, torch.inference_mode():
            for x in _batches(inputs, batch_size):
                if x.shape[0]:
                    model(x.to(target, non_blocking=True))
                    seen += x.shape[0]
    finally:
        model.to(home)
        for m, was_training in modes.items():
            m.training = was_training
    if seen == 0:
        raise ValueError("inputs held no samples: no observations to measure")
    return probe.report()
