"""One self-contained HTML page about a study: its settings, its best trials as a table, and the figures of
aiq_search.readers._plots, with plotly.js embedded so that it opens anywhere with no network."""

from __future__ import annotations

import html
import re
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
    dead_layers,
    describe_trial,
    pareto_front,
    require_complete_trials,
    states_in_words,
    study_settings,
)

TOP_TRIALS = 10


def safe_filename(name: str) -> str:
    """A study name as one file name that stays in its folder: separators, ``..`` and other characters
    outside letters, digits, ``.``, ``-`` and ``_`` become ``_``, and no leading dot is kept (a study name
    is any string, e.g. ``../../x`` or ``/etc/x``)."""
    return re.sub(r"[^\w.-]+", "_", name).lstrip(".") or "study"


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


# Trials named in the report's note on dead layers; the rest are counted.
DEAD_LISTED = 20


def dead_layers_note(trials: list[FrozenTrial]) -> str:
    """A note naming the trials whose aIQ is 0 and the dead layers (efficiency 0) that made it so: aIQ
    multiplies the layer efficiencies (a geometric mean), so one dead layer zeroes a whole network, however
    accurate. Empty when there are none."""
    zeroed = [t for t in trials if t.user_attrs.get("aiq") == 0 or dead_layers(t)]
    if not zeroed:
        return ""
    items = "".join(
        f"<li>#{t.number} (accuracy {t.user_attrs['accuracy']:.4f}, {html.escape(describe_trial(t))}): "
        + (f"dead: {html.escape(', '.join(dead_layers(t)))}" if dead_layers(t) else "no layer at efficiency 0")
        + "</li>" for t in zeroed[:DEAD_LISTED])
    more = f"<li>and {len(zeroed) - DEAD_LISTED} more</li>" if len(zeroed) > DEAD_LISTED else ""
    plural = "s" if len(zeroed) != 1 else ""
    return (f'<div class="note"><h2>{len(zeroed)} trial{plural} with aIQ 0</h2><p>A layer whose neurons show one '
            "state for every input has efficiency 0, and the network efficiency (the geometric mean of the layer "
            "efficiencies), and so aIQ, is then 0 however accurate the network is. The per-layer figure marks "
            f"such layers with a red cross.</p><ul>{items}{more}</ul></div>")


def warnings_note(trials: list[FrozenTrial], *, top: int = TOP_TRIALS) -> str:
    """The warnings that workers recorded with the ``top`` trials by aIQ (training and evaluation accuracy far
    apart, one predicted class, dead layers), one item each; empty when there are none."""
    items = "".join(f"<li>#{t.number}: {html.escape(warning)}</li>" for t in by_aiq(trials)[:top]
                    for warning in t.user_attrs.get("warnings") or [])
    return f'<div class="note"><h2>Warnings</h2><ul>{items}</ul></div>' if items else ""


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
.note {{ border-left: 4px solid #d62728; padding: 0.2em 1em; background: #fdf3f3; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>Written {written}.</p>
{_settings_table(study, settings)}
<h2>Top {shown} of {len(trials)} complete trials by aIQ</h2>
{top_trials_table(trials, top=top, eval_split=settings.eval_split)}
{warnings_note(trials, top=top)}
{dead_layers_note(trials)}
{"".join(divs)}
</body>
</html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
