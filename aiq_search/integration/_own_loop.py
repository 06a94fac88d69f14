"""Scoring and recording trials the aiq-search way from an objective with a training loop of its own (plain
PyTorch, Lightning, anything): `prepare_study` records the study's settings before ``study.optimize``, and
one `AiqTrial` per trial measures efficiency in your evaluation pass, reports aIQ to the pruner and records
the trial as the built-in objective does, so ``aiq-search status``, ``plot``, ``dashboard`` and ``export``
work on the study (the records: docs/CONTRACTS.md, "Trials in storage").
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.study import StudyDirection
from pydantic import ValidationError
from torch import nn

from aiq_search.data import DATASETS, DataSplits, load_dataset
from aiq_search.errors import ConfigError, DataError
from aiq_search.export import InputFormat
from aiq_search.families import build_model, check_spec, count_parameters, describe_spec, get_family
from aiq_search.metrics import (
    DEFAULT_METRICS,
    EVAL_SPLITS,
    EfficiencyProbe,
    EfficiencyReport,
    MetricsConfig,
    model_device,
)
from aiq_search.study import (
    SETTINGS_ATTR,
    RecordedSettings,
    changed_fields,
    input_record,
    open_artifact_store,
    record_architecture,
    record_failure,
    record_scores,
    record_settings,
    save_weights,
    settings_value,
    study_settings,
)

__all__ = ["AiqTrial", "load_study_data", "prepare_study"]


# --------------------------------------------------------------------------------------------- the study


def _mode(study: optuna.Study) -> str:
    directions = list(study.directions)
    if directions == [StudyDirection.MAXIMIZE]:
        return "aiq"
    if directions == [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]:
        return "pareto"
    raise ConfigError(f"study {study.study_name!r} has directions {[d.name.lower() for d in directions]}; aiq-search "
                      "studies maximize aIQ (direction='maximize') or maximize accuracy and minimize parameters "
                      "(directions=['maximize', 'minimize'])")


def _input_format(dataset: str, given: dict[str, Any], load: dict[str, Any]) -> dict[str, Any]:
    """The input format of a data set aiq-search loads (measured), or of the user's own (as given)."""
    if dataset in DATASETS:
        if any(value is not None for value in given.values()):
            raise ConfigError(f"{dataset} is a data set aiq-search loads: its input shape, range, mean and std "
                              "are measured from it, not given")
        try:
            return input_record(load_dataset(dataset, **load))
        except ValueError as exc:
            raise ConfigError(f"data: {exc}") from None
    shape, value_range = given["input_shape"], given["value_range"]
    if shape is None or value_range is None:
        raise ConfigError(f"data set {dataset!r} is not one aiq-search loads ({', '.join(DATASETS)}): give its "
                          "input_shape and value_range (and the mean and std you normalize with)")
    channels = shape[0] if len(shape) == 3 and isinstance(shape[0], int) else 0
    mean = [0.0] * channels if given["mean"] is None else given["mean"]  # none given: raw inputs
    std = [1.0] * channels if given["std"] is None else given["std"]
    record = {"shape": list(shape), "dtype": "float32", "range": [float(v) for v in value_range],
              "mean": [float(v) for v in mean], "std": [float(v) for v in std]}
    try:
        return InputFormat.model_validate(record).model_dump(mode="json", exclude={"layout"})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"input format: {where + ': ' if where else ''}"
                          f"{first['msg'].removeprefix('Value error, ')}") from None


def _changed(recorded: dict[str, Any], value: dict[str, Any]) -> list[str]:
    """The recorded settings (``section.key``, and ``data.input``) that ``value`` changes, less the fields
    that may change between runs."""
    changed = changed_fields(recorded.get("config") or {}, value["config"])
    if (recorded.get("data") or {}).get("input") != value["data"]["input"]:
        changed.append("data.input")
    return sorted(changed)


