"""Names that writers (the trial, `aiq_search.study._write`) and readers (status, plots, dashboard, export) of
a study share, defined once. The trial attributes themselves are listed in docs/CONTRACTS.md, "Trials in
storage"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Study user attribute holding the recorded settings: {"config": the study file, "data": ..., "artifacts": ...}.
SETTINGS_ATTR = "aiq_search"
# The trial artifact holding the trained weights.
WEIGHTS_FILE = "weights.safetensors"
# Optuna metric names of each mode's objective values.
METRIC_NAMES: dict[str, list[str]] = {"aiq": ["aIQ"], "pareto": ["accuracy", "n_params"]}
# How many best trials summaries and status show unless asked for more.
TOP_DEFAULT = 5
# The keys every architecture spec has, whatever its family.
COMMON_KEYS = ("family", "input_shape", "num_classes")


def generic_description(spec: Mapping[str, Any]) -> str:
    """A line for any spec: its family then each value (lists joined by '-', true flags by name)."""
    parts = []
    for key, value in spec.items():
        if key in COMMON_KEYS or value is False:
            continue
        if value is True:
            parts.append(key.replace("_", " "))
        elif isinstance(value, list):
            parts.append(f"{key} {'-'.join(str(v) for v in value)}")
        elif isinstance(value, float):
            parts.append(f"{key} {value:.3g}")
        else:
            parts.append(f"{key} {value}")
    return f"{spec.get('family', '?')} {', '.join(parts)}".strip()
