"""Architecture families: specs rebuild exactly, parameter counts match the formulas, spaces narrow safely."""

from __future__ import annotations

import json
import re

import optuna
import pytest
import torch
from torch import nn

from aiq_search.architectures import FAMILIES, Choice, build_model, count_parameters
from aiq_search.metrics import EfficiencyProbe


def mlp_spec(widths: list[int], *, shape=(1, 28, 28), classes=10, batch_norm=False, dropout=0.0) -> dict:
    return {"family": "lenet300", "input_shape": list(shape), "num_classes": classes, "widths": widths,
            "batch_norm": batch_norm, "dropout": dropout}


def conv_spec(channels: list[int], *, shape=(1, 28, 28), classes=10, activation="elu", batch_norm=False,
              dropout=0.0) -> dict:
    return {"family": "lenet5", "input_shape": list(shape), "num_classes": classes, "channels": channels,
            "activation": activation, "batch_norm": batch_norm, "dropout": dropout}


# ------------------------------------------------------------------------------------ parameter counts


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # LeNet-300-100: 784·300+300 + 300·100+100 + 100·10+10
        (mlp_spec([300, 100]), 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10),
        (mlp_spec([1]), 784 + 1 + 1 * 10 + 10),
        # batch norm adds a weight and a bias per neuron
        (mlp_spec([64, 32, 16], shape=(1, 8, 8), batch_norm=True),
         (64 * 64 + 64) + (64 * 32 + 32) + (32 * 16 + 16) + (16 * 10 + 10) + 2 * (64 + 32 + 16)),
        (mlp_spec([2048], shape=(3, 8, 8), classes=5, dropout=0.5), 192 * 2048 + 2048 + 2048 * 5 + 5),
    ],
)
def test_lenet300_parameter_count(spec: dict, expected: int) -> None:
    assert count_parameters(build_model(spec)) == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # LeNet-5 20/50/100 on 28×28: 5×5, 5×5, then a 4×4 kernel
        (conv_spec([20, 50, 100]),
         (1 * 20 * 25 + 20) + (20 * 50 * 25 + 50) + (50 * 100 * 16 + 100) + (100 * 10 + 10)),
        # on 8×8 the last kernel is 2×2
        (conv_spec([20, 50, 100], shape=(1, 8, 8)),
         (1 * 20 * 25 + 20) + (20 * 50 * 25 + 50) + (50 * 100 * 4 + 100) + (100 * 10 + 10)),
        (conv_spec([1, 1, 1], activation="relu"), (25 + 1) + (25 + 1) + (16 + 1) + (10 + 10)),
        (conv_spec([4, 8, 16], shape=(3, 28, 28), classes=7, batch_norm=True, dropout=0.3),
         (3 * 4 * 25 + 4) + (4 * 8 * 25 + 8) + (8 * 16 * 16 + 16) + (16 * 7 + 7) + 2 * (4 + 8 + 16)),
    ],
)
def test_lenet5_parameter_count(spec: dict, expected: int) -> None:
    assert count_parameters(build_model(spec)) == expected


def test_frozen_parameters_do_not_count() -> None:
    model = build_model(mlp_spec([300, 100]))
    model.fc1.requires_grad_(False)
    assert count_parameters(model) == 300 * 100 + 100 + 100 * 10 + 10


# ------------------------------------------------------------------------------------ structure


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 8, 8), (1, 16, 16), (2, 12, 20)])
def test_lenet5_ends_at_one_by_one(shape: tuple[int, int, int]) -> None:
    model = build_model(conv_spec([3, 4, 5], shape=shape, classes=4))
    seen = {}
    model.conv3.register_forward_hook(lambda _m, _i, out: seen.update(shape=tuple(out.shape)))
    assert model(torch.zeros(2, *shape)).shape == (2, 4)
    assert seen["shape"] == (2, 5, 1, 1)


def test_lenet5_too_small_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least 4×4"):
        build_model(conv_spec([3, 4, 5], shape=(1, 3, 3)))


