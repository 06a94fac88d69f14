"""Where a layer's state is read: at the tensor its nonlinearity receives, found from the model's data flow.

A Linear/Conv layer whose output goes straight into a normalization (BatchNorm, LayerNorm, GroupNorm,
InstanceNorm, RMSNorm) before its activation fires according to the normalization's output, so its state is
read there; otherwise at its own output. Past a residual add (``act(bn(conv(x)) + shortcut)``, in place or
not) the activation module receives the sum, so the layer is read at that activation's input: the tensor the
layer (or its normalization) gave is followed through an add whose left operand it is (the tensor added to:
``out + shortcut``, ``out += shortcut``, ``torch.add(out, shortcut)``) to the activation module
(`ACTIVATION_TYPES`) that receives the result. Adds are seen through a `TorchFunctionMode` active during the
model's forward pass, in the first pass always and afterwards only for models read that way.

The first forward pass under the hooks is traced: each probed layer's output tensor is followed to the first
leaf module that receives it (the very same tensor object); when that module is a normalization taking it as
its input, the layer is read at the normalization's output. A module that only returns its input in place
(``nn.ReLU(inplace=True)``) counts as that first receiver, so conv -> ReLU -> BN is read at the conv. The same
pass records the order in which layers run, which names the classifier (the last probed layer to run) when it
is to be left out.

Results stay exact for the traced pass: during it every candidate is counted at its own output and, where a
normalization takes that output or an activation the sum of a residual add, also there; once the pass ends the
counters not needed are dropped (`aiq_search.metrics._efficiency.measure_efficiency` makes that pass a few
samples it does not count). After it, each layer is counted once per batch, from Python-side bookkeeping alone
(no host sync).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from aiq_search.metrics._states import StateCounter

__all__ = ["ACTIVATION_TYPES", "NORM_TYPES", "Readout"]

#: Normalizations a layer's state is read after, when they take the layer's output directly.
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LayerNorm, nn.GroupNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.RMSNorm,
)
#: Activation modules a layer is read at the input of, past a residual add.
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus,
)
_ADDS = frozenset({"add", "add_", "__add__", "__iadd__"})  # names of the add ops a residual is taken by
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
        self._addends: _Outstanding = {}  # tensors a residual add may take (a layer's or its norm's output)
        self._sums: _Outstanding = {}  # results of such adds, awaiting an activation
        self._adds = _AddWatch(self)
        self._past_add: dict[str, str] = {}  # steady: layer -> the module whose output the add takes
        # first pass only
        self._order: list[str] = []  # probed layers in the order they ran
        self._receivers: dict[str, set[str | None]] = {name: set() for name in layers}  # None: not a norm
        self._at_norm = {name: StateCounter(name, m) for name, m in layers.items()}
        self._at_activation = {name: StateCounter(name, m) for name, m in layers.items()}
        self._activations: dict[str, set[str | None]] = {name: set() for name in layers}  # None: not one
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
        self._adds.stop()
        self._settle()

    def reset(self) -> None:
        for c in (*self.counters.values(), *self._at_norm.values(), *self._at_activation.values()):
            c.reset()

    def _hook(self, module: nn.Module, fn: Callable[..., None], *, pre: bool = False) -> None:
        register = module.register_forward_pre_hook if pre else module.register_forward_hook
        self._handles.append(register(fn))

    def _watch_adds(self) -> None:
        """Watch adds for the length of each forward pass of the model (also one that raises)."""
        self._handles.append(self.model.register_forward_pre_hook(lambda *_: self._adds.start()))
        self._handles.append(self.model.register_forward_hook(lambda *_: self._end_pass(), always_call=True))

    def _end_pass(self) -> None:
        self._adds.stop()
        self._addends.clear()
        self._sums.clear()

    def added(self, addend: object, result: object) -> None:
        """An add took ``addend`` as its left operand: if a layer gave it, that layer's state may be read
        wherever the result goes."""
        entry = self._addends.get(id(addend))
        if entry is not None and entry[0]() is addend and isinstance(result, torch.Tensor):
            self._sums[id(result)] = (weakref.ref(result), entry[1])

    def _attach_tracing(self) -> None:
        named = dict(self.model.named_modules())
        for name, module in named.items():
            if name and next(module.children(), None) is None:  # a leaf: it computes, it does not contain
                self._hook(module, lambda m, args, n=name: self._receive(n, m, args), pre=True)
            if name and isinstance(module, NORM_TYPES):
                self._hook(module, lambda _m, _a, out, n=name: self._count_traced_norm(n, out))
        for name, module in self.layers.items():
            self._hook(module, lambda _m, _a, out, n=name: self._count_traced(n, out))
        self._watch_adds()
        self._hook(self.model, lambda *_: self.finish_trace())

    def _attach_steady(self) -> None:
        named = dict(self.model.named_modules())
        readers: dict[str, list[str]] = {}
        for name, at in self.read_at.items():
            if name in self._past_add:
                continue  # read past a residual add, below
            if at == name:
                self._hook(self.layers[name], lambda _m, _a, out, c=self.counters[name]: c.update(out))
            else:
                self._hook(self.layers[name], lambda _m, _a, out, n=name: self._await(n, out))
                readers.setdefault(at, []).append(name)
        for at, names in readers.items():
            self._hook(named[at], lambda _m, args, out, ns=tuple(names): self._count_at_norm(ns, args, out))
        if readers:
            self._hook(self.model, lambda *_: self._outstanding.clear())
        activations: dict[str, list[str]] = {}
        for name, given_by in self._past_add.items():
            self._hook(named[given_by], lambda _m, _a, out, n=name: self._offer(n, out))
            activations.setdefault(self.read_at[name], []).append(name)
        for at, names in activations.items():
            self._hook(named[at], lambda _m, args, ns=tuple(names): self._count_sum(ns, args), pre=True)
        if activations:
            self._watch_adds()

    # ----------------------------------------------------------------------------------------- steady

    def _await(self, name: str, out: torch.Tensor) -> None:
        self._outstanding[id(out)] = (weakref.ref(out), name)

    def _count_at_norm(self, names: tuple[str, ...], args: tuple, out: torch.Tensor) -> None:
        x = args[0] if args else None
        entry = self._outstanding.get(id(x))
        if entry is not None and entry[0]() is x and entry[1] in names:
            del self._outstanding[id(x)]
            self.counters[entry[1]].update(out)

    def _offer(self, name: str, out: torch.Tensor) -> None:
        self._addends[id(out)] = (weakref.ref(out), name)

    def _sum_for(self, args: tuple) -> tuple[torch.Tensor, str] | None:
        """The activation's input when it is the result of a watched add: with the layer it is read for."""
        x = args[0] if args else None
        entry = self._sums.get(id(x))
        if entry is None or entry[0]() is not x:
            return None
        del self._sums[id(x)]
        assert isinstance(x, torch.Tensor)
        return x, entry[1]

    def _count_sum(self, names: tuple[str, ...], args: tuple) -> None:
        found = self._sum_for(args)
        if found is not None and found[1] in names:
            self.counters[found[1]].update(found[0])

    # ----------------------------------------------------------------------------------------- first pass

    def _count_traced(self, name: str, out: torch.Tensor) -> None:
        self.counters[name].update(out)
        self._order.append(name)
        self._await(name, out)
        self._offer(name, out)

    def _receive(self, receiver: str, module: nn.Module, args: tuple) -> None:
        """The first leaf module to receive a probed layer's output decides where that layer is read; one
        that receives the result of a residual add taking that output, whether it is read past the add."""
        summed = self._sum_for(args)
        if summed is not None:
            x, name = summed
            at_activation = isinstance(module, ACTIVATION_TYPES)
            self._activations[name].add(receiver if at_activation else None)
            if at_activation:
                self._at_activation[name].update(x)
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
            self._offer(name, out)

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
            norm = _only(receivers)
            if norm is not None:
                self.read_at[name] = norm
                self.counters[name] = self._at_norm[name]
            activation = _only(self._activations[name])
            if activation is not None:
                self._past_add[name] = self.read_at[name]  # the module whose output the add takes
                self.read_at[name] = activation
                self.counters[name] = self._at_activation[name]
        if self.drop_last_run and self._order:
            last = self._order[-1]
            self.layers = OrderedDict((n, m) for n, m in self.layers.items() if n != last)
            del self.read_at[last], self.counters[last]
            self._past_add.pop(last, None)
        self.traced = True
        self._at_norm.clear()
        self._at_activation.clear()
        self._activations.clear()
        self._order.clear()
        self._claimed.clear()
        if self.attached:
            self.detach()
            self._attach_steady()


def _only(receivers: set[str | None]) -> str | None:
    """The one module every pass read a layer at, or None when there was none, or more than one."""
    return next(iter(receivers)) if len(receivers) == 1 else None


class _AddWatch(TorchFunctionMode):
    """Tells the readout about every add while it is on (one forward pass): see the module docstring."""

    def __init__(self, readout: Readout) -> None:
        super().__init__()
        self.readout = readout
        self.on = False

    def start(self) -> None:
        if not self.on:
            self.on = True
            self.__enter__()

    def stop(self) -> None:
        if self.on:
            self.on = False
            self.__exit__(None, None, None)

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        result = func(*args, **(kwargs or {}))
        if args and getattr(func, "__name__", None) in _ADDS:
            self.readout.added(args[0], result)
        return result
