"""An exported trial folder: what its files hold, the manifest that says it is whole, and `load_exported`.

A folder holds ``architecture.json`` (the spec `build_model` takes), ``input.json`` (what the model is fed:
raw shape, dtype and value range, and the training split's per-channel mean and std it normalizes with),
``weights.safetensors`` (the trial's own weights), ``metrics.json`` (the recorded numbers and the data
settings to measure them again), optionally ``model.onnx``, and ``manifest.json``, written last, with the
size and SHA-256 of each. A folder whose manifest is missing or does not match its files is an interrupted
or altered export, and every reader here refuses it with one line.

The deployed model takes RAW inputs: `load_exported` (and ``model.onnx``) put the normalization in front of the
trained network, computed as `aiq_search.data.load_dataset` computes it, so the numbers are the same bits.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, StrictFloat, StrictInt, ValidationError, model_validator
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from aiq_search.errors import AiqSearchError
from aiq_search.export._model import RawInputModel
from aiq_search.export._spec import check_architecture
from aiq_search.families import build_model
from aiq_search.metrics import EvalSplit, MetricsConfig
from aiq_search.study import WEIGHTS_FILE

__all__ = ["ARCHITECTURE_FILE", "INPUT_FILE", "MANIFEST_FILE", "METRICS_FILE", "ONNX_FILE", "WEIGHTS_FILE",
           "InputFormat", "Manifest", "Metrics", "build_network", "load_exported", "read_input_format",
           "read_metrics", "verify", "write_manifest"]

ARCHITECTURE_FILE = "architecture.json"
INPUT_FILE = "input.json"
METRICS_FILE = "metrics.json"
ONNX_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
REQUIRED_FILES = (ARCHITECTURE_FILE, INPUT_FILE, WEIGHTS_FILE, METRICS_FILE)
KNOWN_FILES = (*REQUIRED_FILES, ONNX_FILE)
MANIFEST_FORMAT = "aiq-search export"


class _Record(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class InputFormat(_Record):
    """What the exported model is fed: NCHW float32 batches of ``shape`` in the data set's raw units
    (``range`` is the training inputs' min and max); it normalizes each channel as (x - mean) / std."""

    layout: Literal["NCHW"] = "NCHW"
    shape: list[PositiveInt] = Field(min_length=3, max_length=3)
    dtype: Literal["float32"]
    range: list[float] = Field(min_length=2, max_length=2)
    mean: list[float]
    std: list[float]

    @model_validator(mode="after")
    def _consistent(self) -> InputFormat:
        if not len(self.mean) == len(self.std) == self.shape[0]:
            raise ValueError(f"mean and std need one value per channel ({self.shape[0]}), got "
                             f"{len(self.mean)} and {len(self.std)}")
        if not all(s > 0 for s in self.std):
            raise ValueError("std must be positive")
        if not self.range[0] <= self.range[1]:
            raise ValueError(f"range must be [min, max], got {list(self.range)}")
        return self


class DataSettings(_Record):
    """How `aiq_search.data.load_dataset` rebuilds the splits the trial was scored on."""

    dataset: str
    data_dir: str | None
    val_size: StrictInt | StrictFloat
    label_noise: float
    seed: int
    options: dict[str, Any] = {}
    fingerprint: str | None = None


class Metrics(_Record):
    """metrics.json: the trial's recorded numbers (user attrs of CONTRACTS.md) and its data settings."""

    study: str
    trial: int
    mode: Literal["aiq", "pareto"]
    dataset: str
    eval_split: EvalSplit
    accuracy: float
    val_accuracy: float
    test_accuracy: float
    layer_efficiencies: dict[str, float]
    network_efficiency: float
    aiq: float
    metrics: MetricsConfig
    n_params: int
    epochs: int
    device: str
    params: dict[str, Any]
    data: DataSettings


class FileEntry(_Record):
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Manifest(_Record):
    """manifest.json: every file of the export with its size and SHA-256, written after all of them."""

    format: Literal["aiq-search export"]
    version: Literal[1]
    files: dict[str, FileEntry]


_R = TypeVar("_R", bound=_Record)


def _read_json(folder: Path, name: str) -> Any:
    path = folder / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AiqSearchError(f"{folder} is not an exported trial: it has no {name}") from None
    except OSError as exc:
        raise AiqSearchError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # invalid JSON or invalid UTF-8
        raise AiqSearchError(f"{path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise AiqSearchError(f"{path} is not an export's JSON: it is nested too deeply") from None


def _read_record(folder: Path, name: str, record: type[_R]) -> _R:
    data = _read_json(folder, name)
    try:
        return record.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        # the field's path, without the member names pydantic adds for the int | float of val_size
        where = "".join(f"{p}." for p in first["loc"] if p not in ("int", "float")).removesuffix(".")
        where = f"{where}: " if where else ""
        message = first["msg"].removeprefix("Value error, ")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise AiqSearchError(f"{folder / name}: {where}{message}{more}") from None


def read_metrics(folder: str | Path) -> Metrics:
    """metrics.json of an export, checked field by field."""
    return _read_record(Path(folder), METRICS_FILE, Metrics)


def read_input_format(folder: str | Path) -> InputFormat:
    """input.json of an export, checked."""
    return _read_record(Path(folder), INPUT_FILE, InputFormat)


def _digest(path: Path) -> FileEntry:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return FileEntry(bytes=path.stat().st_size, sha256=sha.hexdigest())


def write_manifest(folder: str | Path) -> Path:
    """Write manifest.json for the export files in ``folder``; the last file an export writes."""
    folder = Path(folder)
    files = {name: _digest(folder / name).model_dump() for name in KNOWN_FILES if (folder / name).is_file()}
    manifest = {"format": MANIFEST_FORMAT, "version": 1, "files": files}
    tmp = folder / f".{MANIFEST_FILE}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, folder / MANIFEST_FILE)  # a reader sees the whole manifest or none
    return folder / MANIFEST_FILE


def _own_files(folder: Path) -> None:
    """Refuse a file of the export that is a symbolic link or resolves outside ``folder``: the manifest
    vouches for the folder's own files, and a link would make every reader follow it elsewhere."""
    inside = folder.resolve()
    for name in (MANIFEST_FILE, *KNOWN_FILES):
        path = folder / name
        if path.is_symlink() or (path.exists() and path.resolve().parent != inside):
            raise AiqSearchError(f"{path} is a link, not a file of the export; an export's files are its own "
                                 "(copy the file into the folder)")


def verify(directory: str | Path) -> Path:
    """``directory`` as a Path if it is a complete export whose files are those its manifest lists."""
    folder = Path(directory)
    if not folder.is_dir():
        raise AiqSearchError(f"{folder} is not a folder" if folder.exists() else f"{folder} does not exist")
    _own_files(folder)
    if not (folder / MANIFEST_FILE).is_file():
        raise AiqSearchError(f"{folder} is not a complete export: it has no {MANIFEST_FILE} (the export was "
                             "interrupted, or written by an older aiq-search); export the trial again")
    manifest = _read_record(folder, MANIFEST_FILE, Manifest)
    missing = [name for name in REQUIRED_FILES if name not in manifest.files]
    unknown = [name for name in manifest.files if name not in KNOWN_FILES]
    unlisted = [name for name in KNOWN_FILES if name not in manifest.files and (folder / name).exists()]
    if missing or unknown or unlisted:
        problem = (f"does not list {missing[0]}" if missing else f"lists an unknown file {unknown[0]!r}"
                   if unknown else f"does not list {unlisted[0]}, which is in the folder")
        raise AiqSearchError(f"{folder / MANIFEST_FILE} {problem}")
    for name, entry in manifest.files.items():
        path = folder / name
        if not path.is_file():
            raise AiqSearchError(f"{folder} is not a complete export: {name} is missing")
        if _digest(path) != entry:
            raise AiqSearchError(f"{path} is not the file that was exported (its size or SHA-256 differs "
                                 f"from {MANIFEST_FILE})")
    return folder


def _weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from the safetensors header, before any tensor is read."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except FileNotFoundError:
        raise AiqSearchError(f"{path.parent} is not an exported trial: it has no {path.name}") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise AiqSearchError(f"{path} is not a readable safetensors file: {exc}") from None


def build_network(folder: str | Path, *, trust_modules: Collection[str] = ()) -> nn.Module:
    """The trained network of an export folder (no manifest check: export calls it before sealing one).

    The architecture is first checked (`check_architecture`: a known or trusted family, built on the meta
    device) and compared with the weights' header, so a spec that does not fit the weights is refused
    before any memory is spent on it."""
    folder = Path(folder)
    spec = _read_json(folder, ARCHITECTURE_FILE)
    expected = check_architecture(spec, str(folder / ARCHITECTURE_FILE), trust_modules=trust_modules)
    shapes = _weight_shapes(folder / WEIGHTS_FILE)
    fit = f"{folder / WEIGHTS_FILE} does not fit {ARCHITECTURE_FILE}"
    if set(shapes) != set(expected):
        missing, extra = sorted(set(expected) - set(shapes)), sorted(set(shapes) - set(expected))
        raise AiqSearchError(f"{fit}: missing tensors {missing[:3]}, unexpected tensors {extra[:3]}")
    for name, (shape, _) in expected.items():
        if shapes[name] != shape:
            raise AiqSearchError(f"{fit}: {name} is {list(shapes[name])} in the weights, {list(shape)} in the "
                                 "architecture")
    try:
        tensors = load_file(str(folder / WEIGHTS_FILE))
    except (SafetensorError, OSError, ValueError) as exc:
        raise AiqSearchError(f"{folder / WEIGHTS_FILE} is not a readable safetensors file: {exc}") from None
    for name, (_, dtype) in expected.items():
        if tensors[name].dtype != dtype:
            raise AiqSearchError(f"{fit}: {name} is {tensors[name].dtype} in the weights, {dtype} in the "
                                 "architecture")
    model = build_model(spec)
    model.load_state_dict(tensors)
    return model.eval()


@overload
def load_exported(directory: str | Path, *, raw: Literal[True] = ...,
                  trust_modules: Collection[str] = ...) -> RawInputModel: ...
@overload
def load_exported(directory: str | Path, *, raw: bool, trust_modules: Collection[str] = ...) -> nn.Module: ...


def load_exported(directory: str | Path, *, raw: bool = True, trust_modules: Collection[str] = ()) -> nn.Module:
    """The exported model in eval mode. With ``raw`` (the default) it takes the data set's raw inputs as
    input.json describes them and normalizes them itself (a `RawInputModel`); ``raw=False`` gives the bare
    trained network, which expects inputs already normalized with input.json's mean and std.
    ``trust_modules``: modules a family named by import path may import (see `check_architecture`)."""
    folder = verify(directory)
    network = build_network(folder, trust_modules=trust_modules)
    if not raw:
        return network
    input_format = read_input_format(folder)
    spec_shape = _read_json(folder, ARCHITECTURE_FILE)["input_shape"]
    if input_format.shape != list(spec_shape):
        raise AiqSearchError(f"{folder / INPUT_FILE}: shape {input_format.shape} is not the architecture's "
                             f"input_shape {list(spec_shape)}")
    return RawInputModel(network, input_format).eval()
