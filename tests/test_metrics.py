"""Metrics: hand-computed cases, a brute-force reference, invariants and bad inputs."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import HealthCheck, given, settings, strategies as st
from torch import nn
from torch.nn import functional as F

from aiq_search import metrics
from aiq_search.families import build_model
from aiq_search.metrics import (
    EfficiencyProbe,
    _efficiency,
    _readout,
    _states,
    aiq,
    entropy,
    measure_efficiency,
    network_efficiency,
)


def _linear(weight: list[list[float]], bias: list[float] | None = None) -> nn.Linear:
    w = torch.tensor(weight, dtype=torch.float32)
    layer = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        layer.weight.copy_(w)
        layer.bias.copy_(torch.tensor(bias) if bias is not None else torch.zeros(w.shape[0]))
    return layer


def _probe_model(hidden: nn.Module, out_features: int) -> nn.Sequential:
    return nn.Sequential(hidden, nn.ReLU(), nn.Linear(out_features, 3))


# ------------------------------------------------------------------------------------------ formulas


@pytest.mark.parametrize(
    ("counts", "alpha", "expected"),
    [
        ([1, 1], 1.0, 1.0),
        ([2, 1, 1], 1.0, 1.5),
        ([5], 1.0, 0.0),
        ([1, 1, 1, 1, 0, 0], 1.0, 2.0),  # zeros are states never seen
        ([2, 1, 1], 2.0, -math.log2(0.25 + 0.0625 + 0.0625)),
        ([2, 1, 1], 0.0, math.log2(3)),
        ([2, 1, 1], math.inf, 1.0),
    ],
)
def test_entropy_known_values(counts: list[int], alpha: float, expected: float) -> None:
    assert entropy(counts, alpha) == pytest.approx(expected)
    assert entropy(np.array(counts), alpha) == pytest.approx(expected)
    assert entropy(torch.tensor(counts), alpha) == pytest.approx(expected)


def test_renyi_approaches_shannon() -> None:
    counts = [7, 3, 2, 1, 1]
    assert entropy(counts, 1.0 + 1e-7) == pytest.approx(entropy(counts, 1.0), abs=1e-5)


@pytest.mark.parametrize("bad", [[], [0, 0], [1, -1], [[1, 2]], [float("nan"), 1]])
def test_entropy_rejects_bad_counts(bad: list) -> None:
    with pytest.raises(ValueError):
        entropy(bad)


def test_entropy_rejects_negative_alpha() -> None:
    with pytest.raises(ValueError, match="alpha"):
        entropy([1, 1], alpha=-1)


def test_aiq_formula() -> None:
    assert aiq(1.0, 1.0) == pytest.approx(1.0)
    assert aiq(0.5, 0.9) == pytest.approx((0.5 * 0.81) ** (1 / 3))
    assert aiq(0.5, 0.9, beta=1.0) == pytest.approx((0.5 * 0.9) ** 0.5)
    assert aiq(0.0, 0.9) == 0.0


@pytest.mark.parametrize(
    ("eff", "acc", "beta", "what"),
    [(1.2, 0.5, 2.0, "network_efficiency"), (0.5, -0.1, 2.0, "accuracy"), (0.5, 0.5, 0.0, "beta"),
     (0.5, 0.5, -1.0, "beta"), (float("nan"), 0.5, 2.0, "network_efficiency")],
)
def test_aiq_rejects_out_of_range(eff: float, acc: float, beta: float, what: str) -> None:
    with pytest.raises(ValueError, match=what):
        aiq(eff, acc, beta)


def test_network_efficiency_is_geometric_mean() -> None:
    assert network_efficiency([0.25, 1.0]) == pytest.approx(0.5)
    assert network_efficiency({"a": 0.5, "b": 0.5, "c": 0.5}) == pytest.approx(0.5)
    assert network_efficiency([0.3, 0.0, 0.9]) == 0.0
    with pytest.raises(ValueError, match="at least one"):
        network_efficiency([])
    with pytest.raises(ValueError, match="layer efficiency"):
        network_efficiency([0.5, 1.5])


# ------------------------------------------------------------------------------------------ hand-computed


def test_four_inputs_two_neurons_all_states() -> None:
    model = _probe_model(_linear([[1, 0], [0, 1]]), 2)
    x = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    report = measure_efficiency(model, x)
    stats = report.layers["0"]
    assert (stats.neurons, stats.observations, stats.unique_states) == (2, 4, 4)
    assert stats.entropy_bits == pytest.approx(2.0)
    assert stats.efficiency == pytest.approx(1.0)
    assert report.network == pytest.approx(1.0)


def test_four_inputs_two_neurons_skewed() -> None:
    model = _probe_model(_linear([[1, 0], [0, 1]]), 2)
    x = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])  # p = 1/2, 1/4, 1/4
    stats = measure_efficiency(model, x).layers["0"]
    assert stats.unique_states == 3
    assert stats.entropy_bits == pytest.approx(1.5)
    assert stats.efficiency == pytest.approx(0.75)


def test_zero_is_off() -> None:
    model = _probe_model(_linear([[1.0]]), 1)
    stats = measure_efficiency(model, torch.tensor([[0.0], [0.0], [1.0], [-1.0]])).layers["0"]
    assert stats.entropy_bits == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))


def test_conv_positions_are_observations() -> None:
    conv = nn.Conv2d(1, 2, kernel_size=1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
        conv.bias.zero_()
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(2 * 2 * 2, 3))
    x = torch.tensor([[[[1.0, -1.0], [0.0, 2.0]]]])  # states per position: (1,0) (0,1) (0,0) (1,0)
    stats = measure_efficiency(model, x).layers["0"]
    assert (stats.observations, stats.unique_states) == (4, 3)
    assert stats.entropy_bits == pytest.approx(1.5)
    assert stats.efficiency == pytest.approx(0.75)


def test_layer_with_one_state_has_zero_efficiency() -> None:
    model = _probe_model(_linear([[0.0, 0.0], [0.0, 0.0]], bias=[1.0, -1.0]), 2)
    report = measure_efficiency(model, torch.randn(50, 2))
    assert report.layers["0"].unique_states == 1
    assert report.layers["0"].efficiency == 0.0
    assert report.network == 0.0


# ------------------------------------------------------------------------------------------ brute force


def _reference(model: nn.Module, x: torch.Tensor, points: dict[str, str] | None = None) -> dict[str, tuple]:
    """Python counting of bit tuples over every captured output: slow, obviously right. ``points`` maps each
    probed layer to the module its state is read at (default: every Linear/Conv but the last, at itself);
    a Linear layer's neurons are the last dimension, a convolution's dim 1."""
    modules = dict(model.named_modules())
    if points is None:
        points = {n: n for n in [n for n, m in modules.items() if n and isinstance(m, _efficiency.PROBED_TYPES)][:-1]}
    captured: dict[str, list[torch.Tensor]] = {n: [] for n in points}
    handles = [modules[at].register_forward_hook(lambda _m, _i, o, n=n: captured[n].append(o.clone()))
               for n, at in points.items()]
    with torch.no_grad():
        model.eval()(x)
    for h in handles:
        h.remove()
    return {n: _state_stats(torch.cat(captured[n]), neurons_last=isinstance(modules[n], nn.Linear)) for n in points}


def _state_stats(out: torch.Tensor, *, neurons_last: bool) -> tuple[int, int, int, float]:
    """(neurons, observations, distinct states, entropy in bits) of ``out``, by Python counting of bit tuples."""
    neurons = out.shape[-1] if neurons_last else out.shape[1]
    rows = (out if neurons_last else out.movedim(1, -1)).reshape(-1, neurons) > 0
    counts = Counter(tuple(r) for r in rows.tolist())
    total = sum(counts.values())
    h = -sum(c / total * math.log2(c / total) for c in counts.values())
    return neurons, total, len(counts), h


def _assert_matches_reference(
    model: nn.Module, x: torch.Tensor, batch_size: int, points: dict[str, str] | None = None
) -> metrics.EfficiencyReport:
    report = measure_efficiency(model, x, batch_size=batch_size)
    expected = _reference(model, x, points)
    assert list(report.layers) == list(expected)
    for name, (neurons, observations, unique, h) in expected.items():
        got = report.layers[name]
        assert (got.neurons, got.observations, got.unique_states) == (neurons, observations, unique)
        assert got.entropy_bits == pytest.approx(h, rel=1e-9, abs=1e-9)
        assert got.efficiency == pytest.approx(h / neurons, rel=1e-9, abs=1e-9)
        assert got.read_at == (points or {}).get(name, name)
    return report


@pytest.fixture(params=["auto", "dense", "sparse"])
def counting_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test through each counting strategy, with merges forced often."""
    monkeypatch.setattr(_states, "_MERGE_MIN_BYTES", 56)  # merge every few batches
    if request.param == "dense":
        monkeypatch.setattr(_states, "_DENSE_ALWAYS_BITS", _states._DENSE_MAX_BITS)
    elif request.param == "sparse":
        monkeypatch.setattr(_states, "_DENSE_ALWAYS_BITS", 0)
        monkeypatch.setattr(_states, "_DENSE_MAX_BITS", 0)
    return request.param


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    widths=st.lists(st.sampled_from([1, 2, 3, 7, 13, 21, 40, 63, 64, 65, 130]), min_size=1, max_size=3),
    n=st.integers(1, 60),
    batch_size=st.integers(1, 64),
    seed=st.integers(0, 2**31 - 1),
)
def test_mlp_matches_brute_force(counting_path: str, widths: list[int], n: int, batch_size: int, seed: int) -> None:
    torch.manual_seed(seed)
    dims = [5, *widths]
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(dims):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(dims[-1], 4))
    _assert_matches_reference(model, torch.randn(n, 5), batch_size)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    channels=st.tuples(st.sampled_from([1, 3, 14, 24, 70]), st.sampled_from([2, 9, 66])),
    n=st.integers(1, 6),
    batch_size=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
)
def test_cnn_matches_brute_force(
    counting_path: str, channels: tuple[int, int], n: int, batch_size: int, seed: int
) -> None:
    torch.manual_seed(seed)
    c1, c2 = channels
    model = nn.Sequential(
        nn.Conv2d(1, c1, 3), nn.ELU(), nn.MaxPool2d(2), nn.Conv2d(c1, c2, 3),
        nn.ELU(), nn.Flatten(), nn.Linear(c2, 3),
    )
    _assert_matches_reference(model, torch.randn(n, 1, 8, 8), batch_size)


