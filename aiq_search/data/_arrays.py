"""Arrays the user already has: an ``.npz`` (numpy) or ``.pt`` (torch) file holding ``x_train``, ``y_train``
and optionally ``x_test``, ``y_test``.

x may be (N, C, H, W) images, (N, H, W) one-channel images or (N, F) feature rows (each feature becomes a
channel of a 1×1 input, so it is standardized on its own); y holds class indices 0..K-1.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from aiq_search.data._core import TEST_SIZE, RawData, split_test
from aiq_search.data._registry import DataPath, register_dataset
from aiq_search.errors import DataError

KEYS = ("x_train", "y_train", "x_test", "y_test")


class ArraysOptions(BaseModel):
    """``path``: the .npz or .pt file; ``test_size``: the fixed, stratified fraction held out as test set
    when the file has no ``x_test``/``y_test``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    path: DataPath
    test_size: float = Field(TEST_SIZE, gt=0, lt=1)


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"arrays: no file {path}")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                return {key: npz[key] for key in npz.files}
        if path.suffix == ".pt":
            content = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(content, dict):
                raise DataError(f"arrays: {path} holds a {type(content).__name__}, not a dict of tensors")
            return content
    except (OSError, ValueError, RuntimeError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        raise DataError(f"arrays: cannot read {path}: {' '.join(str(exc).split())}") from None
    raise DataError(f"arrays: {path} must end in .npz or .pt")


@register_dataset("arrays", options=ArraysOptions)
def load_arrays(*, path: str, test_size: float) -> RawData:
    """arrays: x_train, y_train[, x_test, y_test] from an .npz or .pt file."""
    file = Path(path)
    content = _read(file)
    missing = [k for k in KEYS[:2] if k not in content]
    if missing or (("x_test" in content) != ("y_test" in content)):
        raise DataError(f"arrays: {file} must hold x_train, y_train and optionally both x_test and y_test; "
                        f"it holds {', '.join(sorted(content)) or 'nothing'}")
    x, y = (_array(content[k], file, k) for k in KEYS[:2])
    if "x_test" in content:
        test_x, test_y = (_array(content[k], file, k) for k in KEYS[2:])
    else:
        if len(x) != len(y):
            raise DataError(f"arrays: {file}: x_train has {len(x)} rows but y_train {len(y)}")
        x, y, test_x, test_y = split_test(x, y, test_size, what=str(file))
    return RawData(x, y, test_x, test_y, source=str(file))


def _array(value: Any, file: Path, key: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, np.ndarray):
        return value
    raise DataError(f"arrays: {file}: {key} is a {type(value).__name__}, not an array")
