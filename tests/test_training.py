"""The trainer: learns, is deterministic on the CPU, stops early on the best weights, reports efficiency."""

from __future__ import annotations

import optuna
import pytest
import torch

from aiq_search.families import build_model
from aiq_search.metrics import MetricsConfig, measure_efficiency
from aiq_search.training import (
    DivergenceError,
    EpochReport,
    TrainConfig,
    evaluate,
    resolve_device,
    train,
)


def mlp(digits, widths=(32,), **kw) -> torch.nn.Module:
    spec = {"family": "lenet300", "input_shape": list(digits.input_shape), "num_classes": digits.num_classes,
            "widths": list(widths), "batch_norm": False, "dropout": 0.0}
    return build_model({**spec, **kw}, seed=0)


ADAM = TrainConfig(optimizer="adam", lr=3e-3, batch_size=64, max_epochs=4, patience=None)


@pytest.mark.slow
def test_lenet300_learns_digits(digits) -> None:
    model = mlp(digits, (64,))
    result = train(model, digits, TrainConfig(optimizer="adam", lr=3e-3, batch_size=32, max_epochs=8),
                   device="cpu")
    assert result.test_accuracy >= 0.90 and result.val_accuracy >= 0.90
    assert result.device == "cpu" and result.seconds > 0 and 1 <= result.best_epoch <= result.epochs <= 8
    assert list(result.efficiency.layers) == ["fc1"] and 0 < result.efficiency.network <= 1


@pytest.mark.slow
def test_lenet5_learns_digits(digits) -> None:
    spec = {"family": "lenet5", "input_shape": [1, 8, 8], "num_classes": 10, "channels": [8, 16, 32],
            "activation": "relu", "batch_norm": True, "dropout": 0.0}
    model = build_model(spec, seed=0)
    config = TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4,
                         batch_size=32, max_epochs=6)
    result = train(model, digits, config, device="cpu")
    assert result.test_accuracy >= 0.90
    assert list(result.efficiency.layers) == ["conv1", "conv2", "conv3"]
    assert all(t.is_contiguous() for t in model.state_dict().values())  # trained NHWC, handed back NCHW
    # the recorded numbers are those of the model as handed back, so an export re-measures them exactly
    accuracy, report = evaluate(model, digits.val_x, digits.val_y)
    assert accuracy == result.eval_accuracy and report.layers == result.efficiency.layers


def test_identical_seeds_give_identical_runs(digits) -> None:
    config = TrainConfig(optimizer="sgd", lr=0.05, batch_size=50, max_epochs=3, patience=None)
    runs = []
    for _ in range(2):
        model = mlp(digits, (16, 16), dropout=0.3, batch_norm=True)
        losses: list[float] = []
        result = train(model, digits, config, seed=7, device="cpu",
                       epoch_callback=lambda r, losses=losses: losses.append(r.train_loss))
        runs.append((model.state_dict(), losses, result))
    (state_a, losses_a, a), (state_b, losses_b, b) = runs
    assert losses_a == losses_b
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert (a.val_accuracy, a.test_accuracy, a.efficiency.network) == (b.val_accuracy, b.test_accuracy,
                                                                       b.efficiency.network)
    other = mlp(digits, (16, 16), dropout=0.3, batch_norm=True)
    losses_c: list[float] = []
    train(other, digits, config, seed=8, device="cpu",
          epoch_callback=lambda r: losses_c.append(r.train_loss))
    assert losses_c != losses_a


def test_training_leaves_global_rng_alone(digits) -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    train(mlp(digits, dropout=0.5), digits, TrainConfig(max_epochs=1), device="cpu")
    assert torch.equal(torch.rand(3), expected)


def test_epoch_reports_and_best_weights_kept(digits) -> None:
    reports: list[EpochReport] = []
    model = mlp(digits)
    config = TrainConfig(optimizer="sgd", lr=0.3, batch_size=16, max_epochs=12, patience=2)
    result = train(model, digits, config, device="cpu", epoch_callback=reports.append)
    assert [r.epoch for r in reports] == list(range(1, result.epochs + 1))
    accuracies = [r.val_accuracy for r in reports]
    assert result.val_accuracy == max(accuracies)
    assert result.best_epoch == accuracies.index(max(accuracies)) + 1
    assert result.epochs == 12 or result.epochs == result.best_epoch + 2  # patience 2 after the best
    assert all(r.seconds > 0 and r.train_loss > 0 and 0 < r.train_accuracy <= 1 for r in reports)
    assert result.history == [r.as_dict() for r in reports]  # every epoch, as the trial records it
    # the model holds the best epoch's weights: same accuracy and the same efficiency as reported then
    accuracy, report = evaluate(model, digits.val_x, digits.val_y)
    assert accuracy == result.val_accuracy == result.eval_accuracy
    assert report.network == reports[result.best_epoch - 1].efficiency.network == result.efficiency.network


