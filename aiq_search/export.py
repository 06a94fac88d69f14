"""Taking trained trials out of a study: architecture, the trial's own weights, its metrics and ONNX.

An exported folder stands alone: `load` rebuilds the network from it, and `evaluate` measures that network
again on the split it was scored on, so anyone can check that the recorded numbers are the model's.
Nothing is retrained: the weights are the bytes the trial stored as an Optuna artifact.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, download_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial
from safetensors.torch import load_file
from torch import nn

from aiq_search import training
from aiq_search.architectures import build_model, count_parameters
from aiq_search.data import load_dataset
from aiq_search.errors import AiqSearchError, ConfigError, StorageError
from aiq_search.metrics import aiq
from aiq_search.results import by_aiq, pareto_front, require_complete_trials, study_settings

ARCHITECTURE_FILE = "architecture.json"
WEIGHTS_FILE = "weights.safetensors"
METRICS_FILE = "metrics.json"
ONNX_FILE = "model.onnx"
WHICH = ("best", "pareto", "top")


def onnx_available() -> bool:
    """Whether the ``export`` extra is installed: the ONNX exporter needs onnx and onnxscript."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxscript"))


def select_trials(study: optuna.Study, which: str = "best", k: int = 1) -> list[FrozenTrial]:
    """The trials to export: the best aIQ, the Pareto front (accuracy against parameters), or the top k."""
    if which not in WHICH:
        raise ConfigError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    if which == "top" and k < 1:
        raise ConfigError(f"--top needs K >= 1, got {k}")
    trials = require_complete_trials(study)
    if which == "pareto":
        return pareto_front(trials)
    return by_aiq(trials)[: 1 if which == "best" else k]


def _metrics(study: optuna.Study, settings: dict[str, Any], trial: FrozenTrial) -> dict[str, Any]:
    """What metrics.json holds: the trial's recorded numbers and the data settings to measure them again."""
    attrs = trial.user_attrs
    config = settings["config"]
    return {
        "study": study.study_name,
        "trial": trial.number,
        "mode": settings["mode"],
        "dataset": settings["dataset"],
        "eval_split": settings["eval_split"],
        "accuracy": attrs["accuracy"],
        "val_accuracy": attrs["val_accuracy"],
        "test_accuracy": attrs["test_accuracy"],
        "layer_efficiencies": attrs["layer_efficiencies"],
        "network_efficiency": attrs["network_efficiency"],
        "aiq": attrs["aiq"],
        "beta": settings["beta"],
        "n_params": attrs["n_params"],
        "epochs": attrs["epochs"],
        "device": attrs["device"],
        "params": trial.params,
        "data": {
            "dataset": settings["dataset"],
            "data_dir": settings["data_dir"],
            "val_size": config["data"]["val_size"],
            "label_noise": config["data"]["label_noise"],
            "seed": config["study"]["seed"],
        },
    }


def _write_onnx(model: nn.Module, input_shape: list[int], path: Path) -> None:
    """ONNX with a free batch dimension; one file, weights inside (these networks are far below 2 GB)."""
    example = torch.zeros(2, *input_shape)  # 2, not 1: torch.export would fix a batch of 1 as a constant
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