def test_conv1d_and_conv3d_are_probed() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(2, 5, 3), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 6, 4), nn.ReLU(), nn.Linear(4, 2)
    )
    assert list(measure_efficiency(model, torch.randn(9, 2, 8)).layers) == ["0", "3"]
    model3 = nn.Sequential(nn.Conv3d(1, 4, 2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 27, 2))
    stats = measure_efficiency(model3, torch.randn(3, 1, 4, 4, 4)).layers["0"]
    assert (stats.neurons, stats.observations) == (4, 81)


def test_counter_switches_to_a_dense_histogram_when_batches_grow() -> None:
    torch.manual_seed(13)
    counter = metrics.StateCounter("fc", nn.Linear(3, 14))
    out = torch.randn(6000, 14)
    counter.update(out[:5])  # 20 observations: sorting is cheaper than 2**14 bins
    assert counter._dense is None
    counter.update(out[5:])  # 4 x 5,995 >= 2**14: the states so far move into the dense histogram
    assert counter._dense is not None
    expected = Counter(tuple(r) for r in (out > 0).tolist())
    assert sorted(counter.state_counts().tolist()) == sorted(expected.values())


def test_thousand_neuron_layer() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(20, 1000), nn.ReLU(), nn.Linear(1000, 10))
    _assert_matches_reference(model, torch.randn(300, 20), batch_size=64)


