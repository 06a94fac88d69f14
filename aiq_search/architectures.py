"""Architecture families: their search spaces, the JSON specs they sample, and the models built from a spec.

A *spec* is a plain JSON-serializable dict (family name, input shape, class count and the family's choices)
from which `build_model` rebuilds the same network exactly, so a trial stores its architecture as data.

Every family builds hidden blocks as Linear/Conv → [BatchNorm] → activation → [Dropout] (→ MaxPool for
convolutions) and ends with one Linear classifier, the last Linear in module order. The efficiency probe
reads each hidden Linear/Conv's own output (before normalization and activation) and skips the classifier.

The search ranges are declared once, in each family's `space`; a study file narrows or fixes them through
`Family.narrow`, and `Family.sample` turns the (narrowed) space into a spec with Optuna's ``suggest_*``.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

__all__ = ["FAMILIES", "Choice", "Family", "Network", "build_model", "count_parameters"]


# --------------------------------------------------------------------------------------------- choices


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


@dataclass(frozen=True)
class Choice:
    """One searchable choice: an int or float range (optionally log-scaled) or a set of categorical values."""

    kind: str
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if self.kind in ("int", "float"):
            ok = _is_int if self.kind == "int" else _is_number
            if not (ok(self.low) and ok(self.high)) or self.low > self.high:
                raise ValueError(f"{self.kind} choice needs low <= high, got low={self.low!r}, high={self.high!r}")
            if self.log and self.low <= 0:
                raise ValueError(f"a log-scaled choice needs low > 0, got {self.low!r}")
        elif self.kind == "categorical":
            if not self.choices:
                raise ValueError("categorical choice needs at least one value")
        else:
            raise ValueError(f"choice kind must be 'int', 'float' or 'categorical', got {self.kind!r}")

    def allows(self, value: Any) -> bool:
        """Whether ``value`` is one this choice could produce."""
        if self.kind == "categorical":
            return any(type(value) is type(c) and value == c for c in self.choices)
        ok = _is_int if self.kind == "int" else _is_number
        return ok(value) and self.low <= value <= self.high

    def describe(self) -> str:
        """The allowed values in words, for error messages."""
        if self.kind == "categorical":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        scale = ", log scale" if self.log else ""
        return f"{'an integer' if self.kind == 'int' else 'a number'} in [{self.low}, {self.high}]{scale}"

    def suggest(self, trial: Any, name: str) -> Any:
        """Ask an Optuna trial for a value of this choice under the parameter name ``name``."""
        if self.kind == "int":
            return trial.suggest_int(name, self.low, self.high, log=self.log)
        if self.kind == "float":
            return trial.suggest_float(name, self.low, self.high, log=self.log)
        return trial.suggest_categorical(name, list(self.choices))

    def narrow(self, name: str, override: Any) -> Choice | Any:
        """Apply a study file's override: a scalar fixes the choice, a ``{low, high}`` table narrows a range
        (keeping its scale), a list restricts it to those values. Raises ValueError naming ``name``."""
        if isinstance(override, Mapping):
            return self._narrow_range(name, override)
        if isinstance(override, (list, tuple)):
            return self._restrict(name, override)
        return self._fix(name, override)

    def _fix(self, name: str, value: Any) -> Any:
        if self.kind == "float" and _is_int(value):
            value = float(value)
        if not self.allows(value):
            raise ValueError(f"{name}: must be {self.describe()}, got {value!r}")
        return value

    def _narrow_range(self, name: str, table: Mapping[str, Any]) -> Choice:
        if self.kind == "categorical":
            raise ValueError(f"{name}: a {{low, high}} range needs a numeric choice; give {self.describe()} "
                             "or a list of them")
        unknown = set(table) - {"low", "high"}
        if unknown or not table:
            raise ValueError(f"{name}: a range takes the keys 'low' and 'high', got {sorted(table)!r}")
        low, high = table.get("low", self.low), table.get("high", self.high)
        ok = _is_int if self.kind == "int" else _is_number
        for key, value in (("low", low), ("high", high)):
            if not ok(value):
                raise ValueError(f"{name}: {key} must be {'an integer' if self.kind == 'int' else 'a number'}, "
                                 f"got {value!r}")
        if low < self.low:
            raise ValueError(f"{name}: low must be >= {self.low}, got {low}")
        if high > self.high:
            raise ValueError(f"{name}: high must be <= {self.high}, got {high}")
        if low > high:
            raise ValueError(f"{name}: low must be <= high, got low={low}, high={high}")
        if self.kind == "float":
            low, high = float(low), float(high)
        return Choice(self.kind, low, high, self.log)

    def _restrict(self, name: str, values: Sequence[Any]) -> Choice:
        if not values:
            raise ValueError(f"{name}: the list of allowed values is empty; give {self.describe()}")
        allowed = tuple(dict.fromkeys(self._fix(name, v) for v in values))  # validated, duplicates dropped
        return Choice("categorical", choices=allowed)


# --------------------------------------------------------------------------------------------- families

Space = dict[str, "Choice | Any"]


@dataclass(frozen=True)
class Family:
    """A family of architectures: its search space (declared here only), how a trial samples a spec from
    a (narrowed) space and how a spec becomes a model.

    ``per_layer`` maps a choice sampled once per layer to the most layers it can have; its trial params
    are ``<choice>_0``, ``<choice>_1``..., and a study file may narrow or fix those one by one.
    """

    name: str
    space: Mapping[str, Choice]
    per_layer: Mapping[str, int]
    _sample: Callable[[Callable[[str], Any]], dict[str, Any]] = field(repr=False)
    _build: Callable[[dict[str, Any]], OrderedDict[str, nn.Module]] = field(repr=False)

    def __post_init__(self) -> None:  # the declared ranges are shared by every study: keep them read-only
        object.__setattr__(self, "space", MappingProxyType(dict(self.space)))
        object.__setattr__(self, "per_layer", MappingProxyType(dict(self.per_layer)))

    def _base_choice(self, name: str) -> Choice | None:
        if name in self.space:
            return self.space[name]
        base, _, index = name.rpartition("_")
        if base in self.per_layer and index.isdigit() and int(index) < self.per_layer[base]:
            return self.space[base]
        return None

    def narrow(self, overrides: Mapping[str, Any]) -> Space:
        """The family's space with a study file's overrides applied (see `Choice.narrow`); per-layer
        overrides such as ``width_1`` apply to that layer only."""
        narrowed: Space = dict(self.space)
        for name, override in overrides.items():
            choice = self._base_choice(name)
            if choice is None:
                per_layer = [f"{base}_0..{base}_{n - 1}" for base, n in self.per_layer.items()]
                raise ValueError(f"{self.name} has no choice {name!r}; its choices are "
                                 f"{', '.join([*self.space, *per_layer])}")
            narrowed[name] = choice.narrow(name, override)
        return narrowed

    def sample(self, trial: Any, space: Mapping[str, Choice | Any], input_shape: Sequence[int],
               num_classes: int) -> dict[str, Any]:
        """A spec drawn with ``trial.suggest_*`` from ``space`` (from `narrow`); fixed values are used as
        they are and not registered as trial params."""

        def pick(name: str) -> Any:  # a per-layer name such as width_1 falls back to its choice, width
            entry = space[name] if name in space else space[name.rpartition("_")[0]]
            return entry.suggest(trial, name) if isinstance(entry, Choice) else entry

        spec = {"family": self.name, "input_shape": [int(d) for d in input_shape], "num_classes": int(num_classes)}
        spec.update(self._sample(pick))
        return _check_spec(spec)


def _sample_lenet300(pick: Callable[[str], Any]) -> dict[str, Any]:
    n_layers = pick("n_layers")
    return {
        "widths": [pick(f"width_{i}") for i in range(n_layers)],
        "batch_norm": pick("batch_norm"),
        "dropout": float(pick("dropout")),
    }


def _sample_lenet5(pick: Callable[[str], Any]) -> dict[str, Any]:
    return {
        "channels": [pick(f"channels_{i}") for i in range(3)],
        "activation": pick("activation"),
        "batch_norm": pick("batch_norm"),
        "dropout": float(pick("dropout")),
    }


def _hidden_block(index: int, layer: nn.Module, norm: nn.Module | None, act: nn.Module,
                  dropout: float) -> list[tuple[str, nn.Module]]:
    """Layer → [norm] → activation → [dropout], named by position so efficiency reports read fc1, conv2..."""
    kind = "fc" if isinstance(layer, nn.Linear) else "conv"
    block: list[tuple[str, nn.Module]] = [(f"{kind}{index}", layer)]
    if norm is not None:
        block.append((f"bn{index}", norm))
    block.append((f"act{index}", act))
    if dropout > 0:
        block.append((f"drop{index}", nn.Dropout(dropout)))
    return block


def _build_lenet300(spec: dict[str, Any]) -> OrderedDict[str, nn.Module]:
    layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
    width_in = math.prod(spec["input_shape"])
    for i, width in enumerate(spec["widths"], start=1):
        norm = nn.BatchNorm1d(width) if spec["batch_norm"] else None
        layers += _hidden_block(i, nn.Linear(width_in, width), norm, nn.ReLU(), spec["dropout"])
        width_in = width
    layers.append(("classifier", nn.Linear(width_in, spec["num_classes"])))
    return OrderedDict(layers)


def lenet5_geometry(height: int, width: int) -> tuple[int, tuple[int, int]]:
    """Padding of the two 5×5 convolutions and the last convolution's kernel, so that the output is 1×1.

    Unpadded ('valid') 5×5 convolutions are used whenever the input is large enough (16×16 or more), which
    gives the classic layout for 28×28 (28 → 24 → 12 → 8 → 4 → 4×4 kernel → 1). Smaller inputs use 'same'
    padding (2) instead, e.g. 8×8 → 8 → 4 → 4 → 2 → 2×2 kernel → 1.
    """
    def remaining(side: int, padding: int) -> int:  # conv 5×5 → pool 2 → conv 5×5 → pool 2
        after_first = (side + 2 * padding - 4) // 2
        return (after_first + 2 * padding - 4) // 2

    for padding in (0, 2):
        sides = (remaining(height, padding), remaining(width, padding))
        if min(sides) >= 1:
            return padding, sides
    raise ValueError(f"lenet5 needs inputs of at least 4×4 pixels, got {height}×{width}")


def _build_lenet5(spec: dict[str, Any]) -> OrderedDict[str, nn.Module]:
    in_channels, height, width = spec["input_shape"]
    padding, last_kernel = lenet5_geometry(height, width)
    act = {"elu": nn.ELU, "relu": nn.ReLU}[spec["activation"]]
    layers: list[tuple[str, nn.Module]] = []
    shapes = [(5, padding), (5, padding), (last_kernel, 0)]
    for i, (out_channels, (kernel, pad)) in enumerate(zip(spec["channels"], shapes, strict=True), start=1):
        norm = nn.BatchNorm2d(out_channels) if spec["batch_norm"] else None
        conv = nn.Conv2d(in_channels, out_channels, kernel, padding=pad)
        layers += _hidden_block(i, conv, norm, act(), spec["dropout"])
        if i < 3:
            layers.append((f"pool{i}", nn.MaxPool2d(2)))
        in_channels = out_channels
    layers += [("flatten", nn.Flatten()), ("classifier", nn.Linear(in_channels, spec["num_classes"]))]
    return OrderedDict(layers)


_SHARED = {
    "batch_norm": Choice("categorical", choices=(False, True)),
    "dropout": Choice("float", 0.0, 0.7),
}

FAMILIES: dict[str, Family] = {
    "lenet300": Family(
        name="lenet300",
        space={"n_layers": Choice("int", 1, 3), "width": Choice("int", 1, 2048, log=True), **_SHARED},
        per_layer={"width": 3},
        _sample=_sample_lenet300,
        _build=_build_lenet300,
    ),
    "lenet5": Family(
        name="lenet5",
        space={
            "channels": Choice("int", 1, 512, log=True),
            "activation": Choice("categorical", choices=("elu", "relu")),
            **_SHARED,
        },
        per_layer={"channels": 3},
        _sample=_sample_lenet5,
        _build=_build_lenet5,
    ),
}

# Per family: the spec's per-layer list, its choice, and the allowed list lengths.
_LAYER_LISTS = {"lenet300": ("widths", "width", "n_layers"), "lenet5": ("channels", "channels", None)}


# --------------------------------------------------------------------------------------------- specs


def _check_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A validated, normalized deep copy of ``spec`` (lists, not tuples; floats for dropout)."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"an architecture spec must be a dict, got {type(spec).__name__}")
    name = spec.get("family")
    if name not in FAMILIES:
        raise ValueError(f"unknown architecture family {name!r}; known: {', '.join(FAMILIES)}")
    family = FAMILIES[name]
    list_key, choice_name, count_name = _LAYER_LISTS[name]
    expected = {"family", "input_shape", "num_classes", list_key} | (set(family.space) - {choice_name, count_name})
    if set(spec) != expected:
        missing, extra = sorted(expected - set(spec)), sorted(set(spec) - expected)
        raise ValueError(f"{name} spec: missing keys {missing}, unexpected keys {extra}")
    out = copy.deepcopy(dict(spec))
    shape = out["input_shape"]
    if not (isinstance(shape, (list, tuple)) and len(shape) == 3 and all(_is_int(d) and d >= 1 for d in shape)):
        raise ValueError(f"input_shape must be [channels, height, width] of positive integers, got {shape!r}")
    out["input_shape"] = list(shape)
    if not (_is_int(out["num_classes"]) and out["num_classes"] >= 2):
        raise ValueError(f"num_classes must be an integer >= 2, got {out['num_classes']!r}")
    sizes = out[list_key]
    count = family.space[count_name] if count_name else Choice("int", family.per_layer[choice_name],
                                                               family.per_layer[choice_name])
    if not isinstance(sizes, (list, tuple)) or not count.allows(len(sizes)):
        raise ValueError(f"{list_key} must be a list of {count.low} to {count.high} sizes, got {sizes!r}")
    out[list_key] = [family.space[choice_name]._fix(list_key, s) for s in sizes]
    for key in expected - {"family", "input_shape", "num_classes", list_key}:
        out[key] = family.space[key]._fix(key, out[key])
    return out


class Network(nn.Sequential):
    """A model built from a spec; ``.spec`` gives that spec back (normalized), so the model can be stored
    as its spec plus its weights."""

    def __init__(self, spec: dict[str, Any], layers: OrderedDict[str, nn.Module]) -> None:
        super().__init__(layers)
        self.spec = spec


def build_model(spec: Mapping[str, Any], *, seed: int | None = None) -> Network:
    """The network a spec describes. With ``seed``, its initial weights are drawn from that seed without
    touching the global random state."""
    checked = _check_spec(spec)
    family = FAMILIES[checked["family"]]
    if seed is None:
        return Network(checked, family._build(checked))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Network(checked, family._build(checked))


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics are buffers and do not count)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
