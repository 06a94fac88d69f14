"""Exact counting of a layer's on/off states (the histogram that neural efficiency is the entropy of).

Which axis holds the neurons depends on the layer: a Linear layer's neurons are its output's last dimension
(every other position, e.g. each token of a (N, L, C) sequence, is one observation); a convolution's are
its channels, dim 1, with every spatial position one observation.

Each observation's bit pattern is packed losslessly into 64-bit words (no hashing) on the model's own
device; narrow layers are counted in a dense histogram, wide ones buffered and merged by sorting into a
running table of distinct states, so memory grows with the number of distinct states (plus a bounded
buffer) rather than with observations x neurons. Nothing here reads a device value back to the host until
the counts are asked for.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["StateCounter"]

# A layer of up to this many neurons may be counted in a dense histogram of 2**neurons bins
# (2**22 int64 bins = 32 MiB) when a batch has enough observations to make that cheaper than sorting.
_DENSE_MAX_BITS = 22
# Layers this narrow always use the dense histogram (at most 4,096 bins).
_DENSE_ALWAYS_BITS = 12
# Packed codes of wide layers are buffered raw and merged (one sort) into the running table of distinct states
# once they take this many bytes or more than the table itself: each observation is sorted about once, and
# memory stays bounded by ~2x the distinct states (or this buffer).
_MERGE_MIN_BYTES = 32 << 20

_CONV_SHAPES = {nn.Conv1d: ("N", "C", "L"), nn.Conv2d: ("N", "C", "H", "W"), nn.Conv3d: ("N", "C", "D", "H", "W")}


def _on(out: torch.Tensor) -> torch.Tensor:
    """The on/off tensor ``out > 0``. On the CPU NumPy's comparison (SIMD) is about four times faster than
    PyTorch's, which makes it most of the cost of counting; elsewhere, and for dtypes NumPy lacks, PyTorch's."""
    if out.device.type == "cpu" and out.dtype in (torch.float32, torch.float64, torch.float16):
        return torch.from_numpy(np.greater(out.numpy(), 0))
    return out > 0


def _pack(bits: torch.Tensor, neurons: int) -> torch.Tensor:
    """Pack each observation's on/off pattern losslessly, like numpy.packbits (bit order little): a 1-D int64
    code for up to 64 neurons (bit c of the code is neuron c), else an (observations, words) int64 matrix.
    ``bits`` is (N, neurons, positions...). Distinct patterns give distinct codes, so counts stay exact."""
    n = bits.shape[0]
    b = bits.reshape(n, neurons, -1).view(torch.uint8)  # a view for contiguous and channels-last outputs
    nbytes, words = -(-neurons // 8), -(-neurons // 64)
    # Neurons k, k+8, k+16, ... are bit k of bytes 0, 1, 2, ...: eight strided passes over the bits (no
    # transpose of them), in place through one scratch buffer.
    packed = b[:, 0::8].clone()
    scratch = torch.empty_like(packed)
    for k in range(1, min(neurons, 8)):
        group = b[:, k::8]
        shifted = scratch[:, : group.shape[1]]
        torch.bitwise_left_shift(group, k, out=shifted)
        packed[:, : group.shape[1]].bitwise_or_(shifted)
    # Bytes of one observation side by side, padded to whole 64-bit words (little-endian, as on every
    # platform PyTorch ships for, so a code below 2**neurons indexes the dense histogram).
    rows = packed.new_zeros(n, packed.shape[2], 8 * words)
    rows[:, :, :nbytes] = packed.transpose(1, 2)
    codes = rows.view(torch.int64)
    return codes.reshape(-1) if words == 1 else codes.reshape(-1, words)


def _distinct(values: torch.Tensor, counts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct codes (or code rows) of ``values`` with how often each was seen (``counts``: the weight of
    each value, default 1). Rows are sorted by successive stable sorts, one word at a time: several times
    faster than torch.unique(dim=0) on the CPU."""
    if values.dim() == 1:
        if counts is None:
            return torch.unique(values, return_counts=True)
        distinct, inverse = torch.unique(values, return_inverse=True)
    else:
        order = torch.sort(values[:, -1], stable=True).indices
        for w in range(values.shape[1] - 2, -1, -1):
            order = order[torch.sort(values[order, w], stable=True).indices]
        values = values[order]
        counts = torch.ones_like(order) if counts is None else counts[order]
        first = torch.ones(values.shape[0], dtype=torch.bool, device=values.device)
        first[1:] = (values[1:] != values[:-1]).any(1)
        distinct, inverse = values[first], first.cumsum(0) - 1
    summed = torch.zeros(distinct.shape[0], dtype=counts.dtype, device=counts.device)
    return distinct, summed.index_add_(0, inverse, counts)