# ------------------------------------------------------------------------------------------ where states are read


def _randomize_norms(model: nn.Module) -> nn.Module:
    """Give every normalization statistics and affine terms that move signs (fresh ones barely do)."""
    with torch.no_grad():
        for m in model.modules():
            for name in ("weight", "bias", "running_mean"):
                t = getattr(m, name, None) if isinstance(m, _readout.NORM_TYPES) else None
                if t is not None:
                    t.copy_(torch.randn_like(t) + (0.5 if name == "weight" else 0.0))
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("width", [7, 70])
def test_linear_neurons_are_the_last_dimension(counting_path: str, width: int) -> None:
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(5, width), nn.ReLU(), nn.Linear(width, 3))
    x = torch.randn(12, 4, 5)  # 12 sequences of 4 tokens: 48 observations of `width` neurons
    stats = _assert_matches_reference(model, x, batch_size=5).layers["0"]
    assert (stats.neurons, stats.observations) == (width, 48)


class HeadFirst(nn.Module):
    """Registers its classifier before its features: only the order in which layers run tells them apart."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(6, 3)
        self.features = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def test_classifier_is_the_last_layer_to_run() -> None:
    torch.manual_seed(7)
    model, x = HeadFirst(), torch.randn(40, 4)
    points = {"features.0": "features.0", "features.2": "features.2"}
    _assert_matches_reference(model, x, batch_size=7, points=points)
    with EfficiencyProbe(model) as probe, torch.no_grad():  # the first batch counts as well
        for chunk in x.split(7):
            model(chunk)
    assert list(probe.modules) == list(points)
    assert probe.report().layers == measure_efficiency(model, x).layers


class TinyTransformer(nn.Module):
    """Self-attention (whose out_proj nn.MultiheadAttention uses functionally), then a token MLP
    Linear -> LayerNorm -> GELU -> Linear, mean-pooled into a classifier."""

    def __init__(self, d: int = 8, hidden: int = 20) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.fc1, self.norm, self.act = nn.Linear(d, hidden), nn.LayerNorm(hidden), nn.GELU()
        self.fc2 = nn.Linear(hidden, d)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(d, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x, x, x, need_weights=False)[0]
        x = x + self.drop(self.fc2(self.drop(self.act(self.norm(self.fc1(x))))))
        return self.head(x.mean(1))


def test_layer_that_never_runs_is_skipped_and_tokens_read_after_layer_norm() -> None:
    torch.manual_seed(8)
    model = _randomize_norms(TinyTransformer())
    x = torch.randn(10, 5, 8)
    report = _assert_matches_reference(model, x, batch_size=3, points={"fc1": "norm", "fc2": "fc2"})
    assert report.skipped == ("attn.out_proj",)
    assert report.layers["fc1"].observations == 50
    with pytest.raises(ValueError, match="no probed layer ran"):
        measure_efficiency(model, x, layers=["attn.out_proj"])


def _conv_net(channels: int, *block: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(1, channels, 3), *block, nn.Conv2d(channels, 5, 3), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3))


@pytest.mark.parametrize("channels", [3, 14, 70])
def test_conv_then_batch_norm_is_read_after_the_norm(counting_path: str, channels: int) -> None:
    torch.manual_seed(9)
    model = _randomize_norms(_conv_net(channels, nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.Dropout(0.2)))
    _assert_matches_reference(model, torch.randn(5, 1, 8, 8), batch_size=2, points={"0": "1", "4": "4"})


@pytest.mark.parametrize("inplace", [False, True])
def test_conv_then_relu_then_batch_norm_is_read_at_the_conv(inplace: bool) -> None:
    torch.manual_seed(10)
    model = _randomize_norms(_conv_net(6, nn.ReLU(inplace=inplace), nn.BatchNorm2d(6)))
    _assert_matches_reference(model, torch.randn(5, 1, 8, 8), batch_size=2, points={"0": "0", "3": "3"})


class Functional(nn.Module):
    """Normalizes its input, and applies its activations functionally: states are read at the layers."""

    def __init__(self) -> None:
        super().__init__()
        self.norm, self.fc1, self.fc2, self.out = nn.BatchNorm1d(4), nn.Linear(4, 9), nn.Linear(9, 9), nn.Linear(9, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.fc2(F.relu(self.fc1(self.norm(x))))))


def test_functional_activation_is_read_at_the_layer() -> None:
    torch.manual_seed(11)
    model = _randomize_norms(Functional())
    _assert_matches_reference(model, torch.randn(30, 4), batch_size=8, points={"fc1": "fc1", "fc2": "fc2"})


def _residual_sums(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """What each torchvision BasicBlock's second ReLU receives, ``bn2(conv2(.)) + shortcut``, summed here from
    the block's input, its bn2 output and its downsample output: keyed by the block's conv2."""
    parts: dict[str, dict[str, list[torch.Tensor]]] = {}
    handles = []
    for name, block in model.named_modules():
        if isinstance(block, torchvision.models.resnet.BasicBlock):
            got = parts.setdefault(f"{name}.conv2", {"x": [], "bn2": [], "shortcut": []})
            handles.append(block.register_forward_pre_hook(lambda _m, a, g=got: g["x"].append(a[0].clone())))
            handles.append(block.bn2.register_forward_hook(lambda _m, _a, o, g=got: g["bn2"].append(o.clone())))
            if block.downsample is not None:
                handles.append(block.downsample.register_forward_hook(
                    lambda _m, _a, o, g=got: g["shortcut"].append(o.clone())))
    with torch.no_grad():
        model.eval()(x)
    for h in handles:
        h.remove()
    return {n: torch.cat(g["bn2"]) + torch.cat(g["shortcut"] or g["x"]) for n, g in parts.items()}


def test_resnet_reads_every_conv_after_its_batch_norm_and_past_the_residual_add() -> None:
    """A block's last conv is read at what its ReLU receives, bn2 output + shortcut (torchvision adds in place,
    into bn2's output); every other conv after its batch norm."""
    torch.manual_seed(12)
    model = _randomize_norms(torchvision.models.resnet18(num_classes=3))
    x = torch.randn(2, 3, 32, 32)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    summed = _residual_sums(model, x)
    points = {n: n.replace("conv", "bn").replace("downsample.0", "downsample.1") for n in convs if n not in summed}
    expected = {**_reference(model, x, points), **{n: _state_stats(s, neurons_last=False) for n, s in summed.items()}}
    report = measure_efficiency(model, x, batch_size=1)
    assert list(report.layers) == convs and "fc" not in report.layers and not report.skipped
    for name, (neurons, observations, unique, h) in expected.items():
        got = report.layers[name]
        assert (got.neurons, got.observations, got.unique_states) == (neurons, observations, unique), name
        assert got.entropy_bits == pytest.approx(h, rel=1e-9, abs=1e-9)
        assert got.read_at == points.get(name, name.replace("conv2", "relu"))
    # read past the add, not at bn2: on these random statistics the two differ
    at_bn2 = _reference(model, x, {"layer1.0.conv2": "layer1.0.bn2"})["layer1.0.conv2"]
    assert at_bn2[2:] != expected["layer1.0.conv2"][2:]


