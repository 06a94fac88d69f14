"""Data sets as whole tensors split into train / validation / test, ready to live on the training device.

The validation part is held out of the data set's training set (stratified, seeded by ``seed``); the test
part is the data set's own test set. Inputs are float32 (N, C, H, W), normalized per channel with the
training split's statistics (never the validation or test data); labels are int64.

For the memorization experiment, ``label_noise=f`` replaces the labels of exactly ``round(f * n_train)``
seeded, randomly chosen training rows by uniformly random classes (a new label may equal the old one by
chance, with probability 1/classes). Validation and test labels are never touched.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from aiq_search.errors import DataError

__all__ = ["DATASETS", "DataSplits", "default_data_dir", "load_dataset"]

DATASETS = ("mnist", "fashion-mnist", "kmnist", "digits")

SPLITS = ("train", "validation", "test")

# digits has no official test set: this fraction is held out once, with this seed, whatever ``seed`` is,
# so every trial of every study is tested on the same rows.
DIGITS_TEST_SIZE = 0.2
DIGITS_TEST_SEED = 0


@dataclass(frozen=True)
class DataSplits:
    """The three splits of one data set as tensors, plus what a model needs to know about them.

    ``randomized`` holds the (sorted) indices of the training rows whose labels ``label_noise`` replaced;
    ``mean`` and ``std`` are the per-channel statistics of the training split used to normalize all three,
    in the data set's own pixel units (0..255 for the torchvision sets, 0..16 for digits).
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    randomized: torch.Tensor

    def to(self, device: torch.device | str) -> DataSplits:
        """The same splits with every tensor on ``device`` (no copy for tensors already there)."""
        moved = {f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)
                 if isinstance(getattr(self, f.name), torch.Tensor)}
        return dataclasses.replace(self, **moved)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of "train", "validation" or "test"."""
        if name == "train":
            return self.train_x, self.train_y
        if name == "validation":
            return self.val_x, self.val_y
        if name == "test":
            return self.test_x, self.test_y
        raise ValueError(f"unknown split {name!r}; the splits are {', '.join(SPLITS)}")


def default_data_dir() -> Path:
    """``$AIQ_DATA_DIR``, else the user's cache folder (``$XDG_CACHE_HOME`` or ~/.cache)/aiq-search/data."""
    if os.environ.get("AIQ_DATA_DIR"):
        return Path(os.environ["AIQ_DATA_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "aiq-search" / "data"


def _torchvision_class(name: str) -> type:
    from torchvision import datasets

    return {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST, "kmnist": datasets.KMNIST}[name]


def _load_torchvision(name: str, data_dir: Path, download: bool) -> tuple[np.ndarray, ...]:
    """Train and test images (N, 1, 28, 28) uint8 and labels, from ``<data_dir>/<name>`` or ``data_dir``
    used as a torchvision root (``<root>/MNIST/raw/...``)."""
    cls = _torchvision_class(name)
    files = [Path(url).name.removesuffix(".gz") for url, _ in cls.resources]
    roots = [data_dir / name, data_dir]
    root = next((r for r in roots if all((r / cls.__name__ / "raw" / f).is_file() for f in files)), None)
    if root is None and not download:
        raise DataError(
            f"{name} files not found: put {', '.join(files)} in {roots[0] / cls.__name__ / 'raw'} "
            f"(or {roots[1] / cls.__name__ / 'raw'}), set AIQ_DATA_DIR or pass a data directory that holds "
            "them, or allow downloading them"
        )
    root = root or roots[0]
    try:
        parts = [cls(str(root), train=train, download=download) for train in (True, False)]
    except (OSError, RuntimeError) as exc:
        raise DataError(f"could not read or download {name} into {root}: {exc}") from exc
    return tuple(a for p in parts for a in (p.data.numpy()[:, None], p.targets.numpy()))


def _load_digits() -> tuple[np.ndarray, ...]:
    """scikit-learn's 8×8 digits (bundled, offline), values 0..16, with a fixed stratified test part."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32)[:, None]
    train_idx, test_idx = train_test_split(np.arange(len(x)), test_size=DIGITS_TEST_SIZE,
                                           random_state=DIGITS_TEST_SEED, stratify=bunch.target)
    return x[train_idx], bunch.target[train_idx], x[test_idx], bunch.target[test_idx]


def _check_args(val_size: float, label_noise: float) -> None:
    if isinstance(val_size, bool) or not isinstance(val_size, (int, float)):
        raise ValueError(f"val_size must be a fraction in (0, 1) or a row count >= 1, got {val_size!r}")
    if isinstance(val_size, float) and not 0.0 < val_size < 1.0:
        raise ValueError(f"val_size as a fraction must be in (0, 1), got {val_size!r}")
    if isinstance(val_size, int) and val_size < 1:
        raise ValueError(f"val_size as a row count must be >= 1, got {val_size!r}")
    if not (isinstance(label_noise, (int, float)) and 0.0 <= label_noise <= 1.0):
        raise ValueError(f"label_noise must be a fraction in [0, 1], got {label_noise!r}")


def load_dataset(name: str, *, data_dir: str | Path | None = None, download: bool = False,
                 val_size: float = 0.1, seed: int = 0, label_noise: float = 0.0) -> DataSplits:
    """Load data set ``name`` (one of `DATASETS`) as train / validation / test tensors on the CPU.

    ``val_size`` is a fraction of the training set or a row count; ``seed`` fixes the validation rows and
    the label randomization. torchvision data sets are read from ``data_dir``, else ``$AIQ_DATA_DIR``, else
    the user cache folder, and downloaded only when ``download`` is true. ``digits`` is offline and its
    test set is a fixed, seeded, stratified 20% of it (it has no official one).
    """
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    _check_args(val_size, label_noise)
    if name == "digits":
        x_all, y_all, x_test, y_test = _load_digits()
    else:
        root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
        x_all, y_all, x_test, y_test = _load_torchvision(name, root, download)
    num_classes = int(max(y_all.max(), y_test.max())) + 1

    try:
        train_idx, val_idx = train_test_split(np.arange(len(x_all)), test_size=val_size, random_state=seed,
                                              stratify=y_all)
    except ValueError as exc:
        raise ValueError(f"cannot hold out val_size={val_size!r} of {len(x_all)} {name} rows: {exc}") from exc
    train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)

    train_y = y_all[train_idx].astype(np.int64)
    rng = np.random.default_rng([seed, 1])  # its own stream: the noise does not shift with val_size
    randomized = np.sort(rng.choice(len(train_idx), size=round(label_noise * len(train_idx)), replace=False))
    train_y[randomized] = rng.integers(0, num_classes, size=len(randomized))

    train_x = torch.from_numpy(x_all[train_idx]).float()
    dims = (0, 2, 3)
    mean = train_x.double().mean(dim=dims)
    std = train_x.double().std(dim=dims).clamp_min(1e-12)

    def normalize(x: np.ndarray | torch.Tensor) -> torch.Tensor:
        return ((torch.as_tensor(x).float() - mean[:, None, None].float()) / std[:, None, None].float()).contiguous()

    return DataSplits(
        name=name,
        train_x=normalize(train_x),
        train_y=torch.from_numpy(train_y),
        val_x=normalize(x_all[val_idx]),
        val_y=torch.from_numpy(y_all[val_idx].astype(np.int64)),
        test_x=normalize(x_test),
        test_y=torch.from_numpy(y_test.astype(np.int64)),
        num_classes=num_classes,
        input_shape=tuple(int(d) for d in train_x.shape[1:]),
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
        randomized=torch.from_numpy(randomized.astype(np.int64)),
    )
