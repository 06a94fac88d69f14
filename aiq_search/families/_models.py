"""From a stored spec to its model (or its one-line description), whichever family it names.

A spec is checked in full before anything is built: its family is resolved, its keys and sizes are
checked against the family's declared space and limits, and the model is first built on the meta device
(no memory) to count its parameters, so an architecture.json asking for billions of them is refused with
one line instead of exhausting memory.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from aiq_search.errors import ConfigError
from aiq_search.families._base import Family, SpecError
from aiq_search.families._registry import get_family
from aiq_search.study import generic_description

__all__ = ["build_model", "check_spec", "count_parameters", "describe_spec"]


def check_spec(spec: Any) -> tuple[Family, dict[str, Any]]:
    """The family a spec names and the spec checked and normalized by it (a deep copy). Raises a one-line
    `SpecError`, or `ConfigError` when its family cannot be found or imported."""
    if not isinstance(spec, Mapping):
        raise SpecError(f"an architecture spec must be a JSON object, got {type(spec).__name__}")
    if "family" not in spec:
        raise SpecError("an architecture spec needs a 'family' key naming its family")
    family = get_family(spec["family"])
    return family, family.validate(spec)


def build_model(spec: Mapping[str, Any], *, seed: int | None = None) -> nn.Module:
    """The network a spec describes; ``model.spec`` gives the spec back (normalized). With ``seed``, the
    initial weights are drawn from that seed without touching the global random state."""
    family, checked = check_spec(spec)
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        n_params = sum(p.numel() for p in _build(family, checked).parameters())
    if n_params > family.max_parameters:
        raise SpecError(f"{family.name} spec asks for {n_params:,} parameters, more than the family's limit of "
                        f"{family.max_parameters:,}")
    if seed is None:
        model = _build(family, checked)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _build(family, checked)
    # torch annotates Module.__setattr__ for tensors and modules only; it stores any other value as it is
    model.spec = checked  # type: ignore[assignment]
    return model


def _build(family: Family, spec: dict[str, Any]) -> nn.Module:
    model = family.build(copy.deepcopy(spec))  # the family cannot change the spec the model records
    if not isinstance(model, nn.Module):
        raise TypeError(f"family {family.name!r} built a {type(model).__name__}, not a torch.nn.Module")
    return model


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics are buffers and do not count)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def describe_spec(spec: Mapping[str, Any]) -> str:
    """One short line for tables and hover text, written by the spec's family; a family this process
    cannot import still gets a generic line, so a plot never fails over it."""
    reference = spec.get("family")
    if not isinstance(reference, str):  # `get_family` refuses it as a ConfigError
        return generic_description(spec)
    try:
        family = get_family(reference)
    except ConfigError:
        return generic_description(spec)
    return family.describe(spec)
