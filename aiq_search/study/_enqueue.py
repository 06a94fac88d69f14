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


_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def _study_classes(study: optuna.Study, config: StudyFile) -> int:
    """The study's class count: from a trial's recorded architecture, else from its data set, loaded."""
    for trial in study.get_trials(deepcopy=False):
        architecture = trial.user_attrs.get("architecture")
        if isinstance(architecture, Mapping) and isinstance(architecture.get("num_classes"), int):
            return architecture["num_classes"]
    from aiq_search.study._create import load_device_and_data  # the data, only when no trial says

    return load_device_and_data(config.with_overrides(device="cpu"))[1].num_classes


def enqueue_spec(study: optuna.Study, config: StudyFile, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Queue ``spec`` as the study's next trial; returns the enqueued parameters. Refused, in one line, when
    the spec is of another family, another input shape or class count, or outside the study's search space."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"the spec is a JSON {_JSON_KINDS.get(type(spec), type(spec).__name__)}; a spec is a JSON "
                          'object, e.g. {"family": "lenet5", "input_shape": [1, 28, 28], "num_classes": 10, ...}')
    try:
        family, checked = check_spec(dict(spec))
    except RecursionError:
        raise ConfigError("the spec is nested too deeply to be a network's spec") from None
    if family.name != config.search.resolve().name:
        raise ConfigError(f"the spec is a {family.name} network; the study searches {config.search.family}")
    recorded = study_settings(study).data["input"]["shape"]
    if checked["input_shape"] != recorded:
        raise ConfigError(f"the spec takes inputs {checked['input_shape']}; the study's data are {recorded}")
    classes = _study_classes(study, config)
    if checked["num_classes"] != classes:
        raise ConfigError(f"the spec has {checked['num_classes']} classes; the study's data have {classes}")
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
