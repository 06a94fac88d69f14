from ._interrupt import (
    allowed as allowed,
    catch_ctrl_c as catch_ctrl_c,
    check as check,
    deferred as deferred,
)
from ._loop import (
    Interrupted as Interrupted,
    RunSummary as RunSummary,
    run_study as run_study,
    work_on_study as work_on_study,
)
from ._quota import (
    Places as Places,
    Surplus as Surplus,
)

__all__ = [
    "Interrupted",
    "Places",
    "RunSummary",
    "Surplus",
    "allowed",
    "catch_ctrl_c",
    "check",
    "deferred",
    "run_study",
    "work_on_study",
]
