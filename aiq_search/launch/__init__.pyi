from ._local import (
    STORAGE_ENV as STORAGE_ENV,
    LaunchSummary as LaunchSummary,
    WorkerPlan as WorkerPlan,
    launch as launch,
    plan_workers as plan_workers,
)
from ._ray import (
    DEFAULT_MAX_RESTARTS as DEFAULT_MAX_RESTARTS,
    RayLaunchSummary as RayLaunchSummary,
    check_cluster as check_cluster,
    import_ray as import_ray,
    launch_on_ray as launch_on_ray,
    progress_line as progress_line,
    worker_config as worker_config,
)

__all__ = [
    "DEFAULT_MAX_RESTARTS",
    "STORAGE_ENV",
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
