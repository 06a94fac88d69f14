"""Taking trained trials out of a study: a folder per trial that deploys on its own (format: `exported`).

Each folder holds the architecture, the trial's own weights (the bytes it stored as an Optuna artifact:
nothing is retrained), the input format with the normalization the model applies itself, the recorded
metrics, an ONNX graph that takes raw inputs, and a manifest written last. `load_exported` rebuilds the model from
a folder and `verify_export` measures it again, so anyone can check that the recorded numbers are the model's.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import optuna
import torch
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial
from pydantic import ValidationError
from torch import nn

from aiq_search.errors import AiqSearchError, ConfigError, StorageError
from aiq_search.export._folder import (
    ARCHITECTURE_FILE,
    INPUT_FILE,
    METRICS_FILE,
    ONNX_FILE,
    WEIGHTS_FILE,
    InputFormat,
    build_network,
    write_manifest,
)
from aiq_search.export._model import RawInputModel
from aiq_search.export._spec import check_architecture
from aiq_search.study import (
    RecordedSettings,
    by_aiq,
    open_artifact_store,
    pareto_front,
    require_complete_trials,
    study_settings,
)

__all__ = ["EXPORTS_DIR", "WHICH", "default_out_dir", "export_trials", "onnx_available", "select_trials"]

WHICH = ("best", "pareto", "top")
EXPORTS_DIR = Path("exports")
PARTIAL_GLOB = ".trial-*.partial"


def onnx_available() -> bool:
    """Whether the ``export`` extra is installed: the ONNX exporter needs onnx and onnxscript."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxscript"))


def select_trials(study: optuna.Study, which: str = "best", k: int = 1) -> list[FrozenTrial]:
    """The trials to export: the best aIQ, the Pareto front (accuracy against parameters), or the top k."""
    if which not in WHICH:
        raise ConfigError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    if which == "top" and k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    trials = require_complete_trials(study)
    if which == "pareto":
        return pareto_front(trials)
    return by_aiq(trials)[: 1 if which == "best" else k]


def _attr(trial: FrozenTrial, name: str) -> Any:
    try:
        return trial.user_attrs[name]
    except KeyError:
        raise StorageError(f"trial {trial.number} has no {name!r} attribute: it was not recorded by "
                           "aiq-search, or by an older version") from None


def _data_settings(settings: RecordedSettings) -> dict[str, Any]:
    """The arguments of load_dataset that rebuild the study's splits."""
    config = settings.config
    return {"dataset": settings.dataset, "data_dir": settings.data["data_dir"],
            "val_size": config["data"]["val_size"], "label_noise": config["data"]["label_noise"],
            "seed": config["study"]["seed"], "options": settings.data.get("options", {}),
            "fingerprint": settings.data.get("fingerprint")}


def _input_format(settings: RecordedSettings) -> InputFormat:
    """What the study recorded about its inputs (shape, raw range, normalization)."""
    try:
        return InputFormat.model_validate(settings.data.get("input"))
    except ValidationError as exc:
        raise StorageError(f"the study's recorded input format is invalid: {exc.errors()[0]['msg']}") from None


def _metrics(study: optuna.Study, settings: RecordedSettings, trial: FrozenTrial) -> dict[str, Any]:
    """What metrics.json holds: the trial's recorded numbers and the data settings to measure them again."""
    names = ("accuracy", "val_accuracy", "test_accuracy", "layer_efficiencies", "network_efficiency", "aiq")
    return {
        "study": study.study_name,
        "trial": trial.number,
        "mode": settings.mode,
        "dataset": settings.dataset,
        "eval_split": settings.eval_split,
        **{name: _attr(trial, name) for name in names},
        "metrics": settings.config["metrics"],
        **{name: _attr(trial, name) for name in ("n_params", "epochs", "device")},
        "params": trial.params,
        "data": _data_settings(settings),
    }


def _write_onnx(model: nn.Module, input_shape: list[int], path: Path) -> None:
    """ONNX with a free batch dimension; one file, weights inside (these networks are far below 2 GB).

    Some onnxscript releases print their optimizer's progress to stdout; it goes to stderr, since stdout
    carries the exported folders for scripts."""
    example = torch.zeros(2, *input_shape)  # 2, not 1: torch.export would fix a batch of 1 as a constant
    with contextlib.redirect_stdout(sys.stderr):
        torch.onnx.export(
            model.cpu().eval(),
            (example,),
            str(path),
            dynamo=True,
            external_data=False,
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            input_names=["input"],
            output_names=["logits"],
            verbose=False,
        )


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def default_out_dir(study_name: str) -> Path:
    """``exports/<study name>``, where the command line exports by default, the name made one safe folder
    name as `plot` makes it one file name (``../../x`` -> ``exports/_.._x``): a study's name never chooses
    where files go."""
    from aiq_search.readers import safe_filename

    return EXPORTS_DIR / safe_filename(study_name)


class _Store(Protocol):
    """What export needs of an artifact store (Optuna's file system and S3 stores alike)."""

    def open_reader(self, artifact_id: str) -> BinaryIO: ...