class Residual(nn.Module):
    """A residual block as this project's family writes it: a new tensor from the add, its own activation
    module, the shortcut on the right; and a second add whose left operand is not a layer's output."""

    def __init__(self, norm: bool) -> None:
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(5, 7), nn.Linear(7, 7), nn.Linear(7, 2)
        self.bn = nn.BatchNorm1d(7) if norm else nn.Identity()
        self.act1, self.act2 = nn.ReLU(), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.fc1(x))
        h = self.act2(self.bn(self.fc2(h)) + h)
        return self.out(torch.ones_like(h) + h)


@pytest.mark.parametrize("norm", [True, False])
def test_a_layer_before_a_residual_add_is_read_at_its_activations_input(counting_path: str, norm: bool) -> None:
    torch.manual_seed(13)
    model = _randomize_norms(Residual(norm)).eval()
    x = torch.randn(40, 5)
    with torch.no_grad():
        h = model.act1(model.fc1(x))
        summed = model.bn(model.fc2(h)) + h
    report = measure_efficiency(model, x, batch_size=16)
    assert list(report.layers) == ["fc1", "fc2"] and report.layers["fc2"].read_at == "act2"
    assert report.layers["fc1"].read_at == "fc1"
    got = report.layers["fc2"]
    neurons, observations, unique, h_bits = _state_stats(summed, neurons_last=True)
    assert (got.neurons, got.observations, got.unique_states) == (neurons, observations, unique)
    assert got.entropy_bits == pytest.approx(h_bits, rel=1e-9, abs=1e-9)
    # the probe in a caller's own loop reads the same, pass after pass
    with EfficiencyProbe(model) as probe, torch.inference_mode():
        for chunk in x.split(16):
            model(chunk)
    assert probe.report().layers == report.layers


