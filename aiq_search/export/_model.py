"""The deployed model: the normalization the trained network was fed, in front of it, so the model takes
raw inputs and the same bits reach the network as in training."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from aiq_search.export._folder import InputFormat

__all__ = ["Normalize", "RawInputModel"]


class Normalize(nn.Module):
    """(x - mean) / std per channel in float32, as load_dataset normalizes: the same bits reach the network.
    The statistics are buffers outside the state dict, so the network's weights file stays its own."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(-1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class RawInputModel(nn.Module):
    """The deployed model: raw inputs (``input_format``) → `Normalize` → the trained ``network``."""

    def __init__(self, network: nn.Module, input_format: InputFormat) -> None:
        super().__init__()
        self.input_format = input_format
        self.normalize = Normalize(input_format.mean, input_format.std)
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.normalize(x))
