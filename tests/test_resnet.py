"""The residual CNN family: its space spans a few hundred parameters to ResNet-18, blocks are built and run
as specified on any input size, and the shipped digits study runs."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
import torch
import torchvision
from torch import nn

from aiq_search.families import SpecError, build_model, count_parameters, describe_spec, get_family
from aiq_search.metrics import EfficiencyProbe
from aiq_search.study import complete_trials
from aiq_search.studyfile import load_study_file
from aiq_search.worker import run_study

STUDIES = Path(__file__).resolve().parents[1] / "studies"


def resnet_spec(widths: list[int], blocks: list[int] | None = None, *, stem: int = 8, shape=(3, 32, 32),
                classes: int = 10, activation: str = "relu", batch_norm: bool = True, dropout: float = 0.0) -> dict:
    return {"family": "resnet", "input_shape": list(shape), "num_classes": classes, "stem_width": stem,
            "blocks": blocks or [1] * len(widths), "widths": widths, "activation": activation,
            "batch_norm": batch_norm, "dropout": dropout}


RESNET18 = resnet_spec([64, 128, 256, 512], [2, 2, 2, 2], stem=64)


def test_resnet18_lies_in_the_space_with_torchvisions_parameter_count() -> None:
    model = build_model(RESNET18)
    # torchvision's ResNet-18 with the 3×3 stem used for 32×32 inputs (its max pool has no parameters)
    reference = torchvision.models.resnet18(num_classes=10)
    reference.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
    assert count_parameters(model) == count_parameters(reference) == 11_173_962
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_smallest_network_has_a_few_hundred_parameters() -> None:
    spec = resnet_spec([4], stem=4, batch_norm=False)
    # stem 3→4 3×3 + bias; one block of two 4→4 3×3 convolutions with biases; classifier 4→10
    assert count_parameters(build_model(spec)) == (3 * 4 * 9 + 4) + 2 * (4 * 4 * 9 + 4) + (4 * 10 + 10) == 458


def test_parameter_count_with_projection_shortcut_and_batch_norm() -> None:
    spec = resnet_spec([8, 16], stem=8)
    expected = (
        3 * 8 * 9 + 2 * 8                              # stem conv (no bias before BN) + BN
        + 2 * (8 * 8 * 9 + 2 * 8)                      # stage 1: same width, identity shortcut
        + 8 * 16 * 9 + 16 * 16 * 9 + 8 * 16 + 3 * 2 * 16  # stage 2: two convs, 1×1 projection, three BNs
        + 16 * 10 + 10                                 # classifier
    )
    assert count_parameters(build_model(spec)) == expected


@pytest.mark.parametrize(("shape", "final"), [((3, 32, 32), (4, 4)), ((1, 8, 8), (1, 1)), ((2, 7, 9), (1, 2)),
                                             ((1, 1, 1), (1, 1))])
def test_every_stage_after_the_first_halves_the_resolution(shape: tuple[int, int, int],
                                                           final: tuple[int, int]) -> None:
    model = build_model(resnet_spec([4, 4, 4, 4], shape=shape, classes=3))
    seen = {}
    model.stage4.register_forward_hook(lambda _m, _i, out: seen.update(shape=tuple(out.shape)))
    assert model(torch.zeros(2, *shape)).shape == (2, 3)
    assert seen["shape"][2:] == final  # 'same' padding: 7×9 → 4×5 → 2×3 → 1×2


def test_block_structure_and_run_order() -> None:
    model = build_model(resnet_spec([8, 16], [2, 1], activation="silu", dropout=0.2))
    block = model.stage2.block1
    assert [name for name, _ in block.named_children()] == ["conv1", "bn1", "act1", "conv2", "bn2", "shortcut", "act2"]
    assert block.conv1.stride == (2, 2) and block.shortcut.conv.stride == (2, 2)
    assert block.shortcut.conv.kernel_size == (1, 1) and isinstance(block.shortcut.bn, nn.BatchNorm2d)
    assert isinstance(model.stage1.block2.shortcut, nn.Identity) and isinstance(block.act1, nn.SiLU)
    ran: list[str] = []
    for name, module in model.named_modules():
        if not list(module.children()):
            module.register_forward_hook(lambda m, i, o, name=name: ran.append(name))
    model(torch.zeros(2, 3, 8, 8))
    assert ran == [name for name, m in model.named_modules() if not list(m.children())]  # registered as run
    assert ran[-3:] == ["flatten", "drop", "classifier"]
    for i, name in enumerate(ran):  # every convolution is followed by its batch norm
        if isinstance(model.get_submodule(name), nn.Conv2d):
            assert isinstance(model.get_submodule(ran[i + 1]), nn.BatchNorm2d)
    probed = list(EfficiencyProbe(model).modules)
    assert "classifier" not in probed and "stage2.block1.shortcut.conv" in probed


def test_residual_connection_adds_the_input() -> None:
    model = build_model(resnet_spec([4], stem=4, batch_norm=False), seed=0)
    block = model.stage1.block1
    for conv in (block.conv1, block.conv2):
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    x = torch.rand(2, 4, 8, 8)
    assert torch.equal(block(x), torch.relu(x))  # zero convolutions leave act(x + 0)


def test_seeded_rebuild_is_exact() -> None:
    a, b = build_model(RESNET18, seed=7), build_model(RESNET18, seed=7)
    assert a.spec == RESNET18 and "stage2.block1.shortcut.conv.weight" in a.state_dict()
    for (name, x), (name_b, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert name == name_b and torch.equal(x, y)
    assert not torch.equal(a.stem.conv.weight, build_model(RESNET18, seed=8).stem.conv.weight)


@pytest.mark.parametrize(
    ("change", "message"),
    [({"widths": [8, 16]}, "resnet spec: widths and blocks must have one entry per n_stages each, got 2 and 1"),
     ({"blocks": [1, 1, 1, 1, 1], "widths": [8] * 5}, "blocks must be a list of 1 to 4 values"),
     ({"widths": [1024]}, r"widths: must be an integer in \[4, 512\]"),
     ({"stem_width": 2}, r"stem_width: must be an integer in \[4, 128\]"),
     ({"activation": "tanh"}, "activation: must be one of 'relu', 'elu', 'silu'"),
     ({"num_classes": 10**9}, "num_classes must be an integer in")],
)
def test_bad_resnet_spec_is_refused(change: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        build_model({**resnet_spec([8]), **change})


def test_sampling_draws_one_width_and_block_count_per_stage() -> None:
    family = get_family("resnet")
    space = family.narrow({"n_stages": {"low": 2, "high": 3}, "blocks": 1, "blocks_0": [2], "width_2": 16,
                           "batch_norm": True})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    stages = set()
    for _ in range(12):
        trial = study.ask()
        spec = family.sample(trial, space, (1, 8, 8), 10)
        n = trial.params["n_stages"]
        stages.add(n)
        assert spec["widths"][:2] == [trial.params["width_0"], trial.params["width_1"]]
        assert spec["blocks"] == [2] + [1] * (n - 1) and len(spec["widths"]) == n
        assert spec["widths"][2:] == [16] * (n - 2) and spec["batch_norm"] is True
        assert "width_2" not in trial.params and "blocks_1" not in trial.params
        build_model(spec)
        study.tell(trial, 0.0)
    assert stages == {2, 3}


def test_describe_names_stages_as_width_x_blocks() -> None:
    assert describe_spec(RESNET18) == "resnet stem 64, 64x2-128x2-256x2-512x2 relu, batch norm"
    spec = resnet_spec([4, 8], stem=4, activation="elu", batch_norm=False, dropout=0.1)
    assert describe_spec(spec) == "resnet stem 4, 4x1-8x1 elu, dropout 0.10"


@pytest.mark.slow
def test_digits_resnet_study_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the shipped file's runs/ and artifacts/ land here
    config = load_study_file(STUDIES / "digits-resnet.toml").with_overrides(n_trials=2, device="cpu")
    summary = run_study(config, progress_bar=False)
    assert summary.counts.get("COMPLETE") == 2 and summary.counts.get("FAIL", 0) == 0
    for trial in complete_trials(optuna.load_study(study_name="digits-resnet", storage=config.study.storage)):
        spec = trial.user_attrs["architecture"]
        assert spec["family"] == "resnet" and spec["input_shape"] == [1, 8, 8] and spec["blocks"][0] == 1
        assert trial.user_attrs["n_params"] == count_parameters(build_model(spec))
        layers = trial.user_attrs["layer_efficiencies"]
        assert "stem.conv" in layers and "stage1.block1.conv2" in layers and "classifier" not in layers
        assert re.fullmatch(r"resnet stem \d+, [\dx-]+ (relu|silu).*", describe_spec(spec))
