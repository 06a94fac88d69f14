"""Measuring an exported model again, as it will be deployed: raw inputs in, through PyTorch and ONNX.

`verify_export` feeds the data set's RAW inputs (no normalization outside the model) to the exported model, so
it checks the export as a user runs it, and compares every recorded number exactly; ``model.onnx``, when
present, is run in onnxruntime on the same raw test inputs and must predict what PyTorch predicts.
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aiq_search import training
from aiq_search.data import check_fingerprint, load_dataset
from aiq_search.errors import AiqSearchError, ConfigError, DataError
from aiq_search.export._folder import METRICS_FILE, ONNX_FILE, load_exported, read_metrics, verify
from aiq_search.families import count_parameters

__all__ = ["ExportCheck", "OnnxCheck", "check_onnx", "verify_export"]

# onnxruntime's kernels round differently from PyTorch's: logits may differ by this much times the largest
# |logit| (at least 1), but no prediction may change.
ONNX_TOLERANCE = 1e-4


@dataclass(frozen=True)
class OnnxCheck:
    """model.onnx in onnxruntime against the PyTorch model, both on the same raw inputs."""

    accuracy: float
    differing_predictions: int
    max_logit_difference: float
    largest_logit: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.differing_predictions == 0 and self.max_logit_difference <= self.tolerance

    def describe(self) -> str:
        """One line saying what was compared, with the tolerance as it is computed."""
        return (f"{ONNX_FILE} in onnxruntime on raw test inputs: {self.differing_predictions} predictions differ "
                f"from PyTorch's, largest logit difference {self.max_logit_difference:.2e} (tolerance "
                f"{ONNX_TOLERANCE:g} × max(1, largest |logit| {self.largest_logit:.3g}) = {self.tolerance:.2e})"
                f"{'' if self.ok else '   DIFFERS'}")


def _logits(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> np.ndarray:
    with torch.inference_mode():
        return torch.cat([model(xb) for xb in x.split(batch_size)]).float().cpu().numpy()


def check_onnx(path: str | Path, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *,
               batch_size: int = 256) -> OnnxCheck:
    """Run ``path`` in onnxruntime (CPU) on raw inputs ``x`` and compare with ``model`` (which takes the
    same raw inputs) run on the CPU too, since a GPU's kernels (TF32 convolutions) round differently, and
    with the labels ``y``."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own error types (InvalidProtobuf, Fail, ...) derive from Exception
        raise AiqSearchError(f"{path} cannot be loaded by onnxruntime: {str(exc).splitlines()[0]}") from None
    names = [i.name for i in session.get_inputs()]
    if names != ["input"]:
        raise AiqSearchError(f"{path} takes inputs {names}, not one named 'input'")
    x_cpu = x.float().cpu().numpy()
    got = np.concatenate([session.run(None, {"input": x_cpu[i:i + batch_size]})[0]
                          for i in range(0, len(x_cpu), batch_size)])
    expected = _logits(copy.deepcopy(model).cpu(), x.cpu(), batch_size)
    if got.shape != expected.shape:
        raise AiqSearchError(f"{path} gives logits of shape {list(got.shape)}, PyTorch {list(expected.shape)}")
    labels = y.cpu().numpy()
    largest = float(np.abs(expected).max())
    return OnnxCheck(
        accuracy=int((got.argmax(1) == labels).sum()) / len(labels),
        differing_predictions=int((got.argmax(1) != expected.argmax(1)).sum()),
        max_logit_difference=float(np.abs(got - expected).max()),
        largest_logit=largest,
        tolerance=ONNX_TOLERANCE * max(1.0, largest),
    )


def _default_device(recorded: str) -> str:
    """The kind of device the trial ran on when this machine has one: the same kernels give the same
    numbers, while another device may flip a unit sitting exactly at zero and change a count."""
    return "cuda" if recorded.startswith("cuda") and torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class ExportCheck:
    """What `verify_export` measured: ``compared`` maps each number's name to (recorded, measured); ``onnx``
    is None when there is no model.onnx or no onnxruntime; ``notes`` say what was not checked and why."""

    study: str
    trial: int
    dataset: str
    split: str
    device: str
    compared: dict[str, tuple[Any, Any]]
    onnx: OnnxCheck | None
    notes: list[str]

    @property
    def equal(self) -> bool:
        """Every recorded number measured again identically, and the ONNX check (if run) passed."""
        return all(r == m for r, m in self.compared.values()) and (self.onnx is None or self.onnx.ok)

    def lines(self) -> list[str]:
        """The report `aiq-search evaluate` prints: a table in columns as wide as their longest entry
        (a zero never shows as -0.0), the ONNX line, the notes and the verdict."""
        rows = [(name, _shown(r), _shown(m), "" if r == m else "DIFFERS") for name, (r, m) in self.compared.items()]
        rows.insert(0, ("", "recorded", "measured", ""))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        table = [f"{n:<{widths[0]}}  {r:>{widths[1]}}  {m:>{widths[2]}}  {mark}".rstrip() for n, r, m, mark in rows]
        return [f"trial #{self.trial} of {self.study}, {self.split} split of {self.dataset} on {self.device}", *table,
                *([self.onnx.describe()] if self.onnx is not None else []), *self.notes,
                "all equal" if self.equal else "some numbers differ from the recorded ones"]


