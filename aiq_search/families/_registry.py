"""Finding a family by its reference: a registered built-in, an installed package's entry point, or an
import path to a user's module.

Built-ins register themselves with `register_family` (as torchvision's ``register_model`` does). Installed
packages ship families through the entry-point group ``aiq_search.families`` (the entry point's name is the
reference). Any other family is named by its import path, ``package.module:attribute``, which must be
importable wherever the family's models are rebuilt (installed, or its folder on PYTHONPATH).
"""

from __future__ import annotations

import copy
import importlib
import re
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

from aiq_search.errors import ConfigError, one_line, user_frame
from aiq_search.families._base import Family

__all__ = ["ENTRY_POINT_GROUP", "get_family", "list_families", "register_family"]

ENTRY_POINT_GROUP = "aiq_search.families"
IMPORT_PATH_FORM = "'package.module:attribute'"

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")  # no ':' — that is the import-path form
_REGISTERED: dict[str, Family] = {}
_RESOLVED: dict[str, Family] = {}  # entry points and import paths already loaded in this process

F = TypeVar("F", bound="type[Family] | Family")


def register_family(name: str) -> Callable[[F], F]:
    """Class (or instance) decorator registering a family under ``name``, which specs then record::

        @register_family("resnet")
        class ResNet(Family): ...
    """
    if not _NAME.match(name):
        raise ValueError(f"a family name starts with a letter and holds letters, digits, '_', '.', '-', got {name!r}")

    def register(obj: F) -> F:
        if name in _REGISTERED:
            raise ValueError(f"an architecture family is already registered as {name!r}")
        _REGISTERED[name] = _bind(obj, name)
        return obj

    return register


def list_families() -> list[str]:
    """The references usable without an import path: registered built-ins, then installed entry points."""
    installed = sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} - set(_REGISTERED))
    return [*_REGISTERED, *installed]


def get_family(reference: str) -> Family:
    """The family a reference names (a registered name, an entry-point name, or ``module:attribute``).
    Anything that cannot be found or imported is a one-line `ConfigError` saying how to make it so."""
    if not isinstance(reference, str):
        raise ConfigError(f"an architecture family is named by a string, got {type(reference).__name__} "
                          f"{reference!r}")
    family = _REGISTERED.get(reference) or _RESOLVED.get(reference)
    if family is not None:
        return family
    if ":" in reference:
        family = _bind(_import(reference), reference)
    else:
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == reference]
        if not found:
            raise ConfigError(f"unknown architecture family {reference!r}; known: {', '.join(list_families())}; "
                              f"a family of your own is named by its import path, {IMPORT_PATH_FORM}")
        family = _bind(_load_entry_point(found[0]), reference)
    _RESOLVED[reference] = family
    return family


def _import(reference: str) -> Any:
    module_name, _, attribute = reference.partition(":")
    parts = [*module_name.split("."), *attribute.split(".")]
    if not all(part.isidentifier() for part in parts):
        raise ConfigError(f"architecture family {reference!r} is not an import path; write it as "
                          f"{IMPORT_PATH_FORM} or use a known family: {', '.join(list_families())}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise ConfigError(f"architecture family {reference!r}: no module named {module_name!r} can be "
                              "imported; install the package that provides it or put the folder that holds "
                              "it on PYTHONPATH") from None
        raise ConfigError(f"architecture family {reference!r}: importing {module_name} failed ({exc}); "
                          "install what it needs") from None
    except (Exception, SystemExit) as exc:  # the user's module may fail in any way: a syntax error, sys.exit
        raise ConfigError(f"architecture family {reference!r}: importing {module_name} failed "
                          f"({_failure(exc)})") from None
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"architecture family {reference!r}: {module_name} has no attribute "
                              f"{attribute!r}") from None
    return obj


def _load_entry_point(ep: EntryPoint) -> Any:
    try:
        return ep.load()
    except (Exception, SystemExit) as exc:  # an installed plugin's import may fail in any way
        package = ep.dist.name if ep.dist is not None else "its package"
        raise ConfigError(f"architecture family {ep.name!r} (entry point {ep.value!r} of {package}) cannot be "
                          f"loaded ({_failure(exc)}); reinstall {package}") from None


def _failure(exc: BaseException) -> str:
    """An import's failure in one line, with where in the user's file it happened."""
    where = user_frame(exc)
    return one_line(exc) + (f" at {where}" if where else "")


def _bind(obj: Any, reference: str) -> Family:
    """A family instance that knows its reference (a class is instantiated; an instance is copied, so one
    object reached under two references records each)."""
    if isinstance(obj, type) and issubclass(obj, Family):
        obj = obj()
    if not isinstance(obj, Family):
        raise ConfigError(f"architecture family {reference!r} is a {type(obj).__name__}, not a family "
                          "(an aiq_search.families.Family subclass or instance)")
    family = copy.copy(obj)
    family.name = reference
    return family
