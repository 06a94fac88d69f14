"""Recording studies and trials the aiq-search way: a study's settings, a trial's architecture, scores and
trained weights, and why a trial failed.

The built-in objective (and `aiq_search.study._create`) record through these functions, and so does
`aiq_search.integration._own_loop` for objectives with a training loop of their own, so that status, plots,
the dashboard and export read every study alike (the records are listed in docs/CONTRACTS.md, "Trials in storage").
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import upload_artifact
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.trial import FrozenTrial
from safetensors.torch import save_file

from aiq_search.data import DataSplits
from aiq_search.metrics import EfficiencyReport, MetricsConfig
from aiq_search.study._artifacts import resolve_location
from aiq_search.study._records import METRIC_NAMES, SETTINGS_ATTR, WEIGHTS_FILE

__all__ = ["INTERRUPTED", "SCORE_KEYS", "input_record", "record_architecture", "record_failure", "record_repeat",
           "record_scores",
           "record_settings", "save_weights", "settings_value"]

INTERRUPTED = "interrupted (Ctrl-C or SIGINT)"


# --------------------------------------------------------------------------------------------- the study


def input_record(data: DataSplits) -> dict[str, Any]:
    """What a model of this data set is fed (``input.json`` of an export): raw shape, dtype and range, and the
    training split's per-channel mean and std it is normalized with."""
    return {"shape": list(data.input_shape), "dtype": "float32", "range": list(data.value_range),
            "mean": list(data.mean), "std": list(data.std)}


def settings_value(config: dict[str, Any], *, input_format: dict[str, Any], data_dir: str | None,
                   artifacts: str, data: DataSplits | None = None) -> dict[str, Any]:
    """The study attribute `SETTINGS_ATTR` that every reader uses (CONTRACTS.md): ``config`` (the study
    file's sections as plain data), the data folder and input format, and the artifact folder, both absolute
    as found on the machine that records them; with the loaded ``data``, also the data set's own options
    (paths absolute), where it was read from and its fingerprint, so evaluate refuses other data."""
    data_dir = data_dir or os.environ.get("AIQ_DATA_DIR")
    facts: dict[str, Any] = {}
    if data is not None:
        facts = {"options": {k: str(v) if isinstance(v, Path) else v for k, v in data.options.items()},
                 "source": data.source, "fingerprint": data.fingerprint}
    return {
        "config": config,
        "data": {"data_dir": str(Path(data_dir).expanduser().resolve()) if data_dir else None,
                 "input": input_format, **facts},
        "artifacts": resolve_location(artifacts),
    }


def record_settings(study: optuna.Study, value: dict[str, Any]) -> None:
    """Store ``value`` (from `settings_value`) on the study and name its objectives after its mode."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        study.set_metric_names(METRIC_NAMES[value["config"]["study"]["mode"]])
    study.set_user_attr(SETTINGS_ATTR, value)


# --------------------------------------------------------------------------------------------- a trial


def _set_user_attrs(trial: optuna.Trial, attrs: Mapping[str, Any]) -> None:
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def record_architecture(trial: optuna.Trial, spec: Mapping[str, Any], n_params: int, summary: str) -> None:
    """The network a trial trains (its spec, parameter count and a one-line summary for tables), recorded
    before it trains, so a failed or pruned trial keeps it too."""
    _set_user_attrs(trial, {"architecture": dict(spec), "n_params": int(n_params), "summary": summary})


def save_weights(trial: optuna.Trial, model: torch.nn.Module, store: Any) -> str:
    """The model's weights (``weights.safetensors``) as an Optuna artifact of the trial in ``store`` (any
    Optuna artifact store), so exporting never retrains; returns the artifact id."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    with tempfile.TemporaryDirectory(prefix="aiq-search-") as tmp:
        path = Path(tmp) / WEIGHTS_FILE
        save_file(tensors, str(path))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            return upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial,
                                   mimetype="application/octet-stream")


# what `record_scores` writes: a trained trial's results, which a repeat of its architecture shares
SCORE_KEYS = ("aiq", "accuracy", "val_accuracy", "test_accuracy", "network_efficiency", "layer_efficiencies",
              "epochs", "train_seconds", "device", "weights_artifact_id", "history", "train_accuracy",
              "predicted_classes", "warnings")


def record_scores(trial: optuna.Trial, *, accuracy: float, efficiency: EfficiencyReport, metrics: MetricsConfig,
                  test_accuracy: float, val_accuracy: float, epochs: int, seconds: float, device: str,
                  weights_artifact_id: str, history: list[dict[str, Any]] | None = None,
                  train_accuracy: float | None = None, predicted_classes: int | None = None,
                  warnings: list[str] | None = None) -> float:
    """Record a trained trial's scores (``accuracy`` and ``efficiency`` from one pass over the evaluation
    split), optionally its per-epoch ``history``, its training accuracy, how many classes it predicts on the
    evaluation split and why its scores may mean little (``warnings``), and return its aIQ."""
    optional = {"history": history, "train_accuracy": train_accuracy, "predicted_classes": predicted_classes,
                "warnings": warnings}
    score = metrics.aiq(efficiency.network, accuracy)
    _set_user_attrs(trial, {
        "aiq": score,
        "accuracy": accuracy,
        "val_accuracy": val_accuracy,
        "test_accuracy": test_accuracy,
        "network_efficiency": efficiency.network,
        "layer_efficiencies": efficiency.layer_efficiencies,
        "epochs": epochs,
        "train_seconds": seconds,
        "device": device,
        "weights_artifact_id": weights_artifact_id,
        **{key: value for key, value in optional.items() if value is not None},
    })
    return score


def record_repeat(trial: optuna.Trial, original: FrozenTrial) -> None:
    """Answer ``trial``, which drew the architecture of the COMPLETE trial ``original``, from its record
    instead of training it again: the scores (and weights) are the original's, ``repeat_of`` names it, and
    ``train_seconds`` is 0 (nothing ran)."""
    scores = {key: original.user_attrs[key] for key in SCORE_KEYS if key in original.user_attrs}
    _set_user_attrs(trial, {**scores, "train_seconds": 0.0, "repeat_of": original.number})


def record_failure(trial: optuna.Trial, exc: BaseException) -> None:
    """Why a trial is failing (``fail_reason``), for status and the dashboard; a pruned trial, or one already
    finished, records nothing."""
    if isinstance(exc, (optuna.TrialPruned, UpdateFinishedTrialError)):
        return
    if isinstance(exc, KeyboardInterrupt):
        trial.set_user_attr("fail_reason", INTERRUPTED)
    elif isinstance(exc, Exception):
        trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")


