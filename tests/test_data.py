"""The steps common to every data set (on digits): seeded, disjoint splits, normalization with training
statistics, exact label randomization, fingerprint, the memory check; and the real MNIST."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from aiq_search.data import (
    TEST_SIZE,
    RawData,
    check_fingerprint,
    check_fits,
    default_data_dir,
    list_datasets,
    load_dataset,
    make_splits,
)
from aiq_search.errors import DataError


def raw_rows(x: torch.Tensor, splits) -> torch.Tensor:
    """Undo the normalization: back to the data set's own pixel values."""
    mean = torch.tensor(splits.mean)[:, None, None]
    std = torch.tensor(splits.std)[:, None, None]
    return x * std + mean


def sorted_rows(x: torch.Tensor) -> np.ndarray:
    """Rows as integers in lexicographic order: equal arrays mean the same multiset of images."""
    rows = np.round(x.reshape(len(x), -1).numpy()).astype(np.int64)
    return rows[np.lexsort(rows.T[::-1])]


def test_digits_splits_partition_the_data_set(digits) -> None:
    bunch = load_digits()
    total = len(bunch.target)
    n_test = len(digits.test_y)
    assert n_test == pytest.approx(TEST_SIZE * total, abs=1)
    assert len(digits.val_y) == pytest.approx(0.1 * (total - n_test), abs=1)
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    assert digits.train_x.dtype == torch.float32 and digits.train_y.dtype == torch.int64
    # every image lands in exactly one split
    parts = raw_rows(torch.cat([digits.train_x, digits.val_x, digits.test_x]), digits)
    assert np.array_equal(sorted_rows(parts), sorted_rows(torch.from_numpy(bunch.images)))
    labels = torch.cat([digits.train_y, digits.val_y, digits.test_y])
    assert torch.equal(torch.bincount(labels), torch.bincount(torch.from_numpy(bunch.target)))


def test_digits_test_part_is_stratified_and_fixed_across_seeds(digits) -> None:
    other = load_dataset("digits", seed=5, val_size=0.3)
    assert torch.allclose(raw_rows(other.test_x, other), raw_rows(digits.test_x, digits), atol=1e-4)
    assert torch.equal(other.test_y, digits.test_y)
    counts = torch.bincount(digits.test_y, minlength=10).float()
    assert counts.min() >= 0.9 * counts.mean() and counts.max() <= 1.1 * counts.mean()


def test_validation_is_seeded(digits) -> None:
    again = load_dataset("digits")
    assert torch.equal(again.val_x, digits.val_x) and torch.equal(again.train_y, digits.train_y)
    other = load_dataset("digits", seed=1)
    assert not torch.equal(other.val_x, digits.val_x)


def test_val_size_as_a_count() -> None:
    splits = load_dataset("digits", val_size=100)
    assert len(splits.val_y) == 100


def test_normalized_with_training_statistics(digits) -> None:
    assert float(digits.train_x.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(digits.train_x.std()) == pytest.approx(1.0, abs=1e-3)
    # the statistics are those of the raw training rows, and the other splits use the same ones
    raw_train = raw_rows(digits.train_x, digits)
    assert float(raw_train.mean()) == pytest.approx(digits.mean[0], abs=1e-4)
    for x in (digits.val_x, digits.test_x):
        raw = raw_rows(x, digits)
        assert torch.allclose(raw, raw.round(), atol=1e-4)  # digits pixels are integers 0..16
        assert float(raw.min()) > -1e-4 and float(raw.max()) < 16 + 1e-4


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.75, 1.0])
def test_label_noise_is_exact_and_touches_training_labels_only(digits, fraction: float) -> None:
    noisy = load_dataset("digits", label_noise=fraction)
    n = len(digits.train_y)
    assert len(noisy.randomized) == round(fraction * n)
    assert len(torch.unique(noisy.randomized)) == len(noisy.randomized)
    kept = torch.ones(n, dtype=torch.bool)
    kept[noisy.randomized] = False
    assert torch.equal(noisy.train_y[kept], digits.train_y[kept])
    assert torch.equal(noisy.train_x, digits.train_x)
    assert torch.equal(noisy.val_y, digits.val_y) and torch.equal(noisy.test_y, digits.test_y)
    assert torch.equal(noisy.val_x, digits.val_x) and torch.equal(noisy.test_x, digits.test_x)
    if fraction == 1.0:
        # uniformly random classes: about 1/10 keep their label by chance, and every class is drawn
        same = float((noisy.train_y == digits.train_y).float().mean())
        assert 0.06 < same < 0.14
        counts = torch.bincount(noisy.train_y, minlength=10).float()
        assert counts.min() > 0.7 * counts.mean()


