"""CIFAR-10 and CIFAR-100 in their own on-disk format: pickled batches in ``cifar-10-batches-py`` /
``cifar-100-python``.

The file names come from torchvision's classes, and torchvision downloads (``download = true``); the
batches are read here, because torchvision refuses any file whose md5 is not the official one (a
re-packed or subset copy). They are unpickled with only numpy's array classes allowed, so a batch file
cannot run code.
"""

from __future__ import annotations

import pickle
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from aiq_search.data._core import RawData, default_data_dir
from aiq_search.data._registry import register_dataset
from aiq_search.errors import DataError

# data set name -> (torchvision class name, classes)
CIFAR = {"cifar10": ("CIFAR10", 10), "cifar100": ("CIFAR100", 100)}

# What a CIFAR batch may refer to: numpy's array reconstruction (numpy 1 and 2 names) and, for pickles
# written by Python 3 with protocol 2, bytes.
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a CIFAR batch never does")
        return super().find_class(module, name)


def read_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels of one pickled CIFAR batch."""
    try:
        with path.open("rb") as file:
            entry = _ArrayUnpickler(file, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as exc:
        raise DataError(f"{path} is not a readable CIFAR batch: {' '.join(str(exc).split())}") from None
    if not isinstance(entry, dict) or "data" not in entry or label_key not in entry:
        keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise DataError(f"{path} is not a CIFAR batch: it needs 'data' and '{label_key}', it has {keys}")
    data, labels = np.asarray(entry["data"]), np.asarray(entry[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DataError(f"{path}: 'data' must be uint8 (N, 3072) with N labels, got {data.dtype} {data.shape} "
                        f"and {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _layout(name: str) -> tuple[str, list[str], list[str], str]:
    """torchvision's folder name, train and test batch files, and label key for ``name``."""
    from torchvision import datasets

    cls = getattr(datasets, CIFAR[name][0])
    label_key = "labels" if name == "cifar10" else "fine_labels"
    return cls.base_folder, [f for f, _ in cls.train_list], [f for f, _ in cls.test_list], label_key


def _download(name: str, root: Path) -> None:
    from torchvision import datasets

    try:
        getattr(datasets, CIFAR[name][0])(str(root), train=False, download=True)
    except (OSError, RuntimeError) as exc:
        raise DataError(f"could not download {name} into {root}: {' '.join(str(exc).split())}") from None


def load_cifar(name: str, *, data_dir: Path | None, download: bool) -> RawData:
    """The batches of ``name`` from ``<dir>/<name>/<folder>``, ``<dir>/<folder>`` or ``<dir>`` itself."""
    root = data_dir or default_data_dir()
    folder, train_files, test_files, label_key = _layout(name)
    folders = [root / name / folder, root / folder, root]

    def complete(path: Path) -> bool:
        return all((path / f).is_file() for f in train_files + test_files)

    found = next((f for f in folders if complete(f)), None)
    if found is None and download:
        _download(name, root / name)
        found = root / name / folder if complete(root / name / folder) else None
    if found is None:
        raise DataError(f"{name}: no folder holds {', '.join(train_files + test_files)}; looked in "
                        f"{', '.join(map(str, folders))}; set data_dir (or $AIQ_DATA_DIR) to the folder that "
                        "holds them, or download = true")
    train = [read_batch(found / f, label_key) for f in train_files]
    test_x, test_y = read_batch(found / test_files[0], label_key)
    return RawData(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), test_x, test_y,
                   value_range=(0.0, 255.0), num_classes=CIFAR[name][1], source=str(found.resolve()))


for _name in CIFAR:
    register_dataset(_name, partial(load_cifar, _name))