def prepare_study(study: optuna.Study, *, artifacts: str | Path, dataset: str,
                  input_shape: Sequence[int] | None = None, value_range: Sequence[float] | None = None,
                  mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                  data_dir: str | Path | None = None, download: bool = False, val_size: float = 0.1,
                  label_noise: float = 0.0, seed: int = 0, eval_split: str = "validation",
                  metrics: MetricsConfig = DEFAULT_METRICS, family: str | None = None,
                  n_trials: int | None = None) -> RecordedSettings:
    """Record on ``study`` (before ``study.optimize``) what aiq-search's readers need, for a study whose
    objective trains in a loop of its own and records each trial with `AiqTrial`.

    The mode follows the study's directions: ``"maximize"`` is aIQ mode, ``["maximize", "minimize"]`` Pareto
    mode (accuracy, parameters). ``artifacts`` is the folder for the trials' weights. ``dataset`` is one that
    aiq-search loads (`DATASETS`: its input format is measured, and `load_study_data` gives the splits that
    ``export`` and ``evaluate`` rebuild from ``data_dir``, ``val_size``, ``label_noise`` and ``seed``), or a
    name of your own with its ``input_shape`` ([C, H, W]), ``value_range`` (the raw inputs' min and max) and
    the per-channel ``mean`` and ``std`` you normalize with (none: raw inputs). ``eval_split`` names the split
    your final accuracy and efficiency are measured on; ``metrics`` how they are scored; ``family`` the
    family your architectures belong to (informative); ``n_trials`` the target that ``status`` shows.

    Calling it again (each run of your script) is fine; a study that has trials refuses other settings.
    Returns the settings as readers see them.
    """
    mode = _mode(study)
    if eval_split not in EVAL_SPLITS:
        raise ConfigError(f"eval_split must be 'validation' or 'test', got {eval_split!r}")
    if n_trials is not None and n_trials < 1:
        raise ConfigError(f"n_trials must be >= 1 (or None), got {n_trials!r}")
    if family is not None:
        get_family(family)  # a one-line ConfigError now rather than at export
    data_dir = None if data_dir is None else str(data_dir)
    given = {"input_shape": input_shape, "value_range": value_range, "mean": mean, "std": std}
    load = {"data_dir": data_dir, "download": download, "val_size": val_size, "seed": seed,
            "label_noise": label_noise}
    input_format = _input_format(dataset, given, load)
    open_artifact_store(str(artifacts), create=True)  # writable: found now, not after a trial has trained
    config = {
        "study": {"name": study.study_name, "mode": mode, "eval_split": eval_split, "seed": seed,
                  "n_trials": n_trials, "sampler": type(study.sampler).__name__,
                  "pruner": type(study.pruner).__name__, "artifacts": str(artifacts)},
        "data": {"dataset": dataset, "data_dir": data_dir, "download": download, "val_size": val_size,
                 "label_noise": float(label_noise)},
        "search": {"family": family},
        "training": None,  # the objective's own loop: aiq-search knows nothing of it
        "metrics": metrics.model_dump(mode="json"),
    }
    value = settings_value(config, input_format=input_format, data_dir=data_dir, artifacts=str(artifacts))
    trials = study.get_trials(deepcopy=False)
    if trials:
        recorded = study.user_attrs.get(SETTINGS_ATTR)
        if recorded is None:
            raise ConfigError(f"study {study.study_name!r} already has {len(trials)} trial(s) that aiq-search did "
                              "not record; give the study a new name (prepare_study comes before optimize)")
        changed = _changed(recorded, value)
        if changed:
            raise ConfigError(f"study {study.study_name!r} already has trials made with other settings: "
                              f"{', '.join(changed)} differ from what it recorded; give the study a new name")
    record_settings(study, value)
    return study_settings(study)


def load_study_data(study: optuna.Study, *, device: str | torch.device | None = None) -> DataSplits:
    """The splits a prepared study recorded, loaded as ``export`` and ``evaluate`` will load them (normalized
    with the training split's statistics), on ``device``."""
    settings = study_settings(study)
    data = settings.config["data"]
    if settings.dataset not in DATASETS:
        raise DataError(f"study {study.study_name!r} records the data set {settings.dataset!r}, which aiq-search "
                        f"does not load ({', '.join(DATASETS)}); load it yourself")
    splits = load_dataset(settings.dataset, data_dir=settings.data["data_dir"], download=data["download"],
                          val_size=data["val_size"], seed=settings.config["study"]["seed"],
                          label_noise=data["label_noise"])
    return splits if device is None else splits.to(device)


# --------------------------------------------------------------------------------------------- a trial


def _architecture(model: nn.Module, architecture: Mapping[str, Any] | None) -> dict[str, Any]:
    """The spec to record: a family's spec (checked, and checked to fit the model, so export will work), or
    a free-form JSON object, or (neither given nor built by `build_model`) the model's class."""
    spec = architecture if architecture is not None else getattr(model, "spec", None)
    if spec is None:
        return {"model": f"{type(model).__module__}.{type(model).__qualname__}"}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"architecture must be a JSON object (a dict), got {type(spec).__name__}")
    if "family" not in spec:
        try:
            return json.loads(json.dumps(dict(spec)))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"architecture must be plain JSON data: {exc}") from None
    family, checked = check_spec(spec)
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_model(checked).state_dict().items()}
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if expected != actual:
        differ = sorted(k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k))
        raise ConfigError(f"the model does not fit its {family.name} architecture spec: {', '.join(differ[:3])} "
                          "differ (build it with aiq_search.families.build_model(spec))")
    return checked


