"""An architecture record checked before anything is built from it, wherever it came from (a trial's
``architecture`` attribute, a folder's architecture.json): it must be a family's spec, its family known
or trusted, and its network must build on the meta device (no memory spent).

Trust: a family named by import path (``package.module:attribute``) runs that module's code when it is
imported, so a record from someone else could run anything on the path. Only modules the caller trusts are
imported: named in ``trust_modules`` (``--trust-module`` on the command line), found in a folder of
``$PYTHONPATH`` (where the README puts one's own family: the user chose that folder), or already imported by
this process; registered families and installed entry points are known and need no trust. Any other
installed module, whatever its import does, is refused before it is imported.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch

from aiq_search.errors import AiqSearchError
from aiq_search.families import build_model, list_families

__all__ = ["Expected", "check_architecture", "untrusted_module"]

Expected = dict[str, tuple[tuple[int, ...], torch.dtype]]


def untrusted_module(reference: Any, trust_modules: Collection[str]) -> str | None:
    """The module importing ``reference`` would run, when it is neither known nor trusted; else None.

    A trusted package covers its submodules; a malformed reference is left to the family resolver's error."""
    if not isinstance(reference, str) or ":" not in reference or reference in list_families():
        return None
    module = reference.partition(":")[0]
    if module in sys.modules or any(module == t or module.startswith(f"{t}.") for t in trust_modules):
        return None
    if _on_pythonpath(module) or importlib.util.find_spec(module.partition(".")[0]) is None:
        return None  # trusted, or not there at all: the family resolver says how to make it importable
    return module


def _on_pythonpath(module: str) -> bool:
    """Whether ``module``'s top-level package or file lies in a folder of ``$PYTHONPATH`` (looked up on
    disk: nothing is imported to find out)."""
    top = module.partition(".")[0]
    folders = [Path(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return any((folder / top / "__init__.py").is_file() or (folder / f"{top}.py").is_file() for folder in folders)


def _plain_module_hint(spec: Mapping[str, Any]) -> str:
    return (f"{dict(spec)!r} is not a family's spec (it has no 'family' key: an own training loop records a "
            "plain nn.Module so), and export rebuilds a network from a family's spec: build the model with "
            "aiq_search.families.build_model(spec) of a family (yours: a Family named 'module:attribute') and "
            "record the trial with AiqTrial(trial, model)")


def check_architecture(spec: Any, where: str, *, trust_modules: Collection[str] = ()) -> Expected:
    """The tensors (name → shape, dtype) the network of ``spec`` holds, built on the meta device; every
    problem is one `AiqSearchError` line starting with ``where`` (the record's place)."""
    if isinstance(spec, Mapping) and "family" not in spec:
        raise AiqSearchError(f"{where}: {_plain_module_hint(spec)}")
    module = untrusted_module(spec.get("family") if isinstance(spec, Mapping) else None, trust_modules)
    if module is not None:
        raise AiqSearchError(f"{where}: its family {spec['family']!r} would import module {module!r}, which "
                             "runs its code; if you trust it, allow it with --trust-module "
                             f"{module.partition('.')[0]} (trust_modules= from Python)")
    try:
        with torch.device("meta"):
            return {k: (tuple(v.shape), v.dtype) for k, v in build_model(spec).state_dict().items()}
    except (AiqSearchError, ValueError, TypeError) as exc:
        raise AiqSearchError(f"{where}: {exc}") from None
    except Exception as exc:  # a family's own code may raise anything for a spec it cannot build
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise AiqSearchError(f"{where}: the network cannot be built: {type(exc).__name__}: {first}") from None