@dataclass(frozen=True)
class _Planned:
    """A trial checked for export before anything is written: its records and its weights' reader."""

    trial: FrozenTrial
    architecture: Any
    metrics: dict[str, Any]
    weights: Callable[[], BinaryIO]


def _weights_reader(store: _Store, trial: FrozenTrial, artifact_dir: str) -> Callable[[], BinaryIO]:
    """Opens the trial's weights artifact; opened once at once, so a missing one is refused before writing."""
    artifact_id = str(_attr(trial, "weights_artifact_id"))

    def open_weights() -> BinaryIO:
        try:
            return store.open_reader(artifact_id)
        except ArtifactNotFound:
            raise StorageError(f"trial {trial.number}: its weights (artifact {artifact_id}) are not in "
                               f"{artifact_dir}; give the folder that holds them with --artifacts") from None
        except ValueError:  # Optuna refuses an id that leads out of the store (absolute, or with "..")
            raise StorageError(f"trial {trial.number}: its weights_artifact_id {artifact_id!r} is not an "
                               f"artifact in {artifact_dir}") from None

    open_weights().close()
    return open_weights


def _plan(study: optuna.Study, settings: RecordedSettings, trial: FrozenTrial, store: _Store,
          artifact_dir: str, trust_modules: Collection[str]) -> _Planned:
    architecture = _attr(trial, "architecture")
    check_architecture(architecture, f"trial {trial.number} cannot be exported: its recorded architecture",
                       trust_modules=trust_modules)
    return _Planned(trial, architecture, _metrics(study, settings, trial),
                    _weights_reader(store, trial, artifact_dir))


def _write_trial(plan: _Planned, input_format: InputFormat, trust_modules: Collection[str], folder: Path) -> None:
    _write_json(folder / ARCHITECTURE_FILE, plan.architecture)
    _write_json(folder / INPUT_FILE, input_format.model_dump(mode="json"))
    with plan.weights() as reader, (folder / WEIGHTS_FILE).open("xb") as writer:
        shutil.copyfileobj(reader, writer)
    _write_json(folder / METRICS_FILE, plan.metrics)
    try:  # proves the weights fit the architecture before anyone relies on them
        network = build_network(folder, trust_modules=trust_modules)
    except AiqSearchError as exc:
        raise StorageError(f"trial {plan.trial.number} cannot be exported: {exc}") from None
    if onnx_available():
        _write_onnx(RawInputModel(network, input_format), input_format.shape, folder / ONNX_FILE)
    write_manifest(folder)  # last: a folder without a valid manifest is an interrupted export


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (what mkdir(parents=True) would create)."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists() or folder.is_symlink():
            break
        missing = folder
    return missing


def export_trials(study: optuna.Study, out_dir: str | Path, *, which: str = "best", k: int = 1,
                  force: bool = False, artifacts: str | Path | None = None,
                  trust_modules: Collection[str] = ()) -> list[Path]:
    """Write one folder per selected trial (``trial-NNNN``) under ``out_dir`` and return them.

    A non-empty ``out_dir`` is refused unless ``force``, which replaces only the folders being written.
    ``artifacts`` overrides the artifact directory the study recorded (e.g. a volume mounted elsewhere).
    ``trust_modules``: modules a family named by import path may import (see `check_architecture`).
    Every trial is checked (records, architecture, weights artifact) before anything is written, and a
    refused export leaves no folder it created. Each folder is written under a hidden
    ``.trial-NNNN.partial`` name and renamed when complete; those an interrupted export left behind are
    removed first.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir} exists and is not a folder")
    settings = study_settings(study)
    trials = select_trials(study, which, k)
    artifact_dir = str(artifacts or settings.artifacts)
    store = open_artifact_store(artifact_dir)  # a folder that is not on this machine: one line, before any output
    input_format = _input_format(settings)
    plans = [_plan(study, settings, trial, store, artifact_dir, trust_modules) for trial in trials]
    created = _first_missing(out_dir)
    try:
        for stale in out_dir.glob(PARTIAL_GLOB) if out_dir.is_dir() else ():
            shutil.rmtree(stale)
        if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
            raise ConfigError(f"{out_dir} is not empty; choose an empty folder or allow replacing "
                              "the exported trials' folders in it (force=True; --force on the command line)")
        out_dir.mkdir(parents=True, exist_ok=True)
        return [_export_one(plan, input_format, trust_modules, out_dir) for plan in plans]
    except BaseException as exc:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        if isinstance(exc, OSError):
            raise StorageError(f"cannot export into {out_dir}: {exc.strerror or exc}") from None
        raise


def _export_one(plan: _Planned, input_format: InputFormat, trust_modules: Collection[str], out_dir: Path) -> Path:
    folder = out_dir / f"trial-{plan.trial.number:04d}"
    partial = out_dir / f".{folder.name}.partial"
    partial.mkdir()
    try:
        _write_trial(plan, input_format, trust_modules, partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)
    return folder
