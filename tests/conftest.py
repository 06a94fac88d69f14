"""Fixtures shared by several test files."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from aiq_search.metrics import aiq, network_efficiency


@pytest.fixture
def recorded_study(tmp_path: Path) -> Callable[..., optuna.Study]:
    """Make an SQLite study whose trials carry the attributes aiq_search.study records (CONTRACTS.md).

    For tests of code that only reads those records (plots, dashboard): accuracies and layer efficiencies
    are drawn at random, parameter counts are those of the drawn LeNet-300 widths on 8×8 digits, and
    network efficiency and aIQ are computed from them by aiq_search.metrics. A pruned and a failed trial
    sit among the complete ones, as in a real study.
    """

    def make(n_complete: int = 12, *, mode: str = "aiq", name: str = "recorded", seed: int = 0) -> optuna.Study:
        rng = random.Random(seed)
        beta = 2.0
        directions = ["maximize"] if mode == "aiq" else ["maximize", "minimize"]
        study = optuna.create_study(
            study_name=name, storage=f"sqlite:///{tmp_path / 'study.db'}", directions=directions
        )
        study.set_user_attr(
            "aiq_search",
            {"config": {"name": name}, "mode": mode, "beta": beta, "dataset": "digits", "data_dir": None,
             "family": "lenet300", "eval_split": "validation", "artifacts": str(tmp_path / "artifacts")},
        )
        pruned, failed = min(3, n_complete), min(7, n_complete + 1)
        for number in range(n_complete + 2):
            widths = [rng.randint(1, 300) for _ in range(rng.randint(1, 3))]
            params = {"n_layers": len(widths), **{f"width_{i}": w for i, w in enumerate(widths)}}
            distributions = {"n_layers": IntDistribution(1, 3),
                             **{f"width_{i}": IntDistribution(1, 2048, log=True) for i in range(len(widths))}}
            if number == pruned:
                study.add_trial(create_trial(state=TrialState.PRUNED, params=params, distributions=distributions))
                continue
            if number == failed:
                study.add_trial(create_trial(state=TrialState.FAIL, params=params, distributions=distributions,
                                             user_attrs={"fail_reason": "loss diverged"}))
                continue
            sizes = [64, *widths, 10]
            n_params = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
            layers = {f"hidden.{i}": rng.uniform(0.05, 0.95) for i in range(len(widths))}
            accuracy = rng.uniform(0.5, 0.99)
            network = network_efficiency(layers)
            score = aiq(network, accuracy, beta)
            study.add_trial(
                create_trial(
                    state=TrialState.COMPLETE,
                    values=[score] if mode == "aiq" else [accuracy, n_params],
                    params={**params, "dropout": 0.0},
                    distributions={**distributions, "dropout": FloatDistribution(0.0, 0.7)},
                    user_attrs={
                        "aiq": score, "accuracy": accuracy, "val_accuracy": accuracy,
                        "test_accuracy": rng.uniform(0.5, 0.99), "n_params": n_params,
                        "network_efficiency": network, "layer_efficiencies": layers, "epochs": 3,
                        "train_seconds": 0.5, "device": "cpu",
                        "architecture": {"family": "lenet300", "input_shape": [1, 8, 8], "num_classes": 10,
                                         "widths": widths, "batch_norm": False, "dropout": 0.0},
                    },
                )
            )
        return study

    return make


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
