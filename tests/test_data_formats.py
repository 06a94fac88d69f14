"""Each built-in format, on small files the tests write in that format: IDX (flat, gzipped or torchvision's
layout), CIFAR's pickled batches, image folders (PNG via PIL), .npz / .pt arrays; and their one-line errors."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aiq_search.data import load_dataset
from aiq_search.errors import DataError

RNG = np.random.default_rng(0)


def raw_rows(x: torch.Tensor, splits) -> torch.Tensor:
    """Undo the normalization: back to the data set's own pixel values."""
    return x * torch.tensor(splits.std)[:, None, None] + torch.tensor(splits.mean)[:, None, None]


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- IDX (mnist, fashion-mnist, kmnist)

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx(folder: Path, *, gz: bool, n_train: int = 60, n_test: int = 20) -> list[np.ndarray]:
    """Four IDX files of 9×7 images with balanced labels 0..9; returns the arrays written."""
    arrays = [RNG.integers(0, 256, (n_train, 9, 7), dtype=np.uint8), (np.arange(n_train) % 10).astype(np.uint8),
              RNG.integers(0, 256, (n_test, 9, 7), dtype=np.uint8), (np.arange(n_test) % 10).astype(np.uint8)]
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in zip(IDX_NAMES, arrays, strict=True):
        if gz:
            with gzip.open(folder / f"{name}.gz", "wb") as file:
                file.write(idx_bytes(array))
        else:
            (folder / name).write_bytes(idx_bytes(array))
    return arrays


def test_idx_from_a_flat_folder_of_gz_files(tmp_path: Path) -> None:
    """A distribution package's layout: data_dir is the folder of *-ubyte.gz files itself."""
    train_x, train_y, test_x, test_y = write_idx(tmp_path / "fashion", gz=True)
    splits = load_dataset("fashion-mnist", data_dir=tmp_path / "fashion", val_size=0.2)
    assert splits.input_shape == (1, 9, 7) and splits.num_classes == 10 and splits.value_range == (0.0, 255.0)
    assert splits.source == str(tmp_path / "fashion")
    assert (len(splits.train_y), len(splits.val_y), len(splits.test_y)) == (48, 12, 20)
    assert torch.equal(raw_rows(splits.test_x, splits).round().to(torch.uint8)[:, 0], torch.from_numpy(test_x))
    assert torch.equal(splits.test_y, torch.from_numpy(test_y).long())
    # the same data unzipped in torchvision's layout has the same fingerprint: it names data, not files
    for name, array in zip(IDX_NAMES, (train_x, train_y, test_x, test_y), strict=True):
        folder = tmp_path / "tv" / "fashion-mnist" / "FashionMNIST" / "raw"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(idx_bytes(array))
    torchvision_layout = load_dataset("fashion-mnist", data_dir=tmp_path / "tv", val_size=0.2)
    assert torchvision_layout.fingerprint == splits.fingerprint
    assert torchvision_layout.source == str(folder)


@pytest.mark.parametrize("layout", ["kmnist/KMNIST/raw", "KMNIST/raw", "kmnist", "."])
def test_idx_in_each_folder_looked_in(tmp_path: Path, layout: str) -> None:
    write_idx(tmp_path / layout, gz=layout == "kmnist")
    splits = load_dataset("kmnist", data_dir=tmp_path, val_size=0.2)
    assert splits.source == str((tmp_path / layout).resolve()) and len(splits.test_y) == 20


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "kmnist"])
def test_missing_idx_files_name_every_folder_looked_in(tmp_path: Path, name: str) -> None:
    folder = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "kmnist": "KMNIST"}[name]
    with pytest.raises(DataError) as caught:
        load_dataset(name, data_dir=tmp_path)
    looked = ", ".join(str(p) for p in (tmp_path / name / folder / "raw", tmp_path / folder / "raw",
                                        tmp_path / name, tmp_path))
    assert one_line(caught) == (
        f"{name}: no folder holds {', '.join(IDX_NAMES)} (each may end in .gz); looked in {looked}; set data_dir "
        "(or $AIQ_DATA_DIR) to the folder that holds them, or download = true")


