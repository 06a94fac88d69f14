"""A residual CNN family (``resnet``): a 3×3 stem, 1 to 4 stages of basic blocks, global average pooling, a
Linear classifier. ResNet-18 for 32×32 inputs (stem 64, stages of 2 blocks 64/128/256/512 wide, about
11.2 M parameters) and networks of a few hundred parameters both lie inside its space.

A basic block is conv3×3 → [BN] → act → conv3×3 → [BN] → (+ shortcut) → act, where the shortcut is the
identity, or a 1×1 convolution (→ [BN]) when the block changes the width or the resolution. Every stage after
the first starts with stride 2; 'same' padding everywhere, so any input size works (1×8×8 digits included:
8 → 4 → 2 → 1). Modules are registered in the order they run, the ``classifier`` last.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from aiq_search.families._base import Family
from aiq_search.families._choice import Choice
from aiq_search.families._registry import register_family

__all__ = ["BasicBlock", "ResNet"]

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU}


def _norm(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int, batch_norm: bool) -> nn.Conv2d:
    # a bias right before batch norm is cancelled by its mean: only convolutions without one carry a bias
    return nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=not batch_norm)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection (He et al. 2016, "basic block")."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, batch_norm: bool,
                 activation: type[nn.Module]) -> None:
        super().__init__()
        self.conv1 = _conv(in_channels, out_channels, 3, stride, batch_norm)
        self.bn1 = _norm(out_channels, batch_norm)
        self.act1 = activation()
        self.conv2 = _conv(out_channels, out_channels, 3, 1, batch_norm)
        self.bn2 = _norm(out_channels, batch_norm)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            projection: list[tuple[str, nn.Module]] = [
                ("conv", _conv(in_channels, out_channels, 1, stride, batch_norm))]
            if batch_norm:
                projection.append(("bn", nn.BatchNorm2d(out_channels)))
            self.shortcut = nn.Sequential(OrderedDict(projection))
        self.act2 = activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


@register_family("resnet")
class ResNet(Family):
    """Spec: ``{"stem_width": 64, "blocks": [2, 2, 2, 2], "widths": [64, 128, 256, 512],
    "activation": "relu", "batch_norm": true, "dropout": 0.0}`` beside the common keys; ``blocks`` and
    ``widths`` hold one entry per stage (trial params ``blocks_0..``, ``width_0..``)."""

    space = {
        "stem_width": Choice.int(4, 128, log=True),
        "n_stages": Choice.int(1, 4),
        "blocks": Choice.int(1, 4),
        "width": Choice.int(4, 512, log=True),
        "activation": Choice.categorical(tuple(ACTIVATIONS)),
        "batch_norm": Choice.categorical((False, True)),
        "dropout": Choice.float(0.0, 0.7),
    }
    per_layer = {"blocks": ("blocks", "n_stages"), "widths": ("width", "n_stages")}

    def build(self, spec: dict[str, Any]) -> nn.Module:
        batch_norm, activation = spec["batch_norm"], ACTIVATIONS[spec["activation"]]
        in_channels = spec["stem_width"]
        stem: list[tuple[str, nn.Module]] = [("conv", _conv(spec["input_shape"][0], in_channels, 3, 1, batch_norm))]
        if batch_norm:
            stem.append(("bn", nn.BatchNorm2d(in_channels)))
        stem.append(("act", activation()))
        layers: list[tuple[str, nn.Module]] = [("stem", nn.Sequential(OrderedDict(stem)))]
        for s, (n_blocks, width) in enumerate(zip(spec["blocks"], spec["widths"], strict=True), start=1):
            blocks = []
            for b in range(1, n_blocks + 1):
                stride = 2 if s > 1 and b == 1 else 1
                blocks.append((f"block{b}", BasicBlock(in_channels, width, stride, batch_norm, activation)))
                in_channels = width
            layers.append((f"stage{s}", nn.Sequential(OrderedDict(blocks))))
        layers += [("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten())]
        if spec["dropout"] > 0:
            layers.append(("drop", nn.Dropout(spec["dropout"])))
        layers.append(("classifier", nn.Linear(in_channels, spec["num_classes"])))
        return nn.Sequential(OrderedDict(layers))

    def describe(self, spec: Mapping[str, Any]) -> str:
        """``resnet stem 64, 64x2-128x2-256x2-512x2 relu, batch norm, dropout 0.10`` (width x blocks)."""
        stages = "-".join(f"{w}x{b}" for w, b in zip(spec["widths"], spec["blocks"], strict=True))
        parts = [f"{spec['family']} stem {spec['stem_width']}", f"{stages} {spec['activation']}"]
        if spec.get("batch_norm"):
            parts.append("batch norm")
        if spec.get("dropout"):
            parts.append(f"dropout {spec['dropout']:.2f}")
        return ", ".join(parts)