@pytest.mark.parametrize(
    ("spec", "hidden"),
    [(mlp_spec([30, 20, 10], batch_norm=True, dropout=0.2), ["fc1", "fc2", "fc3"]),
     (conv_spec([4, 8, 16], batch_norm=True, dropout=0.1), ["conv1", "conv2", "conv3"])],
)
def test_probe_defaults_to_hidden_layers_and_blocks_are_ordered(spec: dict, hidden: list[str]) -> None:
    model = build_model(spec)
    assert list(EfficiencyProbe(model).modules) == hidden
    names = [name for name, _ in model.named_children()]
    assert names[-1] == "classifier"
    first = names.index(hidden[0])
    assert names[first:first + 4] == [hidden[0], "bn1", "act1", "drop1"]


def test_no_dropout_module_when_rate_is_zero() -> None:
    model = build_model(mlp_spec([10, 10]))
    assert not any(isinstance(m, (nn.Dropout, nn.BatchNorm1d)) for m in model.modules())


# ------------------------------------------------------------------------------------ specs


@pytest.mark.parametrize(
    "spec",
    [mlp_spec([300, 100]), mlp_spec([7], shape=(1, 8, 8), batch_norm=True, dropout=0.25),
     conv_spec([20, 50, 100]), conv_spec([2, 3, 5], shape=(1, 8, 8), activation="relu", batch_norm=True,
                                          dropout=0.7)],
)
def test_spec_model_spec_round_trip(spec: dict) -> None:
    model = build_model(spec, seed=3)
    assert model.spec == spec
    rebuilt = build_model(json.loads(json.dumps(model.spec)), seed=3)
    assert rebuilt.spec == spec
    assert str(rebuilt) == str(model)
    for (name, a), (name_b, b) in zip(model.state_dict().items(), rebuilt.state_dict().items(), strict=True):
        assert name == name_b and torch.equal(a, b)


def test_spec_is_normalized_and_copied() -> None:
    spec = mlp_spec([5, 6], dropout=0)
    spec["input_shape"] = (1, 8, 8)
    model = build_model(spec)
    assert model.spec["input_shape"] == [1, 8, 8] and model.spec["dropout"] == 0.0
    spec["widths"].append(7)
    assert model.spec["widths"] == [5, 6]


def test_seed_gives_same_weights_without_touching_global_rng() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model(mlp_spec([8]), seed=1)
    assert torch.equal(torch.rand(1), before)
    b = build_model(mlp_spec([8]), seed=1)
    assert torch.equal(a.fc1.weight, b.fc1.weight)