def _shown(value: Any) -> str:
    if value is None:
        return "missing"
    return str(0.0 if isinstance(value, float) and value == 0 else value)  # -0.0 == 0.0: shown as 0.0


def verify_export(directory: str | Path, *, data_dir: str | Path | None = None, device: str | None = None,
                  trust_modules: Collection[str] = ()) -> ExportCheck:
    """Measure an exported model again on its recorded split, from RAW inputs, and compare with
    metrics.json exactly; run model.onnx (if there) in onnxruntime on the raw test inputs: a folder with a
    model.onnx that cannot be checked here (no onnxruntime) is refused, never reported equal.
    ``trust_modules``: modules a family named by import path may import (see `check_architecture`).
    Bad folders and files raise `AiqSearchError` (one line)."""
    folder = verify(directory)
    has_onnx = (folder / ONNX_FILE).is_file()
    if has_onnx and importlib.util.find_spec("onnxruntime") is None:
        raise AiqSearchError(f"{folder / ONNX_FILE} cannot be checked: onnxruntime is not installed "
                             "(pip install 'aiq-search[export]')")
    recorded = read_metrics(folder)
    model = load_exported(folder, trust_modules=trust_modules)
    try:
        dev = training.resolve_device(device or _default_device(recorded.device))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    settings = recorded.data
    if data_dir is None and settings.data_dir and Path(settings.data_dir).is_dir():
        data_dir = settings.data_dir
    try:
        data = load_dataset(settings.dataset, data_dir=data_dir, val_size=settings.val_size, seed=settings.seed,
                            label_noise=settings.label_noise, normalize=False, **settings.options)
    except ValueError as exc:
        raise DataError(f"{folder / METRICS_FILE}: data: {exc}") from None
    if settings.fingerprint is not None:
        check_fingerprint(settings.fingerprint, data)
    if list(data.input_shape) != model.input_format.shape:
        raise DataError(f"{settings.dataset} inputs are {list(data.input_shape)}, the model takes "
                        f"{model.input_format.shape}")
    data = data.to(dev)
    model.to(dev)
    split = recorded.eval_split
    # the deployed model wraps the network: its layers are probed under the name "network"
    layers = recorded.metrics.layers
    metrics = recorded.metrics.model_copy(
        update={"layers": None if layers is None else tuple(f"network.{name}" for name in layers)})
    try:
        accuracy, report = training.evaluate(model, *data.split(split), metrics=metrics)
        test_accuracy = accuracy if split == "test" else training.evaluate(model, *data.split("test"),
                                                                           metrics=metrics)[0]
    except training.DivergenceError:
        raise AiqSearchError(f"{folder}: the model's outputs are NaN or infinite") from None
    measured_layers = {name.removeprefix("network."): e for name, e in report.layer_efficiencies.items()}
    compared: dict[str, tuple[Any, Any]] = {
        "accuracy": (recorded.accuracy, accuracy),
        "test_accuracy": (recorded.test_accuracy, test_accuracy),
        "n_params": (recorded.n_params, count_parameters(model)),
        "network_efficiency": (recorded.network_efficiency, report.network),
        "aiq": (recorded.aiq, metrics.aiq(report.network, accuracy)),
    }
    for name in dict.fromkeys([*recorded.layer_efficiencies, *measured_layers]):
        compared[f"efficiency {name}"] = (recorded.layer_efficiencies.get(name), measured_layers.get(name))
    onnx, notes = None, []
    if has_onnx:
        onnx = check_onnx(folder / ONNX_FILE, model, *data.split("test"))
        compared["onnx test_accuracy"] = (recorded.test_accuracy, onnx.accuracy)
    else:
        notes.append(f"no {ONNX_FILE} in the export")
    return ExportCheck(study=recorded.study, trial=recorded.trial, dataset=settings.dataset, split=split,
                       device=str(dev), compared=compared, onnx=onnx, notes=notes)
