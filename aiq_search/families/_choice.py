"""One searchable choice of a family's space, and how a study file narrows or fixes it."""

from __future__ import annotations

import builtins
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Choice"]

Kind = Literal["int", "float", "ordered", "categorical"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


@dataclass(frozen=True)
class Choice:
    """One searchable choice: an int or float range (optionally log-scaled), an ordered list of numbers, or a
    set of categorical values. Build one with `Choice.int`, `Choice.float`, `Choice.ordered` or
    `Choice.categorical`; each kind takes only its own arguments, so a range cannot carry a list of values it
    would ignore.

    An *ordered* choice is searched by its position in the sorted list (Optuna's ``suggest_int`` over
    0..n-1, so a sampler knows that 8 lies between 4 and 16); the spec holds the value itself, and the
    trial's Optuna parameter holds its position (`param`)."""

    kind: Kind
    low: builtins.int | builtins.float = 0
    high: builtins.int | builtins.float = 0
    log: bool = False
    choices: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if self.kind in ("int", "float"):
            if self.choices:
                raise ValueError(f"an {self.kind} choice is a range: give low and high, not choices={self.choices!r}")
            ok = _is_int if self.kind == "int" else _is_number
            if not (ok(self.low) and ok(self.high)) or self.low > self.high:
                raise ValueError(f"{self.kind} choice needs low <= high, got low={self.low!r}, high={self.high!r}")
            if self.log and self.low <= 0:
                raise ValueError(f"a log-scaled choice needs low > 0, got {self.low!r}")
        elif self.kind in ("ordered", "categorical"):
            if self.low or self.high or self.log:
                raise ValueError(f"an {self.kind} choice takes its values only, not low, high or log")
            if not self.choices:
                raise ValueError(f"an {self.kind} choice needs at least one value")
            if self.kind == "ordered" and (not all(_is_number(c) for c in self.choices)
                                           or list(self.choices) != sorted(set(self.choices))):
                raise ValueError(f"an ordered choice needs distinct numbers in increasing order, got {self.choices!r}")
        else:
            raise ValueError(f"choice kind must be 'int', 'float', 'ordered' or 'categorical', got {self.kind!r}")

    @classmethod
    def int(cls, low: builtins.int, high: builtins.int, *, log: bool = False) -> Choice:
        """Every integer in [low, high], on a log scale if ``log``."""
        return cls("int", low, high, log)

    @classmethod
    def float(cls, low: builtins.float, high: builtins.float, *, log: bool = False) -> Choice:
        """Any number in [low, high], on a log scale if ``log``."""
        return cls("float", low, high, log)

    @classmethod
    def ordered(cls, values: Iterable[builtins.int | builtins.float]) -> Choice:
        """One of ``values``, searched in their numeric order (sorted; duplicates dropped)."""
        return cls("ordered", choices=tuple(sorted(set(values))))

    @classmethod
    def categorical(cls, values: Iterable[Any]) -> Choice:
        """One of ``values`` (unordered: the sampler learns nothing about one value from its neighbours)."""
        return cls("categorical", choices=tuple(values))

    def allows(self, value: Any) -> bool:
        """Whether ``value`` is one this choice could produce."""
        if self.kind == "ordered":
            return _is_number(value) and value in self.choices
        if self.kind == "categorical":
            return any(type(value) is type(c) and value == c for c in self.choices)
        ok = _is_int if self.kind == "int" else _is_number
        return ok(value) and self.low <= value <= self.high

    def describe(self) -> str:
        """The allowed values in words, for error messages."""
        if self.kind in ("ordered", "categorical"):
            return "one of " + ", ".join(repr(c) for c in self.choices)
        scale = ", log scale" if self.log else ""
        return f"{'an integer' if self.kind == 'int' else 'a number'} in [{self.low}, {self.high}]{scale}"

    def suggest(self, trial: Any, name: str) -> Any:
        """Ask an Optuna trial for a value of this choice under the parameter name ``name``."""
        if self.kind == "int":
            return trial.suggest_int(name, self.low, self.high, log=self.log)
        if self.kind == "float":
            return trial.suggest_float(name, self.low, self.high, log=self.log)
        if self.kind == "ordered":
            return self.choices[trial.suggest_int(name, 0, len(self.choices) - 1)]
        return trial.suggest_categorical(name, list(self.choices))

    def param(self, value: Any) -> Any:
        """The Optuna parameter that `suggest` turns into ``value`` (its position, for an ordered choice)."""
        return self.choices.index(value) if self.kind == "ordered" else value

    def narrow(self, name: str, override: Any) -> Choice | Any:
        """Apply a study file's override: a scalar fixes the choice, a ``{low, high}`` table narrows a range
        (keeping its scale) or an ordered list, a list restricts it to those values (numbers stay ordered).
        Raises ValueError naming ``name``."""
        if isinstance(override, Mapping):
            return self._narrow_range(name, override)
        if isinstance(override, (list, tuple)):
            return self._restrict(name, override)
        return self.fix(name, override)

    def fix(self, name: str, value: Any) -> Any:
        """``value`` checked against this choice (an int widened for a float choice); raises ValueError
        naming ``name``."""
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
        lowest, highest = (self.choices[0], self.choices[-1]) if self.kind == "ordered" else (self.low, self.high)
        low, high = table.get("low", lowest), table.get("high", highest)
        ok = _is_int if self.kind == "int" else _is_number
        for key, value in (("low", low), ("high", high)):
            if not ok(value):
                raise ValueError(f"{name}: {key} must be {'an integer' if self.kind == 'int' else 'a number'}, "
                                 f"got {value!r}")
        if low < lowest:
            raise ValueError(f"{name}: low must be >= {lowest}, got {low}")
        if high > highest:
            raise ValueError(f"{name}: high must be <= {highest}, got {high}")
        if low > high:
            raise ValueError(f"{name}: low must be <= high, got low={low}, high={high}")
        if self.kind == "ordered":
            kept = tuple(c for c in self.choices if low <= c <= high)
            if not kept:
                raise ValueError(f"{name}: no value of {self.describe()} lies in [{low}, {high}]")
            return Choice("ordered", choices=kept)
        if self.kind == "float":
            low, high = float(low), float(high)
        return Choice(self.kind, low, high, self.log)

    def _restrict(self, name: str, values: Sequence[Any]) -> Choice:
        if not values:
            raise ValueError(f"{name}: the list of allowed values is empty; give {self.describe()}")
        allowed = tuple(dict.fromkeys(self.fix(name, v) for v in values))  # validated, duplicates dropped
        if self.kind == "categorical":
            return Choice.categorical(allowed)
        return Choice.ordered(allowed)  # a list of numbers keeps its order for the sampler
