"""MNIST, Fashion-MNIST and KMNIST: the four IDX files, wherever the user keeps them.

Looked for in torchvision's layout (``<dir>/mnist/MNIST/raw/``, ``<dir>/MNIST/raw/``) and in flat
folders (``<dir>/mnist/``, ``<dir>`` itself, e.g. a distribution package's folder of ``*-ubyte.gz``),
each file gzipped or not. IDX is read here (a few lines of numpy); torchvision only downloads.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from functools import partial
from pathlib import Path

import numpy as np

from aiq_search.data._core import RawData, default_data_dir
from aiq_search.data._registry import register_dataset
from aiq_search.errors import DataError

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# data set name -> torchvision class (its name is also torchvision's folder: <root>/MNIST/raw)
TORCHVISION = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (``.gz`` or not) as a uint8 array of its declared shape."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise DataError(f"{path} is not an IDX file of unsigned bytes (its first bytes are {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header]) if len(data) >= header else ()
    if len(data) - header != math.prod(shape) or not shape:
        raise DataError(f"{path}: its header declares shape {shape} but it holds {len(data) - header} bytes")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape).copy()


def _files_in(folder: Path) -> list[Path] | None:
    """The four files in ``folder``, each plain or gzipped, or None if one is missing."""
    found = []
    for name in FILES:
        candidates = [folder / name, folder / f"{name}.gz"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            return None
        found.append(path)
    return found


def candidate_folders(name: str, root: Path) -> list[Path]:
    """Where ``name``'s files are looked for under ``root``, in order."""
    folder = TORCHVISION[name]
    return [root / name / folder / "raw", root / folder / "raw", root / name, root]


def _download(name: str, root: Path) -> Path:
    """torchvision fetches the files into ``<root>/<Class>/raw``; returns that folder."""
    from torchvision import datasets

    cls = getattr(datasets, TORCHVISION[name])
    try:
        return Path(cls(str(root), train=False, download=True).raw_folder)
    except (OSError, RuntimeError) as exc:
        raise DataError(f"could not download {name} into {root}: {' '.join(str(exc).split())}") from None


def load_idx(name: str, *, data_dir: Path | None, download: bool) -> RawData:
    """Train and test images (N, 28, 28) and labels of ``name`` from the first folder that has all four."""
    root = data_dir or default_data_dir()
    folders = candidate_folders(name, root)
    paths = next((found for found in map(_files_in, folders) if found is not None), None)
    if paths is None and download:
        paths = _files_in(_download(name, root / name))
    if paths is None:
        raise DataError(f"{name}: no folder holds {', '.join(FILES)} (each may end in .gz); looked in "
                        f"{', '.join(map(str, dict.fromkeys(folders)))}; set data_dir (or $AIQ_DATA_DIR) to "
                        "the folder that holds them, or download = true")
    train_x, train_y, test_x, test_y = (read_idx(p) for p in paths)
    for images, labels, path in ((train_x, train_y, paths[0]), (test_x, test_y, paths[2])):
        if images.ndim != 3 or labels.ndim != 1:
            raise DataError(f"{path}: expected images (N, H, W) and labels (N,), got {images.shape} and "
                            f"{labels.shape}")
    return RawData(train_x, train_y, test_x, test_y, value_range=(0.0, 255.0), num_classes=10,
                   source=str(paths[0].parent.resolve()))


for _name in TORCHVISION:
    register_dataset(_name, partial(load_idx, _name))
