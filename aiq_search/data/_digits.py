"""scikit-learn's 8×8 digits: bundled, offline, small enough for tests and the quick start."""

from __future__ import annotations

import numpy as np

from aiq_search.data._core import RawData, split_test
from aiq_search.data._registry import register_dataset


@register_dataset("digits")
def load_digits() -> RawData:
    """digits: 8×8 grayscale (values 0..16), 10 classes, bundled with scikit-learn; a fixed 20% is its test set."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = bunch.images.astype(np.float32)[:, None]
    train_x, train_y, test_x, test_y = split_test(x, bunch.target, what="digits")
    return RawData(train_x, train_y, test_x, test_y, value_range=(0.0, 16.0), num_classes=10,
                   source="scikit-learn (sklearn.datasets.load_digits)")