def test_broken_idx_files_are_named(tmp_path: Path) -> None:
    write_idx(tmp_path, gz=True)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"^cannot read .*t10k-images-idx3-ubyte.gz: ") as caught:
        load_dataset("mnist", data_dir=tmp_path)
    one_line(caught)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((20, 9, 7), np.uint8))[:-5])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: its header declares shape \(20, 9, 7\) but it "
                                        r"holds 1255 bytes"):
        load_dataset("mnist", data_dir=tmp_path)


# --------------------------------------------------------------------------- CIFAR batches


def write_cifar(root: Path, *, hundred: bool = False, per_class: int = 3) -> dict[str, np.ndarray]:
    """CIFAR's own on-disk format: pickled dicts of uint8 (N, 3072) rows (R, G, B planes) and labels.
    Each channel gets its own offset, so per-channel statistics are visible."""
    classes = 100 if hundred else 10
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    label_key = "fine_labels" if hundred else "labels"
    files = (["train"], "test", "meta", "fine_label_names") if hundred else \
        ([f"data_batch_{i}" for i in range(1, 6)], "test_batch", "batches.meta", "label_names")
    offsets = np.array([0, 80, 160], np.uint8)[None, :, None]

    def batch(n: int) -> tuple[np.ndarray, list[int]]:
        x = (RNG.integers(0, 90, (n, 3, 1024), dtype=np.uint8) + offsets).reshape(n, 3072)
        return x, [i % classes for i in range(n)]

    written: dict[str, list] = {"x": [], "y": []}
    for name in files[0]:
        x, y = batch(classes * per_class * 2 // len(files[0]))
        written["x"].append(x)
        written["y"] += y
        with (folder / name).open("wb") as file:
            pickle.dump({"batch_label": name, label_key: y, "data": x, "filenames": []}, file, protocol=2)
    test_x, test_y = batch(classes * 2)
    with (folder / files[1]).open("wb") as file:
        pickle.dump({label_key: test_y, "data": test_x}, file)
    with (folder / files[2]).open("wb") as file:
        pickle.dump({files[3]: [f"class{i}" for i in range(classes)]}, file)
    return {"train_x": np.concatenate(written["x"]), "train_y": np.array(written["y"]), "test_x": test_x,
            "test_y": np.array(test_y)}


def test_cifar10_from_its_own_batches(tmp_path: Path) -> None:
    written = write_cifar(tmp_path)
    splits = load_dataset("cifar10", data_dir=tmp_path, val_size=0.2)
    assert splits.input_shape == (3, 32, 32) and splits.num_classes == 10 and splits.value_range == (0.0, 255.0)
    assert (len(splits.train_y) + len(splits.val_y), len(splits.test_y)) == (60, 20)
    assert splits.source == str(tmp_path / "cifar-10-batches-py")
    # channel-wise normalization from the training split: each channel has its own mean, about its offset
    assert splits.mean == pytest.approx((44.5, 124.5, 204.5), abs=3)  # uniform 0..89 plus 0, 80, 160
    assert torch.allclose(splits.train_x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    test_pixels = raw_rows(splits.test_x, splits).round().to(torch.uint8).reshape(20, 3072)
    assert torch.equal(test_pixels, torch.from_numpy(written["test_x"]))
    assert torch.equal(splits.test_y, torch.from_numpy(written["test_y"]))


def test_cifar100_fine_labels_and_the_other_folders(tmp_path: Path) -> None:
    write_cifar(tmp_path / "cifar100", hundred=True)
    splits = load_dataset("cifar100", data_dir=tmp_path, val_size=100)
    assert splits.num_classes == 100 and len(splits.val_y) == 100 and len(splits.test_y) == 200
    assert splits.source == str(tmp_path / "cifar100" / "cifar-100-python")
    # data_dir may also be the batches folder itself
    direct = load_dataset("cifar100", data_dir=tmp_path / "cifar100" / "cifar-100-python", val_size=100)
    assert direct.fingerprint == splits.fingerprint


def test_cifar_errors_name_the_folders_and_files(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        load_dataset("cifar10", data_dir=tmp_path)
    assert one_line(caught).startswith(
        "cifar10: no folder holds data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch; "
        f"looked in {tmp_path / 'cifar10' / 'cifar-10-batches-py'}, {tmp_path / 'cifar-10-batches-py'}, {tmp_path};")
    write_cifar(tmp_path)
    with (tmp_path / "cifar-10-batches-py" / "test_batch").open("wb") as file:
        pickle.dump({"data": np.zeros((4, 100), np.uint8), "labels": [0] * 4}, file)
    with pytest.raises(DataError, match=r"test_batch: 'data' must be uint8 \(N, 3072\) with N labels"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_a_cifar_batch_cannot_run_code(tmp_path: Path) -> None:
    """Batches are pickles: only numpy's array classes may be loaded from them."""
    write_cifar(tmp_path)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    with (tmp_path / "cifar-10-batches-py" / "data_batch_3").open("wb") as file:
        pickle.dump({"data": Payload(), "labels": []}, file)
    with pytest.raises(DataError, match=r"data_batch_3 is not a readable CIFAR batch: it refers to \w+\.system"):
        load_dataset("cifar10", data_dir=tmp_path)
    assert not marker.exists()


# --------------------------------------------------------------------------- image folders


def write_images(folder: Path, counts: dict[str, int], *, start: int = 0) -> None:
    """PNG files of several sizes and modes, one subfolder per class; class k is brighter than class k-1."""
    for k, (name, count) in enumerate(counts.items()):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(start, start + count):
            size = (10 + i % 5, 12 + i % 3)
            pixels = RNG.integers(60 * k, 60 * k + 40, (size[1], size[0], 3), dtype=np.uint8)
            image = Image.fromarray(pixels, "RGB")
            (image.convert("L") if i % 2 else image).save(folder / name / f"{i:03d}.png")


def test_image_folder_with_a_test_folder(tmp_path: Path) -> None:
    write_images(tmp_path / "pics" / "train", {"a": 12, "b": 12, "c": 12})
    write_images(tmp_path / "pics" / "test", {"a": 3, "b": 4, "c": 5})
    splits = load_dataset("image-folder", data_dir=tmp_path, path="pics", image_size=[6, 8], color="rgb",
                          val_size=6)
    assert splits.input_shape == (3, 6, 8) and splits.num_classes == 3 and splits.value_range == (0.0, 255.0)
    assert torch.equal(torch.bincount(splits.test_y), torch.tensor([3, 4, 5]))
    assert (len(splits.train_y), len(splits.val_y)) == (30, 6)
    # relative to data_dir, recorded as an absolute path that loads the same data again
    assert splits.options["path"] == str(tmp_path / "pics") and splits.source == str(tmp_path / "pics")
    again = load_dataset("image-folder", **splits.options, val_size=6)
    assert again.fingerprint == splits.fingerprint
    # classes are told apart by brightness: the decoded pixels are the written ones, resized
    brightness = raw_rows(splits.test_x, splits).mean(dim=(1, 2, 3))
    assert all(brightness[splits.test_y == k].min() > 60 * k for k in range(3))


def test_image_folder_cache_is_rebuilt_when_the_folder_changes(tmp_path: Path) -> None:
    write_images(tmp_path / "pics", {"cat": 10, "dog": 10})
    first = load_dataset("image-folder", path=str(tmp_path / "pics"), image_size=5, color="grayscale")
    assert first.input_shape == (1, 5, 5) and len(first.test_y) == 4  # a fixed, stratified 20%
    cache = tmp_path / "pics" / ".aiq-search-cache-5x5-grayscale.pt"
    written = cache.stat().st_mtime_ns
    again = load_dataset("image-folder", path=str(tmp_path / "pics"), image_size=5, color="grayscale")
    assert cache.stat().st_mtime_ns == written and again.fingerprint == first.fingerprint  # read, not rebuilt
    assert torch.equal(again.test_x, first.test_x)
    write_images(tmp_path / "pics", {"cat": 5, "dog": 5}, start=10)
    grown = load_dataset("image-folder", path=str(tmp_path / "pics"), image_size=5, color="grayscale")
    assert len(grown.train_y) + len(grown.val_y) + len(grown.test_y) == 30 and grown.fingerprint != first.fingerprint
    no_cache = load_dataset("image-folder", path=str(tmp_path / "pics"), image_size=7, color="grayscale",
                            cache=False)
    assert no_cache.input_shape == (1, 7, 7) and not (tmp_path / "pics" / ".aiq-search-cache-7x7-grayscale.pt").exists()


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"^image-folder: no folder {tmp_path / 'nothing'}$"):
        load_dataset("image-folder", path=str(tmp_path / "nothing"), image_size=8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"^image-folder: .*expected one subfolder of images per class in") as caught:
        load_dataset("image-folder", path=str(tmp_path / "empty"), image_size=8)
    one_line(caught)
    write_images(tmp_path / "split" / "train", {"a": 6, "b": 6})
    write_images(tmp_path / "split" / "test", {"a": 2, "c": 2})
    with pytest.raises(DataError, match="has classes a, c but .* has a, b; they must be the same"):
        load_dataset("image-folder", path=str(tmp_path / "split"), image_size=8)
    write_images(tmp_path / "broken", {"a": 6, "b": 6})
    (tmp_path / "broken" / "b" / "003.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"^image-folder: cannot decode .*broken/b/003.png: "):
        load_dataset("image-folder", path=str(tmp_path / "broken"), image_size=8)
    with pytest.raises(DataError, match=r"^data set 'image-folder': option 'image_size': required, but missing$"):
        load_dataset("image-folder", path=str(tmp_path / "broken"))


# --------------------------------------------------------------------------- arrays (.npz, .pt)


def test_arrays_npz_with_test_arrays(tmp_path: Path) -> None:
    x = RNG.integers(0, 256, (50, 2, 4, 4), dtype=np.uint8)
    y = np.arange(50) % 5
    np.savez(tmp_path / "data.npz", x_train=x, y_train=y, x_test=x[:10], y_test=y[:10])
    splits = load_dataset("arrays", data_dir=tmp_path, path="data.npz")
    assert splits.input_shape == (2, 4, 4) and splits.num_classes == 5 and len(splits.test_y) == 10
    assert splits.options == {"path": str(tmp_path / "data.npz"), "test_size": 0.2}
    assert torch.equal(raw_rows(splits.test_x, splits).round().to(torch.uint8), torch.from_numpy(x[:10]))


def test_arrays_pt_of_one_channel_images_without_test_arrays(tmp_path: Path) -> None:
    x = torch.rand(40, 6, 6) * 3 - 1
    torch.save({"x_train": x, "y_train": torch.arange(40) % 2}, tmp_path / "data.pt")
    splits = load_dataset("arrays", path=str(tmp_path / "data.pt"), test_size=0.25)
    assert splits.input_shape == (1, 6, 6) and len(splits.test_y) == 10
    assert splits.value_range == (float(x.min()), float(x.max()))


def test_arrays_of_feature_rows_are_standardized_per_feature(tmp_path: Path) -> None:
    rows = RNG.normal(size=(100, 4)) * np.array([1.0, 10.0, 100.0, 1000.0])
    np.savez(tmp_path / "table.npz", x_train=rows, y_train=np.arange(100) % 2)
    splits = load_dataset("arrays", path=str(tmp_path / "table.npz"))
    assert splits.input_shape == (4, 1, 1)
    assert [round(np.log10(s)) for s in splits.std] == [0, 1, 2, 3]


@pytest.mark.parametrize(("content", "message"), [
    ({"x": np.zeros((4, 2))}, "must hold x_train, y_train and optionally both x_test and y_test; it holds x"),
    ({"x_train": np.zeros((4, 2)), "y_train": np.zeros(4, int), "x_test": np.zeros((2, 2))}, "it holds x_test"),
    ({"x_train": np.zeros((4, 2)), "y_train": np.zeros(3, int)}, "x_train has 4 rows but y_train 3"),
])
def test_arrays_errors(tmp_path: Path, content: dict, message: str) -> None:
    np.savez(tmp_path / "bad.npz", **content)
    with pytest.raises(DataError, match=message) as caught:
        load_dataset("arrays", path=str(tmp_path / "bad.npz"))
    assert one_line(caught).startswith(f"arrays: {tmp_path / 'bad.npz'}")


def test_arrays_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"^arrays: no file {tmp_path / 'missing.npz'}$"):
        load_dataset("arrays", path=str(tmp_path / "missing.npz"))
    (tmp_path / "data.csv").write_text("1,2\n")
    with pytest.raises(DataError, match=r"must end in .npz or .pt$"):
        load_dataset("arrays", path=str(tmp_path / "data.csv"))
    (tmp_path / "broken.npz").write_bytes(b"PK not really")
    with pytest.raises(DataError, match=r"^arrays: cannot read .*broken.npz: "):
        load_dataset("arrays", path=str(tmp_path / "broken.npz"))