def test_label_noise_is_seeded() -> None:
    a = load_dataset("digits", label_noise=0.5, seed=3)
    b = load_dataset("digits", label_noise=0.5, seed=3)
    c = load_dataset("digits", label_noise=0.5, seed=4)
    assert torch.equal(a.train_y, b.train_y) and torch.equal(a.randomized, b.randomized)
    assert not torch.equal(a.randomized, c.randomized)


def test_split_and_to(digits) -> None:
    assert digits.split("validation") == (digits.val_x, digits.val_y)
    assert digits.split("train")[1] is digits.train_y and digits.split("test")[0] is digits.test_x
    with pytest.raises(ValueError, match="unknown split 'val'"):
        digits.split("val")
    moved = digits.to("cpu")
    assert moved.train_x is digits.train_x and moved.name == "digits"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"val_size": 0.0}, r"val_size as a fraction must be in \(0, 1\)"),
     ({"val_size": 1.5}, r"val_size as a fraction must be in \(0, 1\)"),
     ({"val_size": 0}, "val_size as a row count must be >= 1"),
     ({"val_size": "10%"}, "val_size must be a fraction"),
     ({"label_noise": 1.2}, r"label_noise must be a fraction in \[0, 1\]")],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_dataset("digits", **kwargs)


def test_val_size_larger_than_the_data_set() -> None:
    with pytest.raises(DataError, match=r"^cannot hold out val_size=2000 of 1437 digits rows: "):
        load_dataset("digits", val_size=2000)


def test_unknown_name() -> None:
    with pytest.raises(DataError) as caught:
        load_dataset("cifar")
    assert str(caught.value) == (
        "unknown data set 'cifar'; known: mnist, fashion-mnist, kmnist, cifar10, cifar100, digits, image-folder, "
        "arrays; or your own as 'package.module:function' or an entry point in group 'aiq_search.datasets'")
    assert list_datasets()[:8] == ["mnist", "fashion-mnist", "kmnist", "cifar10", "cifar100", "digits",
                                   "image-folder", "arrays"]


