"""The settings of training and of scoring, each one type used by the study file, the trainer and the
readers alike. Plain pydantic, no torch: reading a study file (``status``, ``plot``, ``export``) stays fast."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["DEFAULT_METRICS", "DEVICE_PATTERN", "MetricsConfig", "TrainConfig"]

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


class MetricsConfig(BaseModel):
    """How trials are scored: the study file's ``[metrics]`` table, recorded once with the study and used by
    the trial, export, evaluate and the plots alike. ``beta`` weighs accuracy in aIQ (2 in the paper);
    ``alpha`` is the Rényi order of the entropy (1: Shannon, as in the paper); ``layers`` names the modules
    to probe (None: every hidden Linear/Conv layer, the classifier left out)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    beta: float = Field(2.0, gt=0, allow_inf_nan=False)
    alpha: float = Field(1.0, ge=0)
    layers: tuple[str, ...] | None = None

    @field_validator("layers", mode="before")
    @classmethod
    def _layers(cls, value: Any) -> Any:
        if isinstance(value, list):  # TOML arrays arrive as lists
            value = tuple(value)
        if value is not None and not value:
            raise ValueError("must name at least one module, or be left out for every hidden layer")
        return value

    def aiq(self, network_efficiency: float, accuracy: float) -> float:
        """aIQ with this study's beta (computed by `aiq_search.metrics.aiq`, the one place that does)."""
        from aiq_search.metrics import aiq

        return aiq(network_efficiency, accuracy, self.beta)


DEFAULT_METRICS = MetricsConfig()
