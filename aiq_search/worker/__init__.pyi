from ._interrupt import (
    allowed as allowed,
)
from ._interrupt import (
    catch_ctrl_c as catch_ctrl_c,
)
from ._interrupt import (
    check as check,
)
from ._interrupt import (
    deferred as deferred,
)
from ._loop import (
    Interrupted as Interrupted,
)
from ._loop import (
    RunSummary as RunSummary,
)
from ._loop import (
    run_study as run_study,
)
from ._loop import (
    work_on_study as work_on_study,
)
from ._quota import (
    Places as Places,
)
from ._quota import (
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
