"""The LeNet families: LeNet-300-100-style fully connected networks and LeNet-5-style convolutional ones.

Both build hidden blocks as Linear/Conv → [BatchNorm] → activation → [Dropout] (→ MaxPool for
convolutions), named by position (fc1, bn1, act1, drop1, ...), and end with one Linear ``classifier``, the
last layer in module order and the last to run.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from torch import nn

from aiq_search.families._base import Family
from aiq_search.families._choice import Choice
from aiq_search.families._registry import register_family

__all__ = ["LeNet5", "LeNet300", "lenet5_geometry"]

_SHARED = {
    "batch_norm": Choice.categorical((False, True)),
    "dropout": Choice.float(0.0, 0.7),
}


def _hidden_block(index: int, layer: nn.Module, norm: nn.Module | None, act: nn.Module,
                  dropout: float) -> list[tuple[str, nn.Module]]:
    """Layer → [norm] → activation → [dropout], named by position so efficiency reports read fc1, conv2..."""
    kind = "fc" if isinstance(layer, nn.Linear) else "conv"
    block: list[tuple[str, nn.Module]] = [(f"{kind}{index}", layer)]
    if norm is not None:
        block.append((f"bn{index}", norm))
    block.append((f"act{index}", act))
    if dropout > 0:
        block.append((f"drop{index}", nn.Dropout(dropout)))
    return block


def _describe(spec: Mapping[str, Any], sizes: list[int], activation: str = "") -> str:
    """``lenet5 20-50-100 elu, batch norm, dropout 0.25``"""
    parts = [" ".join(p for p in (spec["family"], "-".join(str(s) for s in sizes), activation) if p)]
    if spec.get("batch_norm"):
        parts.append("batch norm")
    if spec.get("dropout"):
        parts.append(f"dropout {spec['dropout']:.2f}")
    return ", ".join(parts)


@register_family("lenet300")
class LeNet300(Family):
    """Fully connected: flatten → 1 to 3 hidden Linear layers (ReLU), each width searched → classifier.
    Spec: ``{"widths": [300, 100], "batch_norm": false, "dropout": 0.0}`` beside the common keys."""

    space = {"n_layers": Choice.int(1, 3), "width": Choice.int(1, 2048, log=True), **_SHARED}
    per_layer = {"widths": ("width", "n_layers")}

    def build(self, spec: dict[str, Any]) -> nn.Module:
        layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
        width_in = math.prod(spec["input_shape"])
        for i, width in enumerate(spec["widths"], start=1):
            norm = nn.BatchNorm1d(width) if spec["batch_norm"] else None
            layers += _hidden_block(i, nn.Linear(width_in, width), norm, nn.ReLU(), spec["dropout"])
            width_in = width
        layers.append(("classifier", nn.Linear(width_in, spec["num_classes"])))
        return nn.Sequential(OrderedDict(layers))

    def describe(self, spec: Mapping[str, Any]) -> str:
        return _describe(spec, spec["widths"])


def lenet5_geometry(height: int, width: int) -> tuple[int, tuple[int, int]]:
    """Padding of the two 5×5 convolutions and the last convolution's kernel, so that the output is 1×1.

    Unpadded ('valid') 5×5 convolutions are used whenever the input is large enough (16×16 or more), which
    gives the classic layout for 28×28 (28 → 24 → 12 → 8 → 4 → 4×4 kernel → 1). Smaller inputs use 'same'
    padding (2) instead, e.g. 8×8 → 8 → 4 → 4 → 2 → 2×2 kernel → 1.
    """
    def remaining(side: int, padding: int) -> int:  # conv 5×5 → pool 2 → conv 5×5 → pool 2
        after_first = (side + 2 * padding - 4) // 2
        return (after_first + 2 * padding - 4) // 2

    for padding in (0, 2):
        sides = (remaining(height, padding), remaining(width, padding))
        if min(sides) >= 1:
            return padding, sides
    raise ValueError(f"lenet5 needs inputs of at least 4×4 pixels, got {height}×{width}")


@register_family("lenet5")
class LeNet5(Family):
    """Convolutional: 5×5 conv → pool → 5×5 conv → pool → conv down to 1×1 → classifier, the channels of
    each of the three convolutions searched. Spec: ``{"channels": [20, 50, 100], "activation": "elu",
    "batch_norm": false, "dropout": 0.0}`` beside the common keys."""

    space = {
        "channels": Choice.int(1, 512, log=True),
        "activation": Choice.categorical(("elu", "relu")),
        **_SHARED,
    }
    per_layer = {"channels": ("channels", 3)}

    def check(self, spec: dict[str, Any]) -> None:
        lenet5_geometry(*spec["input_shape"][1:])

    def build(self, spec: dict[str, Any]) -> nn.Module:
        in_channels, height, width = spec["input_shape"]
        padding, last_kernel = lenet5_geometry(height, width)
        act = {"elu": nn.ELU, "relu": nn.ReLU}[spec["activation"]]
        layers: list[tuple[str, nn.Module]] = []
        shapes: list[tuple[int | tuple[int, int], int]] = [(5, padding), (5, padding), (last_kernel, 0)]
        for i, (out_channels, (kernel, pad)) in enumerate(zip(spec["channels"], shapes, strict=True), start=1):
            norm = nn.BatchNorm2d(out_channels) if spec["batch_norm"] else None
            conv = nn.Conv2d(in_channels, out_channels, kernel, padding=pad)
            layers += _hidden_block(i, conv, norm, act(), spec["dropout"])
            if i < 3:
                layers.append((f"pool{i}", nn.MaxPool2d(2)))
            in_channels = out_channels
        layers += [("flatten", nn.Flatten()), ("classifier", nn.Linear(in_channels, spec["num_classes"]))]
        return nn.Sequential(OrderedDict(layers))

    def describe(self, spec: Mapping[str, Any]) -> str:
        return _describe(spec, spec["channels"], spec["activation"])
