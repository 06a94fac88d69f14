"""The one entry point, `load_dataset`, and the steps every data set shares, whoever loaded it.

The validation part is held out of the data set's training pool (stratified, seeded by ``seed``); the test
part is the data set's own test set (or a fixed, stratified hold-out, see `core.split_test`). Inputs are
float32 (N, C, H, W), normalized per channel with the training split's statistics (never the validation or
test data); labels are int64.

For the memorization experiment, ``label_noise=f`` replaces the labels of exactly ``round(f * n_train)``
seeded, randomly chosen training rows by uniformly random classes (a new label may equal the old one by
chance, with probability 1/classes). Validation and test labels are never touched.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from aiq_search.data._core import DataSplits, RawData, check_fits, fingerprint, given_data_dir, split_test
from aiq_search.data._registry import get_dataset
from aiq_search.errors import DataError

CHUNK_ROWS = 4096  # statistics and normalization go this many rows at a time: no float64 copy of the data


def load_dataset(name: str, *, data_dir: str | Path | None = None, download: bool = False,
                 val_size: float = 0.1, seed: int = 0, label_noise: float = 0.0, normalize: bool = True,
                 **options: Any) -> DataSplits:
    """Load data set ``name`` (registered, an entry point, or ``"package.module:function"``) as train /
    validation / test tensors on the CPU.

    ``val_size`` is a fraction of the training pool or a row count; ``seed`` fixes the validation rows and
    the label randomization. Files are looked for under ``data_dir``, else ``$AIQ_DATA_DIR``, else the user
    cache folder (`default_data_dir`), and downloaded only when ``download`` is true (where the data set
    can). ``options`` are the data set's own (e.g. ``path``, ``image_size``), validated by it.
    ``normalize=False`` keeps the inputs in the data set's raw units (what an exported model, which
    normalizes inside, is given); ``mean`` and ``std`` are the training split's either way.
    """
    _check_args(val_size, label_noise)
    dataset = get_dataset(name)
    given = given_data_dir(data_dir)
    checked = dataset.check_options(options, data_dir=given, resolve=True)
    raw = dataset.load(checked, data_dir=given, download=download)
    return make_splits(name, raw, options=checked, val_size=val_size, seed=seed, label_noise=label_noise,
                       normalize=normalize)


def _check_args(val_size: float, label_noise: float) -> None:
    if isinstance(val_size, bool) or not isinstance(val_size, (int, float)):
        raise ValueError(f"val_size must be a fraction in (0, 1) or a row count >= 1, got {val_size!r}")
    if isinstance(val_size, float) and not 0.0 < val_size < 1.0:
        raise ValueError(f"val_size as a fraction must be in (0, 1), got {val_size!r}")
    if isinstance(val_size, int) and val_size < 1:
        raise ValueError(f"val_size as a row count must be >= 1, got {val_size!r}")
    if not (isinstance(label_noise, (int, float)) and 0.0 <= label_noise <= 1.0):
        raise ValueError(f"label_noise must be a fraction in [0, 1], got {label_noise!r}")


def make_splits(name: str, raw: RawData, *, options: Mapping[str, Any] | None = None, val_size: float = 0.1,
                seed: int = 0, label_noise: float = 0.0, normalize: bool = True) -> DataSplits:
    """The common steps on a loader's `RawData`: check it, hold out test and validation rows, randomize
    labels, normalize; see the module docstring."""
    _check_args(val_size, label_noise)
    x_pool, y_pool = _inputs(raw.train_x, name, "train_x"), _labels(raw.train_y, name, "train_y")
    _same_rows(x_pool, y_pool, name, "train")
    if (raw.test_x is None) != (raw.test_y is None):
        raise DataError(f"data set {name!r}: its loader gave only one of test_x and test_y")
    if raw.test_x is None:
        largest = int(y_pool.max())
    else:
        x_test, y_test = _inputs(raw.test_x, name, "test_x"), _labels(raw.test_y, name, "test_y")
        _same_rows(x_test, y_test, name, "test")
        if x_test.shape[1:] != x_pool.shape[1:]:
            raise DataError(f"data set {name!r}: test inputs are {x_test.shape[1:]} but training inputs "
                            f"{x_pool.shape[1:]}")
        largest = int(max(y_pool.max(), y_test.max()))
    num_classes = raw.num_classes or largest + 1
    if largest >= num_classes:
        raise DataError(f"data set {name!r}: a label is >= its {num_classes} classes")
    present = np.unique(y_pool)
    if len(present) < 2:
        raise DataError(f"data set {name!r}: its training labels hold only class {int(present[0])}; a classifier "
                        "needs at least 2 classes")
    if raw.test_x is None:
        x_pool, y_pool, x_test, y_test = split_test(x_pool, y_pool, what=f"data set {name!r}")
    value_range = raw.value_range or _observed_range(x_pool, x_test)
    digest = fingerprint(x_pool, y_pool, x_test, y_test)

    try:
        train_idx, val_idx = train_test_split(np.arange(len(x_pool)), test_size=val_size, random_state=seed,
                                              stratify=y_pool)
    except ValueError as exc:
        raise DataError(f"cannot hold out val_size={val_size!r} of {len(x_pool)} {name} rows: {exc}") from None
    train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)

    train_y = y_pool[train_idx].copy()
    rng = np.random.default_rng([seed, 1])  # its own stream: the noise does not shift with val_size
    randomized = np.sort(rng.choice(len(train_idx), size=round(label_noise * len(train_idx)), replace=False))
    train_y[randomized] = rng.integers(0, num_classes, size=len(randomized))

    check_fits(4 * (x_pool.size + x_test.size), "cpu", what=f"data set {name!r} as float32")
    train_x = x_pool[train_idx]
    mean, std = _channel_stats(train_x)
    shift, scale = (mean, std) if normalize else (torch.zeros_like(mean), torch.ones_like(std))
    _, channels, height, width = x_pool.shape  # `_inputs` made it (N, C, H, W)
    return DataSplits(
        name=name,
        train_x=_normalize(train_x, shift, scale),
        train_y=torch.from_numpy(train_y),
        val_x=_normalize(x_pool[val_idx], shift, scale),
        val_y=torch.from_numpy(y_pool[val_idx]),
        test_x=_normalize(x_test, shift, scale),
        test_y=torch.from_numpy(y_test),
        num_classes=num_classes,
        input_shape=(int(channels), int(height), int(width)),
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
        randomized=torch.from_numpy(randomized.astype(np.int64)),
        fingerprint=digest,
        value_range=(float(value_range[0]), float(value_range[1])),
        source=raw.source,
        options=dict(options or {}),
    )


def _numpy(array: Any, name: str, what: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    if isinstance(array, np.ndarray):
        return array
    raise DataError(f"data set {name!r}: {what} is a {type(array).__name__}, not a numpy array or tensor")


def _inputs(array: Any, name: str, what: str) -> np.ndarray:
    """(N, C, H, W); (N, H, W) gets one channel, (N, F) becomes F channels of 1×1."""
    x = _numpy(array, name, what)
    if x.dtype == np.bool_:
        x = x.astype(np.uint8)
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise DataError(f"data set {name!r}: {what} has dtype {x.dtype}; inputs must be integers or floats")
    if x.ndim == 2:
        x = x[:, :, None, None]
    elif x.ndim == 3:
        x = x[:, None]
    elif x.ndim != 4:
        raise DataError(f"data set {name!r}: {what} has shape {x.shape}; inputs are (N, C, H, W), (N, H, W) "
                        "or (N, features)")
    if len(x) == 0 or 0 in x.shape:
        raise DataError(f"data set {name!r}: {what} is empty (shape {x.shape})")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise DataError(f"data set {name!r}: {what} holds NaN or infinite values")
    return x


def _labels(array: Any, name: str, what: str) -> np.ndarray:
    y = _numpy(array, name, what)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"data set {name!r}: {what} must be one integer class index per row, got dtype "
                        f"{y.dtype} and shape {y.shape}")
    if len(y) and y.min() < 0:
        raise DataError(f"data set {name!r}: {what} holds negative labels; classes are 0..K-1")
    return y.astype(np.int64)


def _same_rows(x: np.ndarray, y: np.ndarray, name: str, split: str) -> None:
    if len(x) != len(y):
        raise DataError(f"data set {name!r}: {len(x)} {split} inputs but {len(y)} labels")


def _observed_range(*arrays: np.ndarray) -> tuple[float, float]:
    if all(a.dtype == np.uint8 for a in arrays):
        return 0.0, 255.0
    return min(float(a.min()) for a in arrays), max(float(a.max()) for a in arrays)


def _channel_stats(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (unbiased) std in float64, two passes over row chunks."""
    count = x.shape[0] * x.shape[2] * x.shape[3]
    def chunks() -> Iterator[torch.Tensor]:
        for i in range(0, len(x), CHUNK_ROWS):
            yield torch.from_numpy(np.asarray(x[i:i + CHUNK_ROWS], dtype=np.float64))

    mean = sum(c.sum(dim=(0, 2, 3)) for c in chunks()) / count
    centered = sum(((c - mean[:, None, None]) ** 2).sum(dim=(0, 2, 3)) for c in chunks())
    std = (centered / max(count - 1, 1)).sqrt().clamp_min(1e-12)
    return mean, std


def _normalize(x: np.ndarray, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    out = torch.empty(x.shape, dtype=torch.float32)
    m, s = mean[:, None, None].float(), std[:, None, None].float()
    for i in range(0, len(x), CHUNK_ROWS):
        out[i:i + CHUNK_ROWS] = (torch.from_numpy(np.array(x[i:i + CHUNK_ROWS], dtype=np.float32)) - m) / s
    return out