class StateCounter:
    """Exact streaming histogram of the states of ``layer`` (named ``name`` in errors), fed tensors of the
    shape that layer outputs: its own output, or that output after a normalization."""

    def __init__(self, name: str, layer: nn.Module) -> None:
        self.name = name
        self._neurons_last = isinstance(layer, nn.Linear)
        conv = next((t for t in _CONV_SHAPES if isinstance(layer, t)), None)
        self._conv = None if conv is None else (conv.__name__, _CONV_SHAPES[conv])
        self.reset()

    def reset(self) -> None:
        self.neurons: int | None = None
        self.observations = 0
        self._dense: torch.Tensor | None = None  # counts indexed by the packed state
        self._values: torch.Tensor | None = None  # distinct packed states, (S,) or (S, words)
        self._counts: torch.Tensor | None = None
        self._pending: list[torch.Tensor] = []  # raw packed codes not merged yet
        self._pending_bytes = 0
        self._bad: torch.Tensor | None = None  # device flag: a NaN was seen (no sync per batch)

    def _neurons_on_dim1(self, out: torch.Tensor) -> torch.Tensor:
        """``out`` as (observations, neurons, positions...), refusing shapes whose neurons are ambiguous."""
        if self._neurons_last:
            return out.reshape(-1, out.shape[-1])
        if self._conv is not None:
            kind, dims = self._conv
            if out.dim() != len(dims):
                raise ValueError(
                    f"layer {self.name!r} ({kind}) got an unbatched or misshapen input (output shape "
                    f"{tuple(out.shape)}): give it batches shaped ({', '.join(dims)})"
                )
        elif out.dim() < 2:
            raise ValueError(f"cannot read neurons of layer {self.name!r} from an output of shape "
                             f"{tuple(out.shape)}: expected (N, C, ...)")
        return out

    def update(self, out: torch.Tensor) -> None:
        out = self._neurons_on_dim1(out.detach())
        if not out.is_floating_point():
            out = out.float()
        neurons = int(out.shape[1])
        if self.neurons is None:
            self.neurons = neurons
        elif neurons != self.neurons:
            raise ValueError(f"layer {self.name!r} changed width from {self.neurons} to {neurons} neurons")
        if out.numel() == 0:
            return
        # A NaN anywhere makes the sum NaN; one cheap reduction instead of an isnan pass.
        bad = torch.isnan(out.sum())
        self._bad = bad if self._bad is None else self._bad | bad
        n_obs = out.numel() // neurons
        self.observations += n_obs
        codes = _pack(_on(out), neurons)
        if self._dense is None and (
            neurons <= _DENSE_ALWAYS_BITS or (neurons <= _DENSE_MAX_BITS and 4 * n_obs >= 1 << neurons)
        ):
            self._to_dense(neurons, out.device)
        if self._dense is not None:
            self._dense += torch.bincount(codes, minlength=1 << neurons)
            return
        self._pending.append(codes)
        self._pending_bytes += codes.numel() * codes.element_size()
        held = 0 if self._values is None else self._values.numel() * self._values.element_size()
        if self._pending_bytes >= max(held, _MERGE_MIN_BYTES):
            self._merge()

    def _to_dense(self, neurons: int, device: torch.device) -> None:
        """Count in a dense histogram from now on (a batch is large enough to make it cheaper than sorting),
        moving the states counted so far into it."""
        self._dense = torch.zeros(1 << neurons, dtype=torch.int64, device=device)
        self._merge()
        if self._values is not None:
            assert self._counts is not None
            self._dense.index_add_(0, self._values, self._counts)
            self._values = self._counts = None

    def _merge(self) -> None:
        if not self._pending:
            return
        raw = torch.cat(self._pending)
        self._pending, self._pending_bytes = [], 0
        if self._values is None:
            self._values, self._counts = _distinct(raw)
            return
        assert self._counts is not None
        ones = torch.ones(raw.shape[0], dtype=self._counts.dtype, device=raw.device)
        self._values, self._counts = _distinct(torch.cat([self._values, raw]), torch.cat([self._counts, ones]))

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
