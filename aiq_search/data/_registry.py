"""Which data sets exist: built-ins register themselves here; a user's is found by import path
(``"my_project.data:load"``) or by the entry-point group ``aiq_search.datasets`` of an installed package.

A data set is a `Dataset`: a loader returning `RawData` and the options it takes (a pydantic model, or,
for a plain function, its keyword parameters). Options are validated before anything is read, and every
problem is one `DataError` line naming the data set, and the option when there is one.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ValidationError, ValidationInfo

from aiq_search.data._core import RawData, resolve_path
from aiq_search.errors import DataError, one_line, user_frame

ENTRY_POINT_GROUP = "aiq_search.datasets"
IMPORT_FORM = "your own as 'package.module:function' or an entry point in group 'aiq_search.datasets'"

# Passed to a loader that names them; the other [data] fields are the common code's, never options.
LOADER_ARGUMENTS = ("data_dir", "download")
RESERVED = (*LOADER_ARGUMENTS, "name", "val_size", "seed", "label_noise")

Loader = Callable[..., RawData]


class OptionError(DataError):
    """One data-set option is wrong; ``field`` names it and ``problem`` says what is allowed."""

    def __init__(self, dataset: str, field: str, problem: str) -> None:
        self.field, self.problem = field, problem
        super().__init__(f"data set {dataset!r}: option '{field}': {problem}")


def _resolve_path(value: str, info: ValidationInfo) -> str:
    context = info.context or {}
    return str(resolve_path(value, context["data_dir"])) if "data_dir" in context else value


# An option naming a file or folder: made absolute when the data set is loaded (under data_dir when one
# is named, else the working directory), kept as written when a study file is only checked.
DataPath = Annotated[str, AfterValidator(_resolve_path)]


@dataclass(frozen=True)
class Dataset:
    """One data set: ``loader(**options[, data_dir=, download=]) -> RawData``.

    ``options`` is a pydantic model of the options it takes (None: the loader's keyword parameters,
    less ``data_dir`` and ``download``, which it receives when it names them)."""

    name: str
    loader: Loader
    options: type[BaseModel] | None = None

    def option_names(self) -> list[str]:
        if self.options is not None:
            return list(self.options.model_fields)
        return [p for p in self._parameters() if p not in RESERVED]

    def _parameters(self) -> dict[str, inspect.Parameter]:
        return {name: p for name, p in inspect.signature(self.loader).parameters.items()
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}

    def _takes_any(self) -> bool:
        return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(self.loader).parameters.values())

    def check_options(self, options: Mapping[str, Any], *, data_dir: Path | None = None,
                      resolve: bool = False) -> dict[str, Any]:
        """``options`` validated; with ``resolve``, paths made absolute (under ``data_dir`` if given)."""
        for key in options:
            if key in RESERVED:
                raise OptionError(self.name, key, f"reserved: {key} is a common setting ([data] data_dir, download, "
                                                  "val_size, label_noise; [study] seed), not an option")
        if self.options is not None:
            context = {"data_dir": data_dir} if resolve else None
            try:
                return self.options.model_validate(dict(options), context=context).model_dump()
            except ValidationError as exc:
                raise self._option_error(exc) from None
        takes = ", ".join(self.option_names()) or "no options"
        for key in options:
            if key not in self._parameters() and not self._takes_any():
                raise OptionError(self.name, key, f"unknown option; {self.name} takes: {takes}")
        for key, parameter in self._parameters().items():
            if key not in RESERVED and parameter.default is parameter.empty and key not in options:
                raise OptionError(self.name, key, "required, but missing")
        return dict(options)

    def _option_error(self, exc: ValidationError) -> OptionError:
        first = exc.errors(include_url=False)[0]
        field = str(first["loc"][0]) if first["loc"] else "(options)"
        if first["type"] == "extra_forbidden":
            return OptionError(self.name, field, f"unknown option; {self.name} takes: "
                                                 f"{', '.join(self.option_names()) or 'no options'}")
        if first["type"] == "missing":
            return OptionError(self.name, field, "required, but missing")
        message = first["msg"].removeprefix("Value error, ")
        if first["type"].endswith("_type") or first["type"] == "literal_error":
            message += f", got {type(first['input']).__name__} {first['input']!r}"
        return OptionError(self.name, field, message)

    def load(self, options: Mapping[str, Any], *, data_dir: Path | None, download: bool) -> RawData:
        """Call the loader with validated ``options``; whatever it returns must be `RawData`."""
        kwargs = dict(options)
        wanted = self._parameters()
        for key, value in (("data_dir", data_dir), ("download", download)):
            if key in wanted or self._takes_any():
                kwargs[key] = value
        try:
            raw = self.loader(**kwargs)
        except DataError:
            raise
        except (Exception, SystemExit) as exc:  # a loader (the user's, or a file it reads) may fail in any way
            raise DataError(f"data set {self.name!r}: its loader failed: {_one_line(exc)}") from None
        if not isinstance(raw, RawData):
            raise DataError(f"data set {self.name!r}: its loader returned {type(raw).__name__}, "
                            "not aiq_search.data.RawData")
        return raw


DATASETS: dict[str, Dataset] = {}


def register_dataset(name: str, loader: Loader | None = None, *, options: type[BaseModel] | None = None) -> Any:
    """Register a data set under ``name``: ``register_dataset(name, loader)`` or, as a decorator,
    ``@register_dataset(name, options=Model)``. Returns the loader unchanged."""
    def register(function: Loader) -> Loader:
        if name in DATASETS:
            raise ValueError(f"data set {name!r} is already registered")
        DATASETS[name] = Dataset(name, function, options)
        return function

    return register if loader is None else register(loader)


def list_datasets() -> list[str]:
    """The registered data sets, then those of installed packages' entry points."""
    plugins = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in DATASETS)
    return [*DATASETS, *plugins]


def get_dataset(name: str) -> Dataset:
    """The data set called ``name``: registered, an entry point, or ``"package.module:attribute"``
    (imported with the working directory on the import path, as ``python -m`` does)."""
    if not isinstance(name, str) or not name:
        raise DataError(f"a data set is named by a non-empty string, got {name!r}")
    if name in DATASETS:
        return DATASETS[name]
    if ":" in name:
        target = _import(name)
    else:
        found = entry_points(group=ENTRY_POINT_GROUP, name=name)
        if not found:
            raise DataError(f"unknown data set {name!r}; known: {', '.join(list_datasets())}; or {IMPORT_FORM}")
        entry = next(iter(found))
        try:
            target = entry.load()
        except (Exception, SystemExit) as exc:  # a plugin's import may fail in any way; name it in one line
            raise DataError(f"data set {name!r}: cannot load entry point {entry.value!r}: {_one_line(exc)}") from None
    if isinstance(target, Dataset):
        return replace(target, name=name)
    if callable(target):
        return Dataset(name, target)
    raise DataError(f"data set {name!r} is a {type(target).__name__}, not a function or aiq_search.data.Dataset")


def _import(name: str) -> Any:
    module_name, _, attribute = name.partition(":")
    if not module_name or not attribute:
        raise DataError(f"data set {name!r}: an import path reads 'package.module:function'")
    cwd = str(Path.cwd())
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    try:
        target: Any = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # the user's module may fail in any way: a syntax error, sys.exit
        raise DataError(f"data set {name!r}: cannot import {module_name}: {_one_line(exc)}") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise DataError(f"data set {name!r}: module {module_name} has no attribute {attribute!r}")
        target = getattr(target, part)
    return target


def _one_line(exc: BaseException) -> str:
    where = user_frame(exc)
    return one_line(exc) + (f" at {where}" if where else "")
