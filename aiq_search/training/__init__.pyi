from ._config import (
    TrainConfig as TrainConfig,
)
from ._trainer import (
    DivergenceError as DivergenceError,
    EpochReport as EpochReport,
    TrainResult as TrainResult,
    evaluate as evaluate,
    resolve_device as resolve_device,
    train as train,
)

__all__ = [
    "DivergenceError",
    "EpochReport",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "resolve_device",
    "train",
]
