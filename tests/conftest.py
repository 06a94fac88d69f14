"""Fixtures shared by several test files."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's 8×8 digits as DataSplits (offline, fast): the default data set for training tests."""
    from aiq_search.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The shared MNIST folder, ../shared/data next to the repository; tests needing it skip without it."""
    path = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    if not (path / "mnist" / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"MNIST is not under {path}/mnist/MNIST/raw")
    return path
