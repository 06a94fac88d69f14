from ._config import (
    DEFAULT_METRICS as DEFAULT_METRICS,
)
from ._config import (
    EVAL_SPLITS as EVAL_SPLITS,
)
from ._config import (
    EvalSplit as EvalSplit,
)
from ._config import (
    MetricsConfig as MetricsConfig,
)
from ._efficiency import (
    EfficiencyProbe as EfficiencyProbe,
)
from ._efficiency import (
    EfficiencyReport as EfficiencyReport,
)
from ._efficiency import (
    LayerStats as LayerStats,
)
from ._efficiency import (
    aiq as aiq,
)
from ._efficiency import (
    entropy as entropy,
)
from ._efficiency import (
    measure_efficiency as measure_efficiency,
)
from ._efficiency import (
    model_device as model_device,
)
from ._efficiency import (
    network_efficiency as network_efficiency,
)
from ._readout import (
    Readout as Readout,
)
from ._states import (
    StateCounter as StateCounter,
)

__all__ = [
    "DEFAULT_METRICS",
    "EVAL_SPLITS",
    "EfficiencyProbe",
    "EfficiencyReport",
    "EvalSplit",
    "LayerStats",
    "MetricsConfig",
    "Readout",
    "StateCounter",
    "aiq",
    "entropy",
    "measure_efficiency",
    "model_device",
    "network_efficiency",
]
