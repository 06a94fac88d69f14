"""A data set of your own, in code: a function returning aiq_search.data.RawData.

Named in a study file by import path (``dataset = "wine_data:load"``, the module importable from where
aiq-search runs or on PYTHONPATH); its keyword parameters are the options of the [data] table, and it
receives ``data_dir`` and ``download`` when it names them. Splitting, label noise and normalization are
the common code's, the same as for the built-in data sets.

    PYTHONPATH=examples/custom_loader aiq-search run examples/custom_loader/study.toml
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_wine

from aiq_search import RawData


def load(*, features: int = 13) -> RawData:
    """scikit-learn's wine recognition data (bundled): 178 rows of chemical measurements, 3 cultivars."""
    bunch = load_wine()
    x = bunch.data[:, :features].astype(np.float32)
    return RawData(x, bunch.target, source="scikit-learn (sklearn.datasets.load_wine)")
