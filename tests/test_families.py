"""Architecture families: specs rebuild exactly, parameter counts match the formulas, spaces narrow safely,
bad specs are refused in one line before anything is allocated, and families are found by reference."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from torch import nn

from aiq_search.errors import ConfigError
from aiq_search.families import (
    ENTRY_POINT_GROUP,
    Choice,
    Family,
    SpecError,
    build_model,
    count_parameters,
    describe_spec,
    get_family,
    list_families,
    register_family,
)
from aiq_search.metrics import EfficiencyProbe
from aiq_search.studyfile import load_study_file


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
    [({"family": "vgg"}, "unknown architecture family 'vgg'; known: lenet300, lenet5, resnet"),
     ({"family": "resnet"}, r"resnet spec: missing keys \['activation', 'blocks', 'stem_width'\], unexpected keys "
                            r"\[\]"),
     ({"widths": []}, "widths must be a list of 1 to 3 values"),
     ({"widths": [1, 2, 3, 4]}, "widths must be a list of 1 to 3 values"),
     ({"widths": 300}, "widths must be a list of 1 to 3 values, got 300"),
     ({"widths": [0]}, r"widths: must be an integer in \[1, 2048\]"),
     ({"widths": [3000]}, r"widths: must be an integer in \[1, 2048\]"),
     ({"dropout": 0.8}, r"dropout: must be a number in \[0.0, 0.7\]"),
     ({"batch_norm": 1}, "batch_norm: must be one of False, True"),
     ({"num_classes": 1}, r"num_classes must be an integer in \[2, 100000\], got 1"),
     ({"num_classes": 10**9}, r"num_classes must be an integer in \[2, 100000\], got 1000000000"),
     ({"num_classes": 1e9}, r"num_classes must be an integer in \[2, 100000\], got 1000000000.0"),
     ({"input_shape": [28, 28]}, "input_shape must be"),
     ({"input_shape": [1, 20000, 20000]}, r"input_shape \[1, 20000, 20000\] is larger than lenet300 takes"),
     ({"extra": 1}, r"unexpected keys \['extra'\]")],
)
def test_bad_spec_is_one_line_naming_the_problem(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        build_model({**mlp_spec([300, 100]), **change})
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("spec", "message"), [([1, 2], "must be a JSON object, got list"),
                                               ({"input_shape": [1, 8, 8]}, "needs a 'family' key"),
                                               ({"family": ["lenet5"]}, "named by a string, got list")])
def test_spec_that_is_no_spec_at_all(spec: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_model(spec)  # type: ignore[arg-type]


def test_bad_spec_errors_are_value_errors_too() -> None:  # for Python callers that catch ValueError
    with pytest.raises(ValueError, match="num_classes"):
        build_model(mlp_spec([4], classes=0))


def test_too_many_parameters_are_refused_before_memory_is_taken() -> None:
    # 3×1024×1024 inputs into 2048 neurons: 6.4 billion parameters (25 GB) that must never be allocated
    spec = mlp_spec([2048], shape=(3, 1024, 1024))
    expected = 3 * 1024 * 1024 * 2048 + 2048 + 2048 * 10 + 10
    with pytest.raises(SpecError, match=f"lenet300 spec asks for {expected:,} parameters, more than the family's "
                                        "limit of 200,000,000"):
        build_model(spec)


def test_lenet5_spec_needs_three_channels() -> None:
    with pytest.raises(ValueError, match="channels must be a list of 3 values"):
        build_model(conv_spec([4, 8]))
    with pytest.raises(ValueError, match="activation: must be one of 'elu', 'relu'"):
        build_model(conv_spec([4, 8, 16], activation="tanh"))
    with pytest.raises(SpecError, match="lenet5 spec: lenet5 needs inputs of at least 4×4 pixels, got 3×3"):
        build_model(conv_spec([3, 4, 5], shape=(1, 3, 3)))


# ------------------------------------------------------------------------------------ spaces


def test_declared_spaces() -> None:
    assert get_family("lenet300").space == {
        "n_layers": Choice.int(1, 3), "width": Choice.int(1, 2048, log=True),
        "batch_norm": Choice.categorical((False, True)), "dropout": Choice.float(0.0, 0.7)}
    assert get_family("lenet5").space["channels"] == Choice.int(1, 512, log=True)
    assert get_family("lenet5").space["activation"].choices == ("elu", "relu")
    with pytest.raises(TypeError):
        get_family("lenet300").space["width"] = Choice.int(1, 4)  # type: ignore[index]


def test_narrow_fixes_ranges_and_restricts() -> None:
    space = get_family("lenet300").narrow(
        {"n_layers": 2, "width": {"low": 16, "high": 512}, "batch_norm": [True], "dropout": 0, "width_1": [8, 32]})
    assert space["n_layers"] == 2
    assert space["width"] == Choice.int(16, 512, log=True)
    assert space["batch_norm"] == Choice.categorical((True,))
    assert space["dropout"] == 0.0 and isinstance(space["dropout"], float)
    assert space["width_1"] == Choice.ordered((32, 8))  # numbers keep their order: searched by position
    assert get_family("lenet300").narrow({"dropout": {"high": 0.5}})["dropout"] == Choice.float(0.0, 0.5)


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
        get_family("lenet300").narrow(overrides)


def test_fixed_trial_samples_lenet_300_100() -> None:
    trial = optuna.trial.FixedTrial({"n_layers": 2, "width_0": 300, "width_1": 100, "batch_norm": False,
                                     "dropout": 0.0})
    family = get_family("lenet300")
    assert family.sample(trial, family.space, (1, 28, 28), 10) == mlp_spec([300, 100])


def test_sample_respects_narrowed_space_and_keeps_fixed_values_out_of_params() -> None:
    family = get_family("lenet5")
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
    family = get_family("lenet300")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    counts = set()
    for _ in range(15):
        trial = study.ask()
        spec = family.sample(trial, family.space, (1, 8, 8), 10)
        counts.add(len(spec["widths"]))
        assert spec["widths"] == [trial.params[f"width_{i}"] for i in range(trial.params["n_layers"])]
        study.tell(trial, 0.0)
    assert counts == {1, 2, 3}


# ------------------------------------------------------------------------------------ finding families

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiny_convnet"
TINY = "tiny_convnet:tiny_convnet"


@pytest.fixture
def example_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example family's folder on sys.path, as PYTHONPATH puts it there for the command line."""
    monkeypatch.syspath_prepend(str(EXAMPLE))