def test_data_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIQ_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    with pytest.raises(DataError, match=str(tmp_path / "mnist" / "MNIST" / "raw")):
        load_dataset("mnist")
    monkeypatch.delenv("AIQ_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_data_dir() == tmp_path / "cache" / "aiq-search" / "data"


def test_fingerprint_names_the_data_not_the_split(digits) -> None:
    assert len(digits.fingerprint) == 64 and digits.value_range == (0.0, 16.0)
    assert digits.source.startswith("scikit-learn")
    other = load_dataset("digits", seed=7, val_size=0.3, label_noise=0.5)
    assert other.fingerprint == digits.fingerprint  # same rows, however the study splits or randomizes them
    check_fingerprint(digits.fingerprint, other)
    bunch = load_digits()
    changed = bunch.images.copy()
    changed[0, 0, 0] += 1  # one pixel differs
    mine = make_splits("mine", RawData(changed, bunch.target))
    assert mine.fingerprint != make_splits("mine", RawData(bunch.images, bunch.target)).fingerprint
    with pytest.raises(DataError) as caught:
        check_fingerprint(digits.fingerprint, mine)
    message = str(caught.value)
    assert mine.fingerprint[:16] in message and digits.fingerprint[:16] in message and "\n" not in message


def test_a_data_set_that_does_not_fit_is_refused_in_one_line(digits) -> None:
    with pytest.raises(DataError, match=r"^data set 'digits' needs 8192.0 GiB on cpu but only .* is free there; "
                                        r"aiq-search keeps whole data sets in device memory \(no streaming\)"):
        check_fits(8192 * 1024**3, "cpu", what="data set 'digits'")
    check_fits(digits.train_x.nbytes, "cpu")  # a few kB fit
    assert digits.to("cpu").train_x is digits.train_x


def test_loaders_may_give_other_shapes_and_no_test_split() -> None:
    """(N, H, W) gets one channel; (N, F) becomes F channels of 1×1, each standardized on its own;
    without a test split a fixed stratified 20% is held out."""
    rng = np.random.default_rng(0)
    y = np.arange(200) % 4
    images = make_splits("images", RawData(rng.integers(0, 255, (200, 6, 5), dtype=np.uint8), y))
    assert images.input_shape == (1, 6, 5) and images.value_range == (0.0, 255.0)
    assert (len(images.test_y), images.num_classes) == (40, 4)
    assert torch.equal(torch.bincount(images.test_y), torch.tensor([10, 10, 10, 10]))
    rows = rng.normal(size=(200, 3)) * np.array([1.0, 100.0, 0.01]) + np.array([5.0, -50.0, 0.0])
    table = make_splits("table", RawData(torch.from_numpy(rows), torch.from_numpy(y)))
    assert table.input_shape == (3, 1, 1)
    assert table.mean[1] == pytest.approx(-50.0, abs=15.0) and table.std[2] == pytest.approx(0.01, rel=0.3)
    assert torch.allclose(table.train_x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert table.value_range == (float(rows.min()), float(rows.max()))


BAD_RAW = [
    (RawData(np.zeros((10, 2, 2, 2, 2)), np.zeros(10, int)), r"train_x has shape \(10, 2, 2, 2, 2\)"),
    (RawData(np.zeros((10, 4)), np.zeros(10)), "train_y must be one integer class index per row"),
    (RawData(np.zeros((10, 4)), np.zeros(9, int)), "10 train inputs but 9 labels"),
    (RawData(np.full((10, 4), np.nan), np.zeros(10, int)), "train_x holds NaN"),
    (RawData(np.zeros((10, 4)), -np.ones(10, int)), "negative labels"),
    (RawData(np.zeros((10, 4)), np.zeros(10, int), np.zeros((4, 4))), "only one of test_x and test_y"),
    (RawData(np.zeros((10, 4)), np.zeros(10, int), np.zeros((4, 5)), np.zeros(4, int)), "test inputs are"),
    (RawData(np.zeros((10, 4)), np.arange(10) % 3, num_classes=2), "a label is >= its 2 classes"),
    (RawData(np.zeros((10, 4)), np.arange(10)), "cannot hold out a test split"),
    (RawData([[1.0]], np.zeros(1, int)), "train_x is a list, not a numpy array or tensor"),
]


@pytest.mark.parametrize(("raw", "message"), BAD_RAW, ids=[m for _, m in BAD_RAW])
def test_what_a_loader_returns_is_checked(raw: RawData, message: str) -> None:
    with pytest.raises(DataError, match=message) as caught:
        make_splits("mine", raw)
    assert "\n" not in str(caught.value)


@pytest.mark.mnist
@pytest.mark.slow
def test_mnist_from_the_shared_folder(mnist_dir: Path, tmp_path: Path) -> None:
    splits = load_dataset("mnist", data_dir=mnist_dir, val_size=0.1, label_noise=0.25)
    assert (len(splits.train_y), len(splits.val_y), len(splits.test_y)) == (54_000, 6_000, 10_000)
    assert splits.input_shape == (1, 28, 28) and splits.num_classes == 10
    assert len(splits.randomized) == 13_500
    assert float(splits.train_x.mean()) == pytest.approx(0.0, abs=1e-4)
    assert torch.bincount(splits.val_y).min() >= 500  # stratified: every digit ~600 times
    # a torchvision root given directly works too
    direct = load_dataset("mnist", data_dir=mnist_dir / "mnist", val_size=0.1)
    assert torch.equal(direct.test_y, splits.test_y) and direct.fingerprint == splits.fingerprint
    raw = (mnist_dir / "mnist" / "MNIST" / "raw").resolve()  # the source names the files' real folder
    assert splits.value_range == (0.0, 255.0) and splits.source == str(raw)
    # through a symlinked folder (../shared often is one): the same data, the same real source
    (tmp_path / "linked").symlink_to(mnist_dir, target_is_directory=True)
    linked = load_dataset("mnist", data_dir=tmp_path / "linked", val_size=0.1)
    assert linked.fingerprint == splits.fingerprint and linked.source == str(raw)
    # and the raw folder itself, as a flat folder
    flat = load_dataset("mnist", data_dir=mnist_dir / "mnist" / "MNIST" / "raw", val_size=0.1)
    assert flat.fingerprint == splits.fingerprint
