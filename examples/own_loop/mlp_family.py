"""The architecture family the own-loop examples search: small multilayer perceptrons, named by the import
path ``mlp_family:mlp``.

Your objective builds its networks from specs of this family (`aiq_search.families.build_model`), so every
trial records a spec that ``aiq-search export`` and ``evaluate`` rebuild exactly in another process. This
folder goes on PYTHONPATH wherever they run (a script run from here has it already).

A network is Flatten → (Linear → ReLU → [Dropout]) per hidden layer → a Linear classifier, which runs last.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from torch import nn

from aiq_search import Choice, Family


class MLP(Family):
    """1 or 2 hidden layers of 4 to 256 units each (``width_0``, ``width_1``), and a dropout rate."""

    space = {
        "n_layers": Choice.int(1, 2),
        "width": Choice.int(4, 256, log=True),
        "dropout": Choice.float(0.0, 0.5),
    }
    per_layer = {"widths": ("width", "n_layers")}  # spec key "widths": one width per layer

    def build(self, spec: dict[str, Any]) -> nn.Module:
        channels, height, width = spec["input_shape"]
        features = channels * height * width
        layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
        for i, units in enumerate(spec["widths"], start=1):
            layers += [(f"fc{i}", nn.Linear(features, units)), (f"relu{i}", nn.ReLU())]
            if spec["dropout"] > 0:
                layers.append((f"drop{i}", nn.Dropout(spec["dropout"])))
            features = units
        layers.append(("classifier", nn.Linear(features, spec["num_classes"])))
        return nn.Sequential(OrderedDict(layers))

    def describe(self, spec: Mapping[str, Any]) -> str:
        """``mlp 64-16, dropout 0.10``"""
        dropout = f", dropout {spec['dropout']:.2f}" if spec["dropout"] else ""
        return f"mlp {'-'.join(str(w) for w in spec['widths'])}{dropout}"


mlp = MLP()