def test_built_ins_are_registered_under_their_names() -> None:
    assert list_families()[:3] == ["lenet300", "lenet5", "resnet"]
    for name in ("lenet300", "lenet5", "resnet"):
        assert get_family(name).name == name and get_family(name) is get_family(name)


def test_register_family_refuses_taken_and_path_like_names() -> None:
    with pytest.raises(ValueError, match="already registered as 'resnet'"):
        register_family("resnet")(get_family("lenet5"))
    with pytest.raises(ValueError, match="a family name starts with a letter"):
        register_family("pkg.mod:family")


def test_user_family_by_import_path_samples_builds_and_describes(example_on_path: None) -> None:
    family = get_family(TINY)
    assert family.name == TINY and get_family(TINY) is family
    space = family.narrow({"n_convs": 2, "channels": {"low": 4, "high": 8}, "channels_1": 16, "kernel": [3]})
    trial = optuna.trial.FixedTrial({"channels_0": 6, "kernel": 3, "batch_norm": True, "dropout": 0.25})
    spec = family.sample(trial, space, (1, 8, 8), 10)
    assert spec == {"family": TINY, "input_shape": [1, 8, 8], "num_classes": 10, "channels": [6, 16], "kernel": 3,
                    "batch_norm": True, "dropout": 0.25}
    model = build_model(json.loads(json.dumps(spec)), seed=5)
    again = build_model(spec, seed=5)
    for (name, a), (name_b, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert name == name_b and torch.equal(a, b)
    assert model.spec == spec and model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert describe_spec(spec) == "tiny_convnet 6-16 k3, batch norm, dropout 0.25"
    assert get_family("tiny_convnet:TinyConvNet").name == "tiny_convnet:TinyConvNet"  # a class is instantiated


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"channels_3": 4}, f"{TINY} has no choice 'channels_3'; its choices are n_convs, channels, kernel, "
                         "batch_norm, dropout, channels_0..channels_2"),
     ({"channels": {"high": 128}}, "channels: high must be <= 64, got 128"),
     ({"channels_1": 1}, "channels_1: must be an integer in [2, 64], log scale, got 1"),
     ({"kernel": 7}, "kernel: must be one of 3, 5, got 7"),
     ({"n_convs": [1, 4]}, "n_convs: must be an integer in [1, 3], got 4")],
)
def test_user_family_narrows_against_its_own_space(example_on_path: None, overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        get_family(TINY).narrow(overrides)


def test_study_file_names_a_user_family(example_on_path: None, write_study: Callable[..., Path]) -> None:
    lenet = {"n_layers": None, "width": None, "batch_norm": None, "dropout": None}
    config = load_study_file(write_study(search={**lenet, "family": TINY, "channels": {"high": 16}}))
    assert config.search.resolve() is get_family(TINY)
    assert config.search.space()["channels"] == Choice.int(2, 16, log=True)
    bad = write_study("bad.toml", search={**lenet, "family": TINY, "channels_0": 100})
    with pytest.raises(ConfigError, match=r"bad.toml: field 'search.channels_0': channels_0: must be an integer "
                                          r"in \[2, 64\]"):
        load_study_file(bad)


@pytest.mark.parametrize(
    ("reference", "message"),
    [("aiq_nowhere_pkg.models:family", "architecture family 'aiq_nowhere_pkg.models:family': no module named "
                                       "'aiq_nowhere_pkg.models' can be imported; install the package that "
                                       "provides it or put the folder that holds it on PYTHONPATH"),
     ("tiny_convnet:nothing", "architecture family 'tiny_convnet:nothing': tiny_convnet has no attribute 'nothing'"),
     ("tiny_convnet:Choice", "architecture family 'tiny_convnet:Choice' is a type, not a family"),
     ("tiny_convnet:tiny_convnet.space", "architecture family 'tiny_convnet:tiny_convnet.space' is a "
                                         "mappingproxy, not a family"),
     ("my models:family", "architecture family 'my models:family' is not an import path; write it as "
                          "'package.module:attribute'"),
     ("vgg16", "unknown architecture family 'vgg16'; known: lenet300, lenet5, resnet; a family of your own is "
               "named by its import path, 'package.module:attribute'")],
)
def test_families_that_cannot_be_found_are_one_line(example_on_path: None, reference: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        get_family(reference)


def test_a_family_whose_own_imports_fail_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "fam_needs_dep.py").write_text("import aiq_missing_dependency\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=re.escape("importing fam_needs_dep failed (No module named "
                                                    "'aiq_missing_dependency'); install what it needs")):
        get_family("fam_needs_dep:family")


def test_a_spec_of_a_family_not_importable_here() -> None:
    spec = {"family": "aiq_nowhere_pkg:family", "input_shape": [1, 8, 8], "num_classes": 10, "channels": [4]}
    with pytest.raises(ConfigError, match="aiq_nowhere_pkg:family.*on PYTHONPATH"):
        build_model(spec)
    assert describe_spec(spec) == "aiq_nowhere_pkg:family channels 4"  # plots still get a line


def test_installed_packages_ship_families_through_entry_points(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # an installed distribution as pip leaves it: its module and a dist-info folder declaring the entry point
    (tmp_path / "aiq_plugin_pkg.py").write_text("from tiny_convnet import TinyConvNet\n\nfamily = TinyConvNet()\n",
                                                encoding="utf-8")
    info = tmp_path / "aiq_plugin_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: aiq-plugin-pkg\nVersion: 1.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nplugin_convnet = aiq_plugin_pkg:family\n",
                                           encoding="utf-8")
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "plugin_convnet" in list_families()
    family = get_family("plugin_convnet")
    assert family.name == "plugin_convnet"
    spec = family.sample(optuna.trial.FixedTrial({"n_convs": 1, "channels_0": 4, "kernel": 5, "batch_norm": False,
                                                  "dropout": 0.0}), family.space, (1, 8, 8), 3)
    assert spec["family"] == "plugin_convnet" and build_model(spec).spec == spec


def test_a_family_needs_a_reference_to_sample(example_on_path: None) -> None:
    from tiny_convnet import TinyConvNet

    with pytest.raises(TypeError, match="has no reference yet: get it through get_family"):
        TinyConvNet().sample(optuna.trial.FixedTrial({}), {}, (1, 8, 8), 10)


@pytest.mark.parametrize(
    ("space", "per_layer", "message"),
    [({"width": 8}, {}, "space\\['width'\\] must be a Choice"),
     ({"num_classes": Choice.int(2, 4)}, {}, "cannot declare 'num_classes'"),
     ({"width": Choice.int(1, 8)}, {"widths": ("depth", 3)}, "'depth' must be a choice of the space"),
     ({"width": Choice.int(1, 8), "depth": Choice.float(1.0, 3.0)}, {"widths": ("width", "depth")},
      "its length 'depth' must be an int choice"),
     ({"width": Choice.int(1, 8)}, {"widths": ("width", 0)}, "a fixed length must be an integer >= 1")],
)
def test_a_family_declaration_is_checked_when_its_class_is_made(space: dict, per_layer: dict, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        type("Broken", (Family,), {"space": space, "per_layer": per_layer, "build": lambda self, spec: None})


def test_a_listed_number_is_searched_by_its_position_in_the_sorted_list() -> None:
    space = get_family("lenet300").narrow({"n_layers": 2, "width_0": [16, 4, 8], "width_1": [2, 1]})
    assert space["width_0"] == Choice.ordered((4, 8, 16))
    trial = optuna.trial.FixedTrial({"width_0": 1, "width_1": 0, "batch_norm": False, "dropout": 0.0})
    spec = get_family("lenet300").sample(trial, space, (1, 8, 8), 10)
    assert spec["widths"] == [8, 1]  # the spec holds values, the trial's parameters their positions
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    get_family("lenet300").sample(trial, space, (1, 8, 8), 10)
    assert trial.distributions["width_0"] == optuna.distributions.IntDistribution(0, 2)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Choice("int", 1, 4, choices=(1, 2)), "is a range"),
    (lambda: Choice("categorical", 1, 4, choices=(1, 2)), "takes its values only"),
    (lambda: Choice("ordered", choices=(4, 2)), "increasing order"),
    (lambda: Choice.ordered(["a", "b"]), "not supported|distinct numbers"),
])
def test_a_choice_refuses_arguments_of_another_kind(make: Any, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_an_ordered_choice_narrows_to_a_range_of_its_values() -> None:
    choice = Choice.ordered((1, 2, 4, 8))
    assert choice.narrow("w", {"low": 2, "high": 6}) == Choice.ordered((2, 4))
    assert choice.narrow("w", [8, 1]) == Choice.ordered((1, 8))
    assert choice.narrow("w", 4) == 4 and choice.param(4) == 2
    with pytest.raises(ValueError, match="w: must be one of 1, 2, 4, 8, got 3"):
        choice.narrow("w", 3)