def test_eval_split_test_reports_test_efficiency(digits) -> None:
    model = mlp(digits)
    result = train(model, digits, ADAM, device="cpu", eval_split="test")
    assert result.eval_split == "test" and result.eval_accuracy == result.test_accuracy
    expected = measure_efficiency(model, digits.test_x)
    assert result.efficiency.layer_efficiencies == expected.layer_efficiencies
    for bad in ("val", "train"):  # the training split never scores a trial: it would reward memorizing
        with pytest.raises(ValueError, match="eval_split must be one of validation, test"):
            train(model, digits, ADAM, device="cpu", eval_split=bad)


def test_callback_exception_propagates_and_best_weights_are_restored(digits) -> None:
    model = mlp(digits)
    seen: list[EpochReport] = []

    def prune_at_three(report: EpochReport) -> None:
        seen.append(report)
        if report.epoch == 3:
            raise optuna.TrialPruned()

    with pytest.raises(optuna.TrialPruned):
        train(model, digits, ADAM, device="cpu", epoch_callback=prune_at_three)
    assert len(seen) == 3
    accuracy, report = evaluate(model, digits.val_x, digits.val_y)
    best = max(seen, key=lambda r: r.val_accuracy)  # the first of equals, as the trainer keeps it
    assert accuracy == best.val_accuracy and report.network == best.efficiency.network


def test_divergence_raises(digits) -> None:
    with pytest.raises(DivergenceError, match="diverged"):
        train(mlp(digits), digits, TrainConfig(optimizer="sgd", lr=1e12, max_epochs=3), device="cpu")


def test_evaluate_matches_measure_efficiency(digits) -> None:
    model = mlp(digits, (12, 6))
    accuracy, report = evaluate(model, digits.test_x, digits.test_y, batch_size=100)
    assert report.layer_efficiencies == measure_efficiency(model, digits.test_x).layer_efficiencies
    expected = float((model(digits.test_x).argmax(1) == digits.test_y).float().mean())
    assert accuracy == pytest.approx(expected)
    assert model.training  # evaluate leaves the mode as it found it
    only_fc2 = MetricsConfig(layers=["fc2"])
    assert list(evaluate(model, digits.test_x, digits.test_y, metrics=only_fc2)[1].layers) == ["fc2"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"optimizer": "rmsprop"}, "optimizer\n  Input should be 'sgd' or 'adam'"),
     ({"lr": 0}, "lr\n  Input should be greater than 0"),
     ({"lr": float("nan")}, "lr\n  Input should be a finite number"),
     ({"momentum": 1.0}, "momentum\n  Input should be less than 1"),
     ({"weight_decay": -1}, "weight_decay\n  Input should be greater than or equal to 0"),
     ({"nesterov": True, "momentum": 0.0}, "nesterov needs optimizer 'sgd' with momentum > 0"),
     ({"nesterov": True, "optimizer": "adam"}, "nesterov needs optimizer 'sgd'"),
     ({"batch_size": 0}, "batch_size\n  Input should be greater than or equal to 1"),
     ({"max_epochs": 2.0}, "max_epochs\n  Input should be a valid integer"),
     ({"patience": 0}, "patience\n  Input should be greater than or equal to 1"),
     ({"device": "mps"}, "device\n  Value error, must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'mps'"),
     ({"seed": 1}, "seed\n  Extra inputs are not permitted")],
)
def test_bad_config(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_resolve_device() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu") == resolve_device(torch.device("cpu"))
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'"):
        resolve_device("gpu")
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trains_on_cuda(digits) -> None:
    model = mlp(digits, (64,))
    result = train(model, digits, TrainConfig(optimizer="adam", lr=3e-3, batch_size=32, max_epochs=8),
                   device="cuda")
    assert result.device.startswith("cuda") and result.test_accuracy >= 0.9
    assert next(model.parameters()).is_cuda
