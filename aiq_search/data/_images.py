"""A folder of images, one subfolder per class (torchvision's ImageFolder layout), resized to one shape.

``path/<class>/*.png`` is split into train and a fixed, stratified test part; ``path/train/<class>/...``
with ``path/test/<class>/...`` keeps the given test set. Images are decoded once and cached as a tensor
file in ``path`` (``.aiq-search-cache-<H>x<W>-<color>.pt``), rebuilt when any image's name, size or
modification time changes, or when the file cannot be read.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from aiq_search.data._core import TEST_SIZE, RawData, split_test
from aiq_search.data._registry import DataPath, register_dataset
from aiq_search.errors import DataError

CACHE_VERSION = 1


class ImageFolderOptions(BaseModel):
    """``path``: the folder; ``image_size``: side or [height, width] every image is resized to; ``color``:
    "rgb" (3 channels) or "grayscale" (1); ``test_size``: the test fraction when there is no test/ folder;
    ``cache``: keep the decoded tensors in a file in the folder."""

    model_config = ConfigDict(extra="forbid", strict=True)

    path: DataPath
    image_size: list[int]
    color: Literal["rgb", "grayscale"] = "rgb"
    test_size: float = Field(TEST_SIZE, gt=0, lt=1)
    cache: bool = True

    @field_validator("image_size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> list[int]:
        size = [value, value] if isinstance(value, int) and not isinstance(value, bool) else value
        if not (isinstance(size, list) and len(size) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size)):
            raise ValueError(f"must be a side (an integer >= 1) or [height, width], got {value!r}")
        return size


def _folders(root: Path) -> tuple[Path, Path | None]:
    if not root.is_dir():
        raise DataError(f"image-folder: no folder {root}")
    if (root / "train").is_dir() and (root / "test").is_dir():
        return root / "train", root / "test"
    return root, None


def _scan(folder: Path, transform: Any) -> Any:
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(folder), transform=transform)
    except (FileNotFoundError, OSError) as exc:
        raise DataError(f"image-folder: {' '.join(str(exc).split())} (expected one subfolder of images per "
                        f"class in {folder})") from None


def _listing_key(parts: list[Any], size: list[int], color: str) -> str:
    """Changes whenever an image is added, removed, renamed, resized or touched, or the options change."""
    digest = hashlib.sha256(f"{CACHE_VERSION};{size};{color}".encode())
    for part in parts:
        digest.update(";".join(part.classes).encode())
        for path, label in part.samples:
            stat = os.stat(path)
            digest.update(f"\n{Path(path).relative_to(part.root)};{label};{stat.st_size};{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _decode(part: Any) -> tuple[torch.Tensor, torch.Tensor]:
    images = []
    for index, (path, _) in enumerate(part.samples):
        try:
            images.append(part[index][0])
        except OSError as exc:
            raise DataError(f"image-folder: cannot decode {path}: {' '.join(str(exc).split())}") from None
    return torch.stack(images), torch.tensor(part.targets, dtype=torch.int64)


def _read_cache(path: Path, key: str) -> dict[str, Any] | None:
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError):
        return None
    return cached if isinstance(cached, dict) and cached.get("key") == key else None


def _write_cache(path: Path, content: dict[str, Any]) -> None:
    """Atomically (workers may decode the same folder at once); a read-only folder only loses the cache."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(content, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        warnings.warn(f"image-folder: cannot cache decoded images in {path}: {exc}", stacklevel=3)


@register_dataset("image-folder", options=ImageFolderOptions)
def load_image_folder(*, path: str, image_size: list[int], color: str, test_size: float, cache: bool) -> RawData:
    """image-folder: class subfolders of images (PNG, JPEG, ...), resized, grayscale or RGB."""
    from torchvision import transforms

    root = Path(path)
    train_folder, test_folder = _folders(root)
    steps = [transforms.Grayscale(1)] if color == "grayscale" else []
    transform = transforms.Compose([*steps, transforms.Resize(tuple(image_size)), transforms.PILToTensor()])
    parts = [_scan(f, transform) for f in (train_folder, test_folder) if f is not None]
    if len(parts) == 2 and parts[0].classes != parts[1].classes:
        raise DataError(f"image-folder: {test_folder} has classes {', '.join(parts[1].classes)} but "
                        f"{train_folder} has {', '.join(parts[0].classes)}; they must be the same")
    cache_file = root / f".aiq-search-cache-{image_size[0]}x{image_size[1]}-{color}.pt"
    key = _listing_key(parts, image_size, color)
    cached = _read_cache(cache_file, key) if cache else None
    if cached is None:
        decoded = [_decode(part) for part in parts]
        cached = {"key": key, "x": [x for x, _ in decoded], "y": [y for _, y in decoded]}
        if cache:
            _write_cache(cache_file, cached)
    x, y = cached["x"][0].numpy(), cached["y"][0].numpy()
    if len(parts) == 2:
        test_x, test_y = cached["x"][1].numpy(), cached["y"][1].numpy()
    else:
        x, y, test_x, test_y = split_test(x, y, test_size, what=str(root))
    return RawData(x, y, test_x, test_y, value_range=(0.0, 255.0), num_classes=len(parts[0].classes),
                   source=str(root))