def test_project_families_are_read_after_batch_norm() -> None:
    spec = {"family": "lenet5", "input_shape": [1, 12, 12], "num_classes": 3, "channels": [4, 5, 6],
            "activation": "relu", "batch_norm": True, "dropout": 0.1}
    model = _randomize_norms(build_model(spec, seed=0))
    points = {"conv1": "bn1", "conv2": "bn2", "conv3": "bn3"}
    _assert_matches_reference(model, torch.randn(6, 1, 12, 12), batch_size=4, points=points)


def test_unbatched_image_is_refused() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(-3), nn.Linear(4, 3))
    with EfficiencyProbe(model) as probe, torch.no_grad():
        with pytest.raises(ValueError, match=r"layer '0' \(Conv2d\).*\(N, C, H, W\)"):
            model(torch.randn(1, 8, 8))
        model(torch.randn(2, 1, 8, 8))
    assert probe.report().layers["0"].neurons == 4


# ------------------------------------------------------------------------------------------ invariants


def test_neuron_order_does_not_matter() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 30), nn.ReLU(), nn.Linear(30, 3))
    x = torch.randn(200, 6)
    before = measure_efficiency(model, x).layers["0"]
    perm = torch.randperm(30)
    with torch.no_grad():
        model[0].weight.copy_(model[0].weight[perm])
        model[0].bias.copy_(model[0].bias[perm])
    after = measure_efficiency(model, x).layers["0"]
    assert after.unique_states == before.unique_states
    assert after.entropy_bits == pytest.approx(before.entropy_bits, abs=1e-12)


