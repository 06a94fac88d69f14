"""A family of your own for aiq-search: small convolutional networks, searched by a study file that names
this module's ``tiny_convnet`` by its import path, ``tiny_convnet:tiny_convnet``.

Nothing in aiq-search is edited: the folder holding this file goes on PYTHONPATH (or the module goes into
an installed package) wherever the study runs and its models are rebuilt (export, evaluate, dashboard).

A network is 1 to 3 blocks of conv k×k ('same') → [BatchNorm] → ReLU → 2×2 max pool (while the map is
at least 2×2), then global average pooling → [dropout] → a Linear classifier, which runs last.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from torch import nn

from aiq_search import Choice, Family


class TinyConvNet(Family):
    """The space is declared once, here; a study file may narrow it (``channels = {low = 4, high = 16}``),
    restrict it (``kernel = [3]``), or fix it per layer (``channels_0 = 8``)."""

    space = {
        "n_convs": Choice.int(1, 3),
        "channels": Choice.int(2, 64, log=True),
        "kernel": Choice.categorical((3, 5)),
        "batch_norm": Choice.categorical((False, True)),
        "dropout": Choice.float(0.0, 0.5),
    }
    # the spec key "channels" holds one value per convolution, as many as n_convs (trial params channels_0..)
    per_layer = {"channels": ("channels", "n_convs")}
    max_classes = 1000

    def build(self, spec: dict[str, Any]) -> nn.Module:
        in_channels, height, width = spec["input_shape"]
        layers: list[tuple[str, nn.Module]] = []
        for i, channels in enumerate(spec["channels"], start=1):
            conv = nn.Conv2d(in_channels, channels, spec["kernel"], padding=spec["kernel"] // 2)  # 'same'
            layers.append((f"conv{i}", conv))
            if spec["batch_norm"]:
                layers.append((f"bn{i}", nn.BatchNorm2d(channels)))
            layers.append((f"act{i}", nn.ReLU()))
            if min(height, width) >= 2:
                layers.append((f"pool{i}", nn.MaxPool2d(2)))
                height, width = height // 2, width // 2
            in_channels = channels
        layers += [("gap", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten())]
        if spec["dropout"] > 0:
            layers.append(("drop", nn.Dropout(spec["dropout"])))
        layers.append(("classifier", nn.Linear(in_channels, spec["num_classes"])))
        return nn.Sequential(OrderedDict(layers))

    def describe(self, spec: Mapping[str, Any]) -> str:
        """``tiny_convnet 8-16 k3, batch norm, dropout 0.10``"""
        parts = [f"tiny_convnet {'-'.join(str(c) for c in spec['channels'])} k{spec['kernel']}"]
        if spec["batch_norm"]:
            parts.append("batch norm")
        if spec["dropout"]:
            parts.append(f"dropout {spec['dropout']:.2f}")
        return ", ".join(parts)


tiny_convnet = TinyConvNet()
