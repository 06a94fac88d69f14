"""The base class of architecture families: one declared search space, the JSON spec a trial samples from it,
the checks a spec passes before anything is built, the model it builds, and a one-line description.

A spec is a flat JSON object: ``family`` (the family's reference), ``input_shape`` ([channels, height,
width]), ``num_classes``, then one key per choice of the space, except that a choice sampled once per layer
becomes a list (``per_layer``) whose length is another choice (or a fixed number) that has no key of its own.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar, cast

from torch import nn

from aiq_search.errors import ConfigError
from aiq_search.families._choice import Choice, _is_int
from aiq_search.study import COMMON_KEYS, generic_description

__all__ = ["Family", "Space", "SpecError"]

Space = dict[str, "Choice | Any"]


class SpecError(ConfigError, ValueError):
    """An architecture spec no family can build as it stands (a ValueError too, for Python callers)."""


class Family(ABC):
    """A family of architectures. Subclass it, declare ``space`` and ``per_layer`` as class attributes,
    implement `build`, and optionally `describe`, `check` or `choose`::

        class TinyMLP(Family):
            space = {"n_layers": Choice.int(1, 3), "width": Choice.int(4, 256, log=True),
                     "dropout": Choice.float(0.0, 0.5)}
            per_layer = {"widths": ("width", "n_layers")}   # spec key: (choice, its length)

            def build(self, spec): ...                       # -> nn.Module, classifier last

    ``per_layer`` maps a spec key holding a list to (the choice each element is drawn from, the name of an
    int choice giving its length or a fixed length). Element ``i`` is the trial parameter ``<choice>_<i>``,
    which a study file may narrow or fix on its own (``width_1 = 64``).

    ``name`` is the family's reference, what a spec's ``family`` holds and `get_family` resolves: the
    registered name of a built-in, the entry-point name or the ``module:attribute`` import path of a user's
    family. It is set when the family is registered or resolved, never by the subclass.

    The ``max_*`` limits bound what a spec may ask for beyond the space (the data's shape and classes, the
    parameters these give), so a hostile or mistaken architecture.json is refused before memory is taken.
    """

    space: ClassVar[Mapping[str, Choice]] = MappingProxyType({})
    per_layer: ClassVar[Mapping[str, tuple[str, str | int]]] = MappingProxyType({})
    max_input_shape: ClassVar[tuple[int, int, int]] = (256, 4096, 4096)
    max_classes: ClassVar[int] = 100_000
    max_parameters: ClassVar[int] = 200_000_000
    name: str = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # the declared ranges are shared by every study: keep them read-only
        cls.space = MappingProxyType(dict(cls.space))
        # tuples, whatever sequence the subclass wrote; their shape is checked just below
        cls.per_layer = MappingProxyType({key: cast("tuple[str, str | int]", tuple(entry))
                                          for key, entry in cls.per_layer.items()})
        _check_declaration(cls)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} family {self.name or '(unresolved)'!r}>"

    # ----------------------------------------------------------------------------------- what a family writes

    @abstractmethod
    def build(self, spec: dict[str, Any]) -> nn.Module:
        """The network of a validated spec. Same spec (and torch seed) → same modules, parameter names and
        initial weights. The classifier must be the last Linear/Conv to run (the efficiency probe skips it),
        and the model must also build on the meta device (parameters are counted there first)."""

    def check(self, spec: dict[str, Any]) -> None:
        """Constraints beyond the space (e.g. a smallest input); raise ValueError naming the problem. Most
        families have none, so the default accepts every spec."""
        return None

    def describe(self, spec: Mapping[str, Any]) -> str:
        """One short line for tables and hover text."""
        return generic_description(spec)

    def choose(self, pick: Callable[[str], Any]) -> dict[str, Any]:
        """The family's part of a spec, each value from ``pick(parameter name)``; by default every choice of
        the space, per-layer ones as lists. Override for conditional choices."""
        chosen: dict[str, Any] = {}
        for key in self.spec_keys():
            if key in self.per_layer:
                choice, count = self.per_layer[key]
                n = count if isinstance(count, int) else pick(count)
                chosen[key] = [pick(f"{choice}_{i}") for i in range(n)]
            else:
                chosen[key] = pick(key)
        return chosen

    # ----------------------------------------------------------------------------------- what it is given

    def spec_keys(self) -> list[str]:
        """The family's own spec keys, in the space's order (a per-layer list where its choice is declared)."""
        lists = {choice: key for key, (choice, _) in self.per_layer.items()}
        counts = {count for _, count in self.per_layer.values() if isinstance(count, str)}
        return [lists.get(name, name) for name in self.space if name not in counts]

    def max_layers(self, choice: str) -> int:
        """How many per-layer parameters ``<choice>_0..`` the declared space can ask for."""
        for element, count in self.per_layer.values():
            if element == choice:
                return count if isinstance(count, int) else int(self.space[count].high)
        raise KeyError(choice)

    def narrow(self, overrides: Mapping[str, Any]) -> Space:
        """The space with a study file's overrides applied (see `Choice.narrow`); a per-layer override such
        as ``width_1`` applies to that layer only. Raises ValueError naming the choice."""
        narrowed: Space = dict(self.space)
        for name, override in overrides.items():
            choice = self._base_choice(name)
            if choice is None:
                layers = [f"{element}_0..{element}_{self.max_layers(element) - 1}"
                          for element, _ in self.per_layer.values()]
                raise ValueError(f"{self.name} has no choice {name!r}; its choices are "
                                 f"{', '.join([*self.space, *layers])}")
            narrowed[name] = choice.narrow(name, override)
        return narrowed

    def _base_choice(self, name: str) -> Choice | None:
        if name in self.space:
            return self.space[name]
        base, _, index = name.rpartition("_")
        elements = {element for element, _ in self.per_layer.values()}
        if base in elements and index.isdigit() and int(index) < self.max_layers(base):
            return self.space[base]
        return None

    def sample(self, trial: Any, space: Mapping[str, Choice | Any], input_shape: Sequence[int],
               num_classes: int) -> dict[str, Any]:
        """A validated spec drawn with ``trial.suggest_*`` from ``space`` (from `narrow`); fixed values are
        used as they are and not registered as trial params."""
        if not self.name:
            raise TypeError(f"{type(self).__name__} has no reference yet: get it through get_family()")
        picked: dict[str, Any] = {}

        def pick(name: str) -> Any:  # a per-layer name such as width_1 falls back to its choice, width
            if name not in picked:
                entry = space[name] if name in space else space[name.rpartition("_")[0]]
                picked[name] = entry.suggest(trial, name) if isinstance(entry, Choice) else entry
            return picked[name]

        spec = {"family": self.name, "input_shape": [int(d) for d in input_shape],
                "num_classes": int(num_classes), **self.choose(pick)}
        return self.validate(spec)

    def validate(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """A checked, normalized deep copy of ``spec`` (lists, floats for float choices); any problem is a
        one-line `SpecError`. Sizes are checked against the declared space and the ``max_*`` limits."""
        if not isinstance(spec, Mapping):
            raise SpecError(f"an architecture spec must be a JSON object, got {type(spec).__name__}")
        if spec.get("family") != self.name:
            raise SpecError(f"a spec of family {spec.get('family')!r} cannot be built by {self.name}")
        keys = self.spec_keys()
        expected = {*COMMON_KEYS, *keys}
        if set(spec) != expected:
            missing, extra = sorted(expected - set(spec)), sorted(set(spec) - expected)
            raise SpecError(f"{self.name} spec: missing keys {missing}, unexpected keys {extra}")
        out: dict[str, Any] = {"family": self.name, "input_shape": self._input_shape(spec["input_shape"]),
                               "num_classes": self._num_classes(spec["num_classes"])}
        lengths: dict[str, tuple[str, int]] = {}
        try:
            for key in keys:
                if key not in self.per_layer:
                    out[key] = self.space[key].fix(key, spec[key])
                    continue
                out[key] = self._layer_list(key, spec[key])
                count = self.per_layer[key][1]
                if isinstance(count, str):
                    first = lengths.setdefault(count, (key, len(out[key])))
                    if first[1] != len(out[key]):
                        raise ValueError(f"{key} and {first[0]} must have one entry per {count} each, got "
                                         f"{len(out[key])} and {first[1]}")
            self.check(out)
        except SpecError:
            raise
        except ValueError as exc:
            raise SpecError(f"{self.name} spec: {exc}") from None
        return copy.deepcopy(out)

    def _layer_list(self, key: str, values: Any) -> list[Any]:
        choice, count = self.per_layer[key]
        if isinstance(count, int):
            low = high = count
        else:
            low, high = int(self.space[count].low), int(self.space[count].high)
        if not isinstance(values, (list, tuple)) or not low <= len(values) <= high:
            size = f"{low}" if low == high else f"{low} to {high}"
            raise ValueError(f"{key} must be a list of {size} values, got {values!r}")
        return [self.space[choice].fix(key, value) for value in values]

    def _input_shape(self, shape: Any) -> list[int]:
        if not (isinstance(shape, (list, tuple)) and len(shape) == 3 and all(_is_int(d) and d >= 1 for d in shape)):
            raise SpecError(f"input_shape must be [channels, height, width] of positive integers, got {shape!r}")
        if any(d > most for d, most in zip(shape, self.max_input_shape, strict=True)):
            raise SpecError(f"input_shape {list(shape)} is larger than {self.name} takes "
                            f"({list(self.max_input_shape)} at most, as channels, height, width)")
        return list(shape)

    def _num_classes(self, value: Any) -> int:
        if not (_is_int(value) and 2 <= value <= self.max_classes):
            raise SpecError(f"num_classes must be an integer in [2, {self.max_classes}], got {value!r}")
        return value


def _check_declaration(cls: type[Family]) -> None:
    """A family's space and per-layer lists make sense together (a mistake in a family's code, not the
    user's data: TypeError at class creation)."""
    where = cls.__qualname__
    for name, choice in cls.space.items():
        if not isinstance(choice, Choice):
            raise TypeError(f"{where}.space[{name!r}] must be a Choice, got {choice!r}")
        if name in COMMON_KEYS:
            raise TypeError(f"{where}.space cannot declare {name!r}: every spec has that key")
    elements: set[str] = set()
    for key, entry in cls.per_layer.items():
        if len(entry) != 2:
            raise TypeError(f"{where}.per_layer[{key!r}] must be (choice, count), got {entry!r}")
        element, count = entry
        if element not in cls.space or element in elements:
            raise TypeError(f"{where}.per_layer[{key!r}]: {element!r} must be a choice of the space used by "
                            "one list only")
        elements.add(element)
        if key in COMMON_KEYS or (key in cls.space and key != element):
            raise TypeError(f"{where}.per_layer: the list key {key!r} is taken")
        if isinstance(count, str):
            if count not in cls.space or cls.space[count].kind != "int" or cls.space[count].low < 0:
                raise TypeError(f"{where}.per_layer[{key!r}]: its length {count!r} must be an int choice >= 0")
        elif not (_is_int(count) and count >= 1):
            raise TypeError(f"{where}.per_layer[{key!r}]: a fixed length must be an integer >= 1, got {count!r}")