def test_duplicating_the_data_leaves_efficiency_unchanged() -> None:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 36, 5), nn.ReLU(),
                          nn.Linear(5, 2))
    x = torch.randn(40, 1, 8, 8)
    once = measure_efficiency(model, x)
    twice = measure_efficiency(model, torch.cat([x, x, x]))
    for name in once.layers:
        assert twice.layers[name].observations == 3 * once.layers[name].observations
        assert twice.layers[name].efficiency == pytest.approx(once.layers[name].efficiency, abs=1e-12)
    assert twice.network == pytest.approx(once.network, abs=1e-12)


@settings(max_examples=20, deadline=None)
@given(width=st.integers(1, 80), n=st.integers(1, 100), seed=st.integers(0, 2**31 - 1))
def test_efficiency_within_unit_interval(width: int, n: int, seed: int) -> None:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 2))
    report = measure_efficiency(model, torch.randn(n, 4) * 5)
    assert 0.0 <= report.layers["0"].efficiency <= 1.0
    assert 0.0 <= report.network <= 1.0


# ------------------------------------------------------------------------------------------ API behaviour


def test_model_left_as_found_and_dataloader_batches() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2))
    model.train()
    x, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=10)
    from_loader = measure_efficiency(model, loader)
    from_tensor = measure_efficiency(model, x, batch_size=7)
    assert from_loader.layers["0"] == from_tensor.layers["0"]
    assert all(m.training for m in model.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_layers_by_name_and_type_in_model_order() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2))
    x = torch.randn(10, 3)
    assert list(measure_efficiency(model, x, layers=["2", "0"]).layers) == ["0", "2"]
    assert list(measure_efficiency(model, x, layers=nn.Linear).layers) == ["0", "2", "4"]
    assert list(measure_efficiency(model, x, layers=[nn.ReLU]).layers) == ["1", "3"]


