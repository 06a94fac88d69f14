"""One self-contained HTML page about a study: its settings, its best trials as a table, and the figures of
aiq_search.readers._plots, with plotly.js embedded so that it opens anywhere with no network."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path

import optuna
import plotly.io as pio
from optuna.trial import FrozenTrial

from aiq_search.readers._plots import report_figures
from aiq_search.study import (
    RecordedSettings,
    by_aiq,
    count_states,
    describe_trial,
    pareto_front,
    require_complete_trials,
    states_in_words,
    study_settings,
)

TOP_TRIALS = 10


def _table(header: list[str], rows: list[list[str]], *, numbers: int) -> str:
    """An HTML table whose first ``numbers`` columns are right-aligned numbers."""
    def cells(tag: str, values: list[str]) -> str:
        return "".join(f'<{tag}{" class=num" if i < numbers else ""}>{html.escape(v)}</{tag}>'
                       for i, v in enumerate(values))

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f"<table><thead><tr>{cells('th', header)}</tr></thead><tbody>{body}</tbody></table>"


def _settings_table(study: optuna.Study, settings: RecordedSettings) -> str:
    rows = [
        ["mode", settings.mode],
        ["data set", f"{settings.dataset} (scored on the {settings.eval_split} split)"],
        ["family", str(settings.config["search"]["family"])],
        ["β", str(settings.beta)],
        ["trials", states_in_words(count_states(study.get_trials(deepcopy=False)))],
    ]
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows) \
        + "</table>"


def top_trials_table(trials: list[FrozenTrial], *, top: int = TOP_TRIALS, eval_split: str = "validation") -> str:
    """The ``top`` trials by aIQ as an HTML table: the numbers behind the figures, with each architecture."""
    front = {t.number for t in pareto_front(trials)}
    rows = []
    for rank, trial in enumerate(by_aiq(trials)[:top], start=1):
        attrs = trial.user_attrs
        rows.append([str(rank), f"#{trial.number}", f"{attrs['aiq']:.4f}", f"{attrs['accuracy']:.4f}",
                     f"{attrs['test_accuracy']:.4f}", f"{attrs['n_params']:,}", f"{attrs['network_efficiency']:.4f}",
                     "yes" if trial.number in front else "", describe_trial(trial)])
    header = ["rank", "trial", "aIQ", f"accuracy ({eval_split})", "test accuracy", "parameters",
              "network efficiency", "on the Pareto front", "architecture"]
    return _table(header, rows, numbers=7)


def write_report(study: optuna.Study, path: str | Path, *, top: int = TOP_TRIALS) -> Path:
    """Write one HTML page about the study: settings, the ``top`` trials by aIQ, and every figure."""
    path = Path(path)
    settings = study_settings(study)
    trials = require_complete_trials(study)
    divs = [
        pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0), default_height="600px")
        for i, fig in enumerate(report_figures(trials, settings))
    ]
    title = html.escape(f"aiq-search: {study.study_name}")
    written = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    shown = min(top, len(trials))
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
th, td {{ text-align: left; padding: 0.2em 1em 0.2em 0; vertical-align: top; }}
thead th {{ border-bottom: 1px solid #999; }}
.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>Written {written}.</p>
{_settings_table(study, settings)}
<h2>Top {shown} of {len(trials)} complete trials by aIQ</h2>
{top_trials_table(trials, top=top, eval_split=settings.eval_split)}
{"".join(divs)}
</body>
</html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
