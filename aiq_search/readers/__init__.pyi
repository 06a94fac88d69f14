from ._dashboard import (
    FIGURE_VERSION as FIGURE_VERSION,
)
from ._dashboard import (
    PARETO_FIGURE_ID as PARETO_FIGURE_ID,
)
from ._dashboard import (
    open_dashboard as open_dashboard,
)
from ._dashboard import (
    publish_figures as publish_figures,
)
from ._dashboard import (
    serve as serve,
)
from ._dashboard import (
    stored_figure as stored_figure,
)
from ._plots import (
    count_label as count_label,
)
from ._plots import (
    count_ticks as count_ticks,
)
from ._plots import (
    pareto_figure as pareto_figure,
)
from ._plots import (
    report_figures as report_figures,
)
from ._report import (
    write_report as write_report,
)
from ._status import (
    StudyStatus as StudyStatus,
)
from ._status import (
    TrialRow as TrialRow,
)
from ._status import (
    best_rows as best_rows,
)
from ._status import (
    study_status as study_status,
)
from ._webapp import (
    OUTAGE_REASON as OUTAGE_REASON,
)
from ._webapp import (
    DashboardGuard as DashboardGuard,
)
from ._webapp import (
    DashboardServer as DashboardServer,
)
from ._webapp import (
    bind as bind,
)

__all__ = [
    "FIGURE_VERSION",
    "OUTAGE_REASON",
    "PARETO_FIGURE_ID",
    "DashboardGuard",
    "DashboardServer",
    "StudyStatus",
    "TrialRow",
    "best_rows",
    "bind",
    "count_label",
    "count_ticks",
    "open_dashboard",
    "pareto_figure",
    "publish_figures",
    "report_figures",
    "serve",
    "stored_figure",
    "study_status",
    "write_report",
]
