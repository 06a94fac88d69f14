from ._dashboard import (
    FIGURE_VERSION as FIGURE_VERSION,
    LAYER_FIGURE_ID as LAYER_FIGURE_ID,
    PARETO_FIGURE_ID as PARETO_FIGURE_ID,
    card_figures as card_figures,
    open_dashboard as open_dashboard,
    publish_figures as publish_figures,
    serve as serve,
    stored_figure as stored_figure,
)
from ._plots import (
    count_label as count_label,
    count_ticks as count_ticks,
    pareto_figure as pareto_figure,
    report_figures as report_figures,
)
from ._report import (
    safe_filename as safe_filename,
    write_report as write_report,
)
from ._status import (
    StudyStatus as StudyStatus,
    TrialRow as TrialRow,
    best_rows as best_rows,
    study_status as study_status,
)
from ._webapp import (
    OUTAGE_REASON as OUTAGE_REASON,
    DashboardGuard as DashboardGuard,
    DashboardServer as DashboardServer,
    bind as bind,
)

__all__ = [
    "FIGURE_VERSION",
    "LAYER_FIGURE_ID",
    "OUTAGE_REASON",
    "PARETO_FIGURE_ID",
    "DashboardGuard",
    "DashboardServer",
    "StudyStatus",
    "TrialRow",
    "best_rows",
    "bind",
    "card_figures",
    "count_label",
    "count_ticks",
    "open_dashboard",
    "pareto_figure",
    "publish_figures",
    "report_figures",
    "safe_filename",
    "serve",
    "stored_figure",
    "study_status",
    "write_report",
]
