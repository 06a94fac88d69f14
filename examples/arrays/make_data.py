"""Write a tiny arrays data set: feature rows of three noisy classes in an .npz file (no test arrays, so a
fixed, stratified 20% becomes the test set).

    python examples/arrays/make_data.py                # -> examples/arrays/blobs.npz
    aiq-search run examples/arrays/study.toml
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def make(out: Path, rows: int = 300, features: int = 12, seed: int = 0) -> Path:
    """x_train (rows, features) float32, y_train (rows,) int64 in ``out``; returns ``out``."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 3.0, size=(3, features))
    y = np.arange(rows) % 3
    scale = np.linspace(0.5, 50.0, features)  # features on very different scales: each is standardized alone
    x = ((centers[y] + rng.normal(0.0, 2.0, size=(rows, features))) * scale).astype(np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, x_train=x, y_train=y)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", nargs="?", type=Path, default=Path("examples/arrays/blobs.npz"))
    print(make(parser.parse_args().out))