@pytest.mark.parametrize(
    ("change", "message"),
    [({"family": "resnet"}, "unknown architecture family 'resnet'"),
     ({"widths": []}, "widths must be a list of 1 to 3"),
     ({"widths": [1, 2, 3, 4]}, "widths must be a list of 1 to 3"),
     ({"widths": [0]}, r"widths: must be an integer in \[1, 2048\]"),
     ({"widths": [3000]}, r"widths: must be an integer in \[1, 2048\]"),
     ({"dropout": 0.8}, r"dropout: must be a number in \[0.0, 0.7\]"),
     ({"batch_norm": 1}, "batch_norm: must be one of False, True"),
     ({"num_classes": 1}, "num_classes must be an integer >= 2"),
     ({"input_shape": [28, 28]}, "input_shape must be"),
     ({"extra": 1}, r"unexpected keys \['extra'\]")],
)
def test_bad_spec_names_the_problem(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model({**mlp_spec([300, 100]), **change})


def test_lenet5_spec_needs_three_channels() -> None:
    with pytest.raises(ValueError, match="channels must be a list of 3 to 3"):
        build_model(conv_spec([4, 8]))
    with pytest.raises(ValueError, match="activation: must be one of 'elu', 'relu'"):
        build_model(conv_spec([4, 8, 16], activation="tanh"))


# ------------------------------------------------------------------------------------ spaces


def test_declared_spaces() -> None:
    assert FAMILIES["lenet300"].space == {
        "n_layers": Choice("int", 1, 3), "width": Choice("int", 1, 2048, log=True),
        "batch_norm": Choice("categorical", choices=(False, True)), "dropout": Choice("float", 0.0, 0.7)}
    assert FAMILIES["lenet5"].space["channels"] == Choice("int", 1, 512, log=True)
    assert FAMILIES["lenet5"].space["activation"].choices == ("elu", "relu")
    with pytest.raises(TypeError):
        FAMILIES["lenet300"].space["width"] = Choice("int", 1, 4)  # type: ignore[index]


def test_narrow_fixes_ranges_and_restricts() -> None:
    space = FAMILIES["lenet300"].narrow(
        {"n_layers": 2, "width": {"low": 16, "high": 512}, "batch_norm": [True], "dropout": 0, "width_1": [8, 32]})
    assert space["n_layers"] == 2
    assert space["width"] == Choice("int", 16, 512, log=True)
    assert space["batch_norm"] == Choice("categorical", choices=(True,))
    assert space["dropout"] == 0.0 and isinstance(space["dropout"], float)
    assert space["width_1"] == Choice("categorical", choices=(8, 32))
    assert FAMILIES["lenet300"].narrow({"dropout": {"high": 0.5}})["dropout"] == Choice("float", 0.0, 0.5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"width": {"low": 0}}, "width: low must be >= 1, got 0"),
     ({"width": {"high": 4096}}, "width: high must be <= 2048, got 4096"),
     ({"width": {"low": 64, "high": 8}}, "width: low must be <= high"),
     ({"width": {"low": 1.5}}, "width: low must be an integer"),
     ({"width": {"lo": 1}}, "width: a range takes the keys 'low' and 'high'"),
     ({"width": 0}, "width: must be an integer in [1, 2048], log scale, got 0"),
     ({"width": "wide"}, "width: must be an integer"),
     ({"width": [8, 4096]}, "width: must be an integer"),
     ({"width": []}, "width: the list of allowed values is empty"),
     ({"n_layers": 4}, "n_layers: must be an integer in [1, 3]"),
     ({"width_3": 10}, "lenet300 has no choice 'width_3'; its choices are n_layers, width, batch_norm, dropout, "
                       "width_0..width_2"),
     ({"batch_norm": {"low": 0}}, "batch_norm: a {low, high} range needs a numeric choice"),
     ({"batch_norm": "yes"}, "batch_norm: must be one of False, True"),
     ({"dropout": 0.9}, "dropout: must be a number in [0.0, 0.7]"),
     ({"dropout": True}, "dropout: must be a number")],
)
def test_narrow_rejects_what_is_not_allowed(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        FAMILIES["lenet300"].narrow(overrides)


def test_fixed_trial_samples_lenet_300_100() -> None:
    trial = optuna.trial.FixedTrial({"n_layers": 2, "width_0": 300, "width_1": 100, "batch_norm": False,
                                     "dropout": 0.0})
    family = FAMILIES["lenet300"]
    assert family.sample(trial, family.space, (1, 28, 28), 10) == mlp_spec([300, 100])


def test_sample_respects_narrowed_space_and_keeps_fixed_values_out_of_params() -> None:
    family = FAMILIES["lenet5"]
    space = family.narrow({"channels": {"low": 4, "high": 16}, "channels_2": 32, "activation": "relu",
                           "dropout": [0.0, 0.5]})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        spec = family.sample(trial, space, (1, 8, 8), 10)
        build_model(spec)
        assert all(4 <= c <= 16 for c in spec["channels"][:2]) and spec["channels"][2] == 32
        assert spec["activation"] == "relu" and spec["dropout"] in (0.0, 0.5)
        assert set(trial.params) == {"channels_0", "channels_1", "batch_norm", "dropout"}
        assert trial.distributions["channels_0"] == optuna.distributions.IntDistribution(4, 16, log=True)
        study.tell(trial, 0.0)


def test_sampled_layer_count_matches_widths() -> None:
    family = FAMILIES["lenet300"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    counts = set()
    for _ in range(15):
        trial = study.ask()
        spec = family.sample(trial, family.space, (1, 8, 8), 10)
        counts.add(len(spec["widths"]))
        assert spec["widths"] == [trial.params[f"width_{i}"] for i in range(trial.params["n_layers"])]
        study.tell(trial, 0.0)
    assert counts == {1, 2, 3}
