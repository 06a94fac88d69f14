from ._config import (
    DEFAULT_METRICS as DEFAULT_METRICS,
    EVAL_SPLITS as EVAL_SPLITS,
    EvalSplit as EvalSplit,
    MetricsConfig as MetricsConfig,
)
from ._efficiency import (
    EfficiencyProbe as EfficiencyProbe,
    EfficiencyReport as EfficiencyReport,
    LayerStats as LayerStats,
    aiq as aiq,
    entropy as entropy,
    measure_efficiency as measure_efficiency,
    model_device as model_device,
    network_efficiency as network_efficiency,
)
from ._readout import (
    ACTIVATION_TYPES as ACTIVATION_TYPES,
    NORM_TYPES as NORM_TYPES,
    Readout as Readout,
)
from ._states import (
    StateCounter as StateCounter,
)

__all__ = [
    "ACTIVATION_TYPES",
    "DEFAULT_METRICS",
    "EVAL_SPLITS",
    "NORM_TYPES",
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