class AiqTrial:
    """One trial of your own training loop, scored and recorded the aiq-search way (CONTRACTS.md, "Trials in
    storage") in a study made ready by `prepare_study`::

        with AiqTrial(trial, model) as aiq:          # records the architecture and parameter count
            for epoch in range(1, epochs + 1):
                train_one_epoch(model)
                with aiq.probe() as probe, torch.no_grad():    # your evaluation pass, model.eval()
                    accuracy = ...
                aiq.report(epoch, accuracy, probe.report())   # aIQ to the pruner; raises TrialPruned
            return aiq.finish(accuracy, probe.report(), test_accuracy=...)  # scores, weights, the value

    ``model`` is the network whose weights are recorded and exported; ``architecture`` its spec: that of an
    aiq-search family (``model.spec`` when built by `build_model`, which export rebuilds), or any JSON object
    describing it (export then refuses the trial). Leaving the ``with`` block on an exception records the
    trial's ``fail_reason``.
    """

    def __init__(self, trial: optuna.Trial, model: nn.Module, *,
                 architecture: Mapping[str, Any] | None = None) -> None:
        settings = study_settings(trial.study)
        self.trial = trial
        self.model = model
        self.metrics = MetricsConfig.model_validate(settings.config["metrics"])
        self.mode = settings.mode
        self.eval_split = settings.eval_split
        self.store = open_artifact_store(settings.artifacts, create=True)
        self.n_params = count_parameters(model)
        self.epoch: int | None = None
        self._started = time.perf_counter()
        spec = _architecture(model, architecture)
        record_architecture(trial, spec, self.n_params, describe_spec(spec))

    def __enter__(self) -> AiqTrial:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is not None:
            record_failure(self.trial, exc)

    def probe(self) -> EfficiencyProbe:
        """A probe of the model's layers as the study measures them (its ``metrics``): enter it around your
        evaluation pass, then take its ``report()``."""
        return EfficiencyProbe(self.model, self.metrics.layers, alpha=self.metrics.alpha)

    def report(self, epoch: int, accuracy: float, efficiency: EfficiencyReport) -> float:
        """Report the epoch's aIQ (validation ``accuracy`` and ``efficiency`` from one pass) to the pruner and
        return it; raises ``optuna.TrialPruned`` when the pruner says so (aIQ mode: Optuna prunes no
        multi-objective trial)."""
        score = self.metrics.aiq(efficiency.network, accuracy)
        self.epoch = epoch
        if self.mode == "aiq":
            self.trial.report(score, epoch)
            if self.trial.should_prune():
                raise optuna.TrialPruned(f"aIQ {score:.4f} below the pruner's bar after epoch {epoch}")
        return score

    def finish(self, accuracy: float, efficiency: EfficiencyReport, *, test_accuracy: float | None = None,
               val_accuracy: float | None = None, epochs: int | None = None) -> float | tuple[float, float]:
        """Record the trained trial: ``accuracy`` and ``efficiency`` from one pass over the study's eval
        split, the other split's accuracy (``test_accuracy``, or ``val_accuracy`` when the eval split is
        "test"), the weights the model holds now (those the numbers must come from) and ``epochs`` (default:
        the last reported). Returns what the objective returns: aIQ, or (accuracy, parameters) in Pareto
        mode."""
        given = {"validation": val_accuracy, "test": test_accuracy, self.eval_split: accuracy}
        accuracies = {split: value for split, value in given.items() if value is not None}
        missing = [split for split in given if split not in accuracies]
        if missing:
            argument = "val_accuracy" if missing[0] == "validation" else "test_accuracy"
            raise ConfigError(f"finish needs the {missing[0]} accuracy too ({argument}=...)")
        epochs = self.epoch if epochs is None else epochs
        if epochs is None:
            raise ConfigError("finish needs epochs=... when no epoch was reported")
        score = record_scores(
            self.trial, accuracy=float(accuracy), efficiency=efficiency, metrics=self.metrics,
            test_accuracy=float(accuracies["test"]), val_accuracy=float(accuracies["validation"]),
            epochs=int(epochs), seconds=time.perf_counter() - self._started, device=str(model_device(self.model)),
            weights_artifact_id=save_weights(self.trial, self.model, self.store))
        return (float(accuracy), float(self.n_params)) if self.mode == "pareto" else score