def _write_trial(study: optuna.Study, settings: dict[str, Any], trial: FrozenTrial, artifact_dir: Path,
                 folder: Path) -> None:
    spec = trial.user_attrs["architecture"]
    (folder / ARCHITECTURE_FILE).write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    artifact_id = trial.user_attrs["weights_artifact_id"]
    try:
        download_artifact(artifact_store=FileSystemArtifactStore(artifact_dir), artifact_id=artifact_id,
                          file_path=str(folder / WEIGHTS_FILE))
    except ArtifactNotFound:
        raise StorageError(f"trial {trial.number}: its weights (artifact {artifact_id}) are not in "
                           f"{artifact_dir}; give the folder that holds them with --artifacts") from None
    metrics = _metrics(study, settings, trial)
    (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    model = load(folder)  # proves the weights fit the architecture before anyone relies on the folder
    if onnx_available():
        _write_onnx(model, spec["input_shape"], folder / ONNX_FILE)


def export_trials(study: optuna.Study, out_dir: str | Path, *, which: str = "best", k: int = 1,
                  force: bool = False, artifacts: str | Path | None = None) -> list[Path]:
    """Write one folder per selected trial (``trial-NNNN``) under ``out_dir`` and return them.

    A non-empty ``out_dir`` is refused unless ``force``, which replaces only the folders being written.
    ``artifacts`` overrides the artifact directory the study recorded (e.g. a volume mounted elsewhere).
    Each folder is written under a temporary name and renamed when complete, so a failure leaves none.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise ConfigError(f"{out_dir} is not empty; choose an empty folder or give --force to replace "
                          "the exported trials' folders in it")
    settings = study_settings(study)
    trials = select_trials(study, which, k)
    artifact_dir = Path(artifacts or settings["artifacts"])
    if not artifact_dir.is_dir():
        raise StorageError(f"the study's artifact folder {artifact_dir} is not on this machine; "
                           "give the folder that holds the trials' weights with --artifacts")
    written = []
    for trial in trials:
        folder = out_dir / f"trial-{trial.number:04d}"
        partial = out_dir / f".{folder.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            _write_trial(study, settings, trial, artifact_dir, partial)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        if folder.exists():
            shutil.rmtree(folder)
        partial.rename(folder)
        written.append(folder)
    return written


def _read_json(folder: Path, name: str) -> dict[str, Any]:
    try:
        return json.loads((folder / name).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AiqSearchError(f"{folder} is not an exported trial: it has no {name}") from None
    except json.JSONDecodeError as exc:
        raise AiqSearchError(f"{folder / name} is not valid JSON: {exc}") from None


def load(directory: str | Path) -> nn.Module:
    """The exported network, rebuilt from architecture.json with the trial's weights, in eval mode."""
    folder = Path(directory)
    model = build_model(_read_json(folder, ARCHITECTURE_FILE))
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise AiqSearchError(f"{folder} is not an exported trial: it has no {WEIGHTS_FILE}")
    model.load_state_dict(load_file(str(weights)))  # strict: every tensor must match the architecture
    return model.eval()


def _default_device(recorded: str) -> str:
    """The kind of device the trial ran on when this machine has one: the same kernels give the same
    numbers, while another device may flip a unit sitting exactly at zero and change a count."""
    return "cuda" if recorded.startswith("cuda") and torch.cuda.is_available() else "cpu"


def evaluate(directory: str | Path, *, data_dir: str | Path | None = None,
             device: str | None = None) -> dict[str, Any]:
    """Measure an exported model again on its recorded split and compare with metrics.json, exactly.

    Returns ``study``, ``trial``, ``dataset``, ``split``, ``device``, ``compared`` (name → (recorded,
    measured)) and ``equal`` (whether every pair is identical).
    """
    folder = Path(directory)
    recorded = _read_json(folder, METRICS_FILE)
    model = load(folder)
    try:
        dev = training.resolve_device(device or _default_device(recorded["device"]))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    settings = recorded["data"]
    if data_dir is None and settings["data_dir"] and Path(settings["data_dir"]).is_dir():
        data_dir = settings["data_dir"]
    data = load_dataset(settings["dataset"], data_dir=data_dir, val_size=settings["val_size"],
                        seed=settings["seed"], label_noise=settings["label_noise"]).to(dev)
    model.to(dev)
    split = recorded["eval_split"]
    accuracy, report = training.evaluate(model, *data.split(split))
    test_accuracy = accuracy if split == "test" else training.evaluate(model, *data.split("test"))[0]
    measured_layers = report.layer_efficiencies
    compared: dict[str, tuple[Any, Any]] = {
        "accuracy": (recorded["accuracy"], accuracy),
        "test_accuracy": (recorded["test_accuracy"], test_accuracy),
        "n_params": (recorded["n_params"], count_parameters(model)),
        "network_efficiency": (recorded["network_efficiency"], report.network),
        "aiq": (recorded["aiq"], aiq(report.network, accuracy, recorded["beta"])),
    }
    for name in dict.fromkeys([*recorded["layer_efficiencies"], *measured_layers]):
        compared[f"efficiency {name}"] = (recorded["layer_efficiencies"].get(name), measured_layers.get(name))
    return {
        "study": recorded["study"],
        "trial": recorded["trial"],
        "dataset": settings["dataset"],
        "split": split,
        "device": str(dev),
        "compared": compared,
        "equal": all(r == m for r, m in compared.values()),
    }
