from ._config import (
    TrainConfig as TrainConfig,
)
from ._trainer import (
    DivergenceError as DivergenceError,
)
from ._trainer import (
    EpochReport as EpochReport,
)
from ._trainer import (
    TrainResult as TrainResult,
)
from ._trainer import (
    evaluate as evaluate,
)
from ._trainer import (
    resolve_device as resolve_device,
)
from ._trainer import (
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
