"""Queueing a known architecture in a study (Optuna's ``enqueue_trial``), e.g. the paper's LeNet-5 20/50/100,
so a search starts from it: the spec is turned into the trial parameters the study's own search would
suggest for it, and checked by sampling it back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import FixedTrial

from aiq_search.errors import ConfigError
from aiq_search.families import Choice, Family, check_spec
from aiq_search.study._read import study_settings
from aiq_search.studyfile import StudyFile

__all__ = ["enqueue_spec", "spec_params"]


def spec_params(family: Family, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter the family's default `Family.choose` draws for ``spec`` (per-layer lists as
    ``<choice>_<i>`` and their length choice)."""
    params: dict[str, Any] = {}
    for key in family.spec_keys():
        if key in family.per_layer:
            choice, count = family.per_layer[key]
            if isinstance(count, str):
                params[count] = len(spec[key])
            params.update({f"{choice}_{i}": value for i, value in enumerate(spec[key])})
        else:
            params[key] = spec[key]
    return params


def enqueue_spec(study: optuna.Study, config: StudyFile, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Queue ``spec`` as the study's next trial; returns the enqueued parameters. Refused, in one line, when
    the spec is of another family, another input shape or class count, or outside the study's search space."""
    family, checked = check_spec(dict(spec))
    if family.name != config.search.resolve().name:
        raise ConfigError(f"the spec is a {family.name} network; the study searches {config.search.family}")
    recorded = study_settings(study).data["input"]["shape"]
    if checked["input_shape"] != recorded:
        raise ConfigError(f"the spec takes inputs {checked['input_shape']}; the study's data are {recorded}")
    space = config.search.space()
    params = {}
    for name, value in spec_params(family, checked).items():
        entry = space.get(name, space.get(name.rpartition("_")[0]))
        if isinstance(entry, Choice):
            if not entry.allows(value):
                raise ConfigError(f"the spec's {name} = {value!r} lies outside the study's search space "
                                  f"({entry.describe()})")
            params[name] = entry.param(value)  # an ordered choice takes its position
        elif entry != value:
            raise ConfigError(f"the spec's {name} = {value!r}, but the study fixes it to {entry!r}")
    sampled = family.sample(FixedTrial(params), space, checked["input_shape"], checked["num_classes"])
    if sampled != checked:
        raise ConfigError("the study's search cannot reach this spec (its family chooses conditionally); "
                          "queue its trial parameters with Optuna's study.enqueue_trial instead")
    study.enqueue_trial(params, skip_if_exists=True)
    return params