def test_probe_counts_during_callers_own_loop() -> None:
    torch.manual_seed(5)
    model = _randomize_norms(nn.Sequential(nn.Linear(4, 9), nn.BatchNorm1d(9), nn.ReLU(), nn.Linear(9, 3))).eval()
    x = torch.randn(90, 4)
    with EfficiencyProbe(model) as probe, torch.inference_mode():  # as aiq_search.training._trainer.evaluate does
        for chunk in x.split(16):
            model(chunk).argmax(1)
    assert probe.report().layers == measure_efficiency(model, x).layers
    expected = _reference(model, x, {"0": "1"})["0"]
    got = probe.report().layers["0"]
    assert (got.read_at, got.unique_states, got.entropy_bits) == ("1", expected[2], pytest.approx(expected[3]))
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    probe.reset()
    with probe, torch.no_grad():  # entered again: already traced, still read after the norm
        model(x[:10])
        model(x[10:30])
    assert probe.report().layers["0"].observations == 30
    assert probe.report().layers["0"].read_at == "1"


def test_report_to_dict_is_plain() -> None:
    model = _probe_model(_linear([[1, 0], [0, 1]]), 2)
    d = measure_efficiency(model, torch.randn(8, 2)).to_dict()
    assert set(d) == {"network", "layers", "skipped"} and d["skipped"] == []
    assert set(d["layers"]["0"]) == {"neurons", "observations", "unique_states", "entropy_bits", "efficiency",
                                     "read_at"}


# ------------------------------------------------------------------------------------------ bad input


def test_empty_inputs_are_rejected() -> None:
    model = _probe_model(_linear([[1, 0], [0, 1]]), 2)
    with pytest.raises(ValueError, match="empty"):
        measure_efficiency(model, torch.empty(0, 2))
    with pytest.raises(ValueError, match="no samples"):
        measure_efficiency(model, [])


def test_unknown_layer_name_is_rejected() -> None:
    model = _probe_model(_linear([[1, 0], [0, 1]]), 2)
    with pytest.raises(ValueError, match="no module named 'fc9'"):
        measure_efficiency(model, torch.randn(3, 2), layers=["fc9"])
    with pytest.raises(ValueError, match="Conv2d"):
        measure_efficiency(model, torch.randn(3, 2), layers=nn.Conv2d)


def test_model_without_hidden_layers_is_rejected() -> None:
    with pytest.raises(ValueError, match="no hidden"):
        EfficiencyProbe(nn.Sequential(nn.Linear(3, 2)))


def test_nan_activations_are_rejected() -> None:
    model = _probe_model(_linear([[1, 0], [0, 1]]), 2)
    x = torch.randn(20, 2)
    x[7, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        measure_efficiency(model, x, batch_size=4)


def test_bad_batch_size_is_rejected() -> None:
    model = _probe_model(_linear([[1, 0], [0, 1]]), 2)
    with pytest.raises(ValueError, match="batch_size"):
        measure_efficiency(model, torch.randn(3, 2), batch_size=0)
