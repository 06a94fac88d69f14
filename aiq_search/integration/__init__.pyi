from ._lightning import (
    AiqCallback as AiqCallback,
)
from ._own_loop import (
    AiqTrial as AiqTrial,
    load_study_data as load_study_data,
    prepare_study as prepare_study,
)

__all__ = [
    "AiqCallback",
    "AiqTrial",
    "load_study_data",
    "prepare_study",
]
