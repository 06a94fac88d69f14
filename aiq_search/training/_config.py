"""How networks are trained: the study file's ``[training]`` table and the trainer's argument, one type.
Plain pydantic, no torch: reading a study file (``status``, ``plot``, ``export``) stays fast."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["DEVICE_PATTERN", "TrainConfig"]

DEVICE_PATTERN = r"^(auto|cpu|cuda|cuda:\d+)$"


class TrainConfig(BaseModel):
    """How each network is trained: the study file's ``[training]`` table and the trainer's argument are
    this one type, with these defaults. ``momentum`` and ``nesterov`` apply to SGD only; ``patience`` is the
    number of epochs without a better validation accuracy before stopping (None: always ``max_epochs``).
    ``device`` and ``threads`` say where it runs (``threads``: torch's CPU threads; small networks train
    fastest on one). Strict: TOML has real types, so "20" for an integer is a mistake, not a number."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False)
    batch_size: int = Field(128, ge=1)
    max_epochs: int = Field(20, ge=1)
    patience: int | None = Field(5, ge=1)
    device: str = "auto"
    threads: int | None = Field(None, ge=1)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.match(DEVICE_PATTERN, value):
            raise ValueError(f"must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}")
        return value

    @model_validator(mode="after")
    def _nesterov(self) -> TrainConfig:
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs optimizer 'sgd' with momentum > 0")
        return self
DEFAULT_TRAINING = TrainConfig()
