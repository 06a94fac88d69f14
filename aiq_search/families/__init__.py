"""Architecture families as plugins: each declares its search space, samples JSON specs from an Optuna
trial, and builds a model from a spec exactly.

A *spec* is a plain JSON object (the family's reference, input shape, class count and the family's choices)
from which `build_model` rebuilds the same network, so a trial stores its architecture as data and any
process can rebuild it: the reference is resolved by `get_family` — a built-in's registered name
(``lenet300``, ``lenet5``, ``resnet``), an installed package's entry point in the group
``aiq_search.families``, or a user's ``package.module:attribute`` import path.

A study file narrows or fixes a family's choices through `Family.narrow`; `Family.sample` turns the
(narrowed) space into a spec with Optuna's ``suggest_*``.
"""

from aiq_search.families._base import Family, Space, SpecError
from aiq_search.families._choice import Choice
from aiq_search.families._models import build_model, check_spec, count_parameters, describe_spec
from aiq_search.families._registry import ENTRY_POINT_GROUP, get_family, list_families, register_family

# the built-in families register themselves on import
from aiq_search.families import _lenet, _resnet  # noqa: F401  isort: skip

__all__ = [
    "ENTRY_POINT_GROUP",
    "Choice",
    "Family",
    "Space",
    "SpecError",
    "build_model",
    "check_spec",
    "count_parameters",
    "describe_spec",
    "get_family",
    "list_families",
    "register_family",
]
