"""How trials are scored: the study file's ``[metrics]`` table, one type for the trial, export, evaluate and
the plots. Plain pydantic, no torch."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["DEFAULT_METRICS", "EVAL_SPLITS", "EvalSplit", "MetricsConfig"]

# The splits a trial may be scored on; never the training split, whose accuracy rewards memorizing.
EvalSplit = Literal["validation", "test"]
EVAL_SPLITS: tuple[EvalSplit, ...] = get_args(EvalSplit)


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
        """aIQ with this study's beta (computed by `aiq_search.metrics._efficiency.aiq`, the one place that does)."""
        from aiq_search.metrics._efficiency import aiq

        return aiq(network_efficiency, accuracy, self.beta)


DEFAULT_METRICS = MetricsConfig()
