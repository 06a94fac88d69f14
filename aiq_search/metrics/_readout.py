"""Where a layer's state is read: at the tensor its nonlinearity receives, found from the model's data flow.

A Linear/Conv layer whose output goes straight into a normalization (BatchNorm, LayerNorm, GroupNorm,
InstanceNorm, RMSNorm) before its activation fires according to the normalization's output, so its state
is read there; otherwise at its own output. The first forward pass under the hooks is traced: each probed
layer's output tensor is followed to the first leaf module that receives it (the very same tensor object);
when that module is a normalization taking it as its input, the layer is read at the normalization's
output. A module that only returns its input in place (``nn.ReLU(inplace=True)``) counts as that first
receiver, so conv -> ReLU -> BN is read at the conv. The same pass records the order in which layers run,
which names the classifier (the last probed layer to run) when it is to be left out.

Results stay exact for the traced pass: during it every candidate is counted at its own output and, where
a normalization takes that output, also there; once the pass ends the counters not needed are dropped
(`aiq_search.metrics._efficiency.measure_efficiency` makes that pass a few samples it does not count).
After it, each layer is counted once per batch, from Python-side bookkeeping alone (no host sync).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from aiq_search.metrics._states import StateCounter

__all__ = ["NORM_TYPES", "Readout"]

#: Normalizations a layer's state is read after, when they take the layer's output directly.
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LayerNorm, nn.GroupNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.RMSNorm,
)
_REDIRECTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # layers whose state may be read after a norm
_Outstanding = dict[int, tuple[weakref.ref, str]]  # id(output) -> (the output, probed layer) awaiting a reader


class Readout:
    """Forward hooks that feed each probed layer's states to its own `StateCounter`.

    ``layers`` are the candidates in model order; with ``drop_last_run`` the one that runs last in the
    first pass (the classifier) is dropped from them once that pass has ended.
    """

    def __init__(self, model: nn.Module, layers: OrderedDict[str, nn.Module], *, drop_last_run: bool) -> None:
        self.model = model
        self.layers = layers
        self.read_at = {name: name for name in layers}  # final once `traced`
        self.counters = {name: StateCounter(name, m) for name, m in layers.items()}
        self.traced = False
        self.drop_last_run = drop_last_run
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._outstanding: _Outstanding = {}
        # first pass only
        self._order: list[str] = []  # probed layers in the order they ran
        self._receivers: dict[str, set[str | None]] = {name: set() for name in layers}  # None: not a norm
        self._at_norm = {name: StateCounter(name, m) for name, m in layers.items()}
        self._claimed: dict[str, str] = {}  # norm now running -> the layer whose output it received

    # ----------------------------------------------------------------------------------------- wiring

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self) -> None:
        if self.traced:
            self._attach_steady()
        else:
            self._attach_tracing()

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._settle()

    def reset(self) -> None:
        for c in (*self.counters.values(), *self._at_norm.values()):
            c.reset()

    def _hook(self, module: nn.Module, fn: Callable[..., None], *, pre: bool = False) -> None:
        register = module.register_forward_pre_hook if pre else module.register_forward_hook
        self._handles.append(register(fn))

    def _attach_tracing(self) -> None:
        named = dict(self.model.named_modules())
        for name, module in named.items():
            if name and next(module.children(), None) is None:  # a leaf: it computes, it does not contain
                self._hook(module, lambda m, args, n=name: self._receive(n, m, args), pre=True)
            if name and isinstance(module, NORM_TYPES):
                self._hook(module, lambda _m, _a, out, n=name: self._count_traced_norm(n, out))
        for name, module in self.layers.items():
            self._hook(module, lambda _m, _a, out, n=name: self._count_traced(n, out))
        self._hook(self.model, lambda *_: self.finish_trace())

    def _attach_steady(self) -> None:
        named = dict(self.model.named_modules())
        readers: dict[str, list[str]] = {}
        for name, at in self.read_at.items():
            if at == name:
                self._hook(self.layers[name], lambda _m, _a, out, c=self.counters[name]: c.update(out))
            else:
                self._hook(self.layers[name], lambda _m, _a, out, n=name: self._await(n, out))
                readers.setdefault(at, []).append(name)
        for at, names in readers.items():
            self._hook(named[at], lambda _m, args, out, ns=tuple(names): self._count_at_norm(ns, args, out))
        if readers:
            self._hook(self.model, lambda *_: self._outstanding.clear())

    # ----------------------------------------------------------------------------------------- steady

    def _await(self, name: str, out: torch.Tensor) -> None:
        self._outstanding[id(out)] = (weakref.ref(out), name)

    def _count_at_norm(self, names: tuple[str, ...], args: tuple, out: torch.Tensor) -> None:
        x = args[0] if args else None
        entry = self._outstanding.get(id(x))
        if entry is not None and entry[0]() is x and entry[1] in names:
            del self._outstanding[id(x)]
            self.counters[entry[1]].update(out)

    # ----------------------------------------------------------------------------------------- first pass

    def _count_traced(self, name: str, out: torch.Tensor) -> None:
        self.counters[name].update(out)
        self._order.append(name)
        self._await(name, out)

    def _receive(self, receiver: str, module: nn.Module, args: tuple) -> None:
        """The first leaf module to receive a probed layer's output decides where that layer is read."""
        for i, x in enumerate(args):
            entry = self._outstanding.get(id(x)) if isinstance(x, torch.Tensor) else None
            if entry is None or entry[0]() is not x:
                continue
            del self._outstanding[id(x)]
            name = entry[1]
            at_norm = i == 0 and isinstance(module, NORM_TYPES) and isinstance(self.layers[name], _REDIRECTED)
            self._receivers[name].add(receiver if at_norm else None)
            if at_norm:
                self._claimed[receiver] = name

    def _count_traced_norm(self, norm: str, out: torch.Tensor) -> None:
        name = self._claimed.pop(norm, None)
        if name is not None:
            self._at_norm[name].update(out)

    def _settle(self) -> None:
        """Outputs no module received (taken by functional code, or returned) are read where they are."""
        if not self.traced:
            for _, name in self._outstanding.values():
                self._receivers[name].add(None)
        self._outstanding.clear()

    def finish_trace(self) -> None:
        """Fix where each layer is read and which is the classifier, from what the first pass showed."""
        if self.traced:
            return
        self._settle()
        for name, receivers in self._receivers.items():
            if len(receivers) == 1 and None not in receivers:
                receiver = next(iter(receivers))
                assert receiver is not None  # the set's one element is not None
                self.read_at[name] = receiver
                self.counters[name] = self._at_norm[name]
        if self.drop_last_run and self._order:
            last = self._order[-1]
            self.layers = OrderedDict((n, m) for n, m in self.layers.items() if n != last)
            del self.read_at[last], self.counters[last]
        self.traced = True
        self._at_norm.clear()
        self._order.clear()
        self._claimed.clear()
        if self.attached:
            self.detach()
            self._attach_steady()
