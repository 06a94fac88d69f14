from ._local import (
    LaunchSummary as LaunchSummary,
)
from ._local import (
    WorkerPlan as WorkerPlan,
)
from ._local import (
    launch as launch,
)
from ._local import (
    plan_workers as plan_workers,
)
from ._ray import (
    DEFAULT_MAX_RESTARTS as DEFAULT_MAX_RESTARTS,
)
from ._ray import (
    RayLaunchSummary as RayLaunchSummary,
)
from ._ray import (
    check_cluster as check_cluster,
)
from ._ray import (
    import_ray as import_ray,
)
from ._ray import (
    launch_on_ray as launch_on_ray,
)
from ._ray import (
    progress_line as progress_line,
)
from ._ray import (
    worker_config as worker_config,
)

__all__ = [
    "DEFAULT_MAX_RESTARTS",
    "LaunchSummary",
    "RayLaunchSummary",
    "WorkerPlan",
    "check_cluster",
    "import_ray",
    "launch",
    "launch_on_ray",
    "plan_workers",
    "progress_line",
    "worker_config",
]
