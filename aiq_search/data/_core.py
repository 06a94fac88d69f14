"""What a data set's loader returns (`RawData`) and what training gets (`DataSplits`), with the checks that
belong to the data rather than to one format: where data lives, whether it fits on a device, and whether
it is the data a study recorded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aiq_search.errors import DataError

SPLITS = ("train", "validation", "test")

Array = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class RawData:
    """A data set as its loader reads it, before the common code splits and normalizes it.

    ``*_x``: numpy arrays or tensors of any real dtype, shaped (N, C, H, W), (N, H, W) (one channel) or
    (N, F) (F features, each its own channel: (N, F, 1, 1)). ``*_y``: integer class indices 0..K-1.
    Without ``test_x``/``test_y`` a fixed, stratified 20% of the rows is held out as the test split.
    ``value_range``: the range of the raw inputs (default: (0, 255) for uint8, else the observed range).
    ``num_classes``: default the largest label + 1. ``source``: the folder or file read, for messages and
    the study's record.
    """

    train_x: Array
    train_y: Array
    test_x: Array | None = None
    test_y: Array | None = None
    value_range: tuple[float, float] | None = None
    num_classes: int | None = None
    source: str = ""


@dataclass(frozen=True)
class DataSplits:
    """The three splits of one data set as tensors, plus what a model needs to know about them.

    ``randomized`` holds the (sorted) indices of the training rows whose labels ``label_noise`` replaced;
    ``mean`` and ``std`` are the per-channel statistics of the training split used to normalize all three,
    in the units of ``value_range`` (the raw inputs' range, e.g. (0, 255) for MNIST, (0, 16) for digits).
    ``fingerprint`` is a sha256 of the data set's raw arrays (training pool and test split, before the
    validation split and label noise): equal fingerprints mean the same data, whatever files held it.
    ``source`` is the folder or file read; ``options`` are the data set's options as validated, with
    paths made absolute, so ``load_dataset(name, **options, ...)`` loads the same data again.
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
    fingerprint: str
    value_range: tuple[float, float]
    source: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), torch.Tensor)}

    def to(self, device: torch.device | str) -> DataSplits:
        """The same splits with every tensor on ``device`` (no copy for tensors already there).

        The whole data set lives on the training device (no streaming): a `DataError` says so, with its
        size and the free memory, when it does not fit."""
        device = torch.device(device)
        tensors = self._tensors()
        moving = sum(t.nbytes for t in tensors.values() if not _same_device(t.device, device))
        if moving:
            check_fits(moving, device, what=f"data set {self.name!r}")
        # Any: `replace` checks each keyword against its own field's type, and these are the tensor fields
        moved: dict[str, Any] = {k: t.to(device) for k, t in tensors.items()}
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


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type == "cuda":
        return (a.index or 0) == (b.index if b.index is not None else torch.cuda.current_device())
    return True


def free_memory(device: torch.device | str) -> int | None:
    """Bytes free on ``device``: CUDA's free memory, the system's available memory for the CPU (Linux's
    MemAvailable, else free physical pages), None where nobody says (MPS)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def check_fits(nbytes: int, device: torch.device | str, *, what: str = "data set") -> None:
    """Refuse, in one line, ``nbytes`` of data that ``device`` has no room for."""
    free = free_memory(device)
    if free is not None and nbytes > free:
        raise DataError(f"{what} needs {_size(nbytes)} on {device} but only {_size(free)} is free there; "
                        "aiq-search keeps whole data sets in device memory (no streaming): use a smaller data "
                        "set or image_size, or a device with more memory")


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")


def fingerprint(*arrays: np.ndarray) -> str:
    """sha256 over each array's dtype, shape and bytes: the same data gives the same digest, whichever
    files, layout or compression it came from."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(array.data.cast("B"))  # the array's buffer, as memoryview(array) gives it
    return digest.hexdigest()


def check_fingerprint(recorded: str, splits: DataSplits) -> None:
    """Refuse data that is not what a study recorded, in one line naming both fingerprints."""
    if recorded != splits.fingerprint:
        where = f" read from {splits.source}" if splits.source else ""
        raise DataError(f"data set {splits.name!r}{where} has fingerprint {splits.fingerprint[:16]}… but the "
                        f"study recorded {recorded[:16]}…: these are not the data the study used")


def default_data_dir() -> Path:
    """``$AIQ_DATA_DIR``, else the user's cache folder (``$XDG_CACHE_HOME`` or ~/.cache)/aiq-search/data."""
    if os.environ.get("AIQ_DATA_DIR"):
        return Path(os.environ["AIQ_DATA_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "aiq-search" / "data"


def given_data_dir(data_dir: str | Path | None) -> Path | None:
    """The data folder the user named (the argument, else ``$AIQ_DATA_DIR``), or None."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get("AIQ_DATA_DIR"):
        return Path(os.environ["AIQ_DATA_DIR"]).expanduser()
    return None


def resolve_path(path: str | Path, data_dir: Path | None) -> Path:
    """An option's file or folder: absolute as given, else under ``data_dir`` when one is named, else
    under the working directory."""
    path = Path(path).expanduser()
    return (path if path.is_absolute() else (data_dir or Path.cwd()) / path).resolve()


# A data set without its own test split has this fraction held out once, with this seed, whatever the
# study's seed: every trial of every study is tested on the same rows.
TEST_SIZE = 0.2
TEST_SEED = 0


def split_test(x: np.ndarray, y: np.ndarray, test_size: float = TEST_SIZE,
               what: str = "data set") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(train_x, train_y, test_x, test_y)``: a fixed, stratified ``test_size`` of the rows as test set."""
    from sklearn.model_selection import train_test_split

    try:
        train, test = train_test_split(np.arange(len(x)), test_size=test_size, random_state=TEST_SEED,
                                       stratify=y)
    except ValueError as exc:
        raise DataError(f"cannot hold out a test split of {test_size!r} from {len(x)} rows of {what}: "
                        f"{exc}") from None
    return x[train], y[train], x[test], y[test]
