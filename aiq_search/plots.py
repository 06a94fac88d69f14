"""Figures of a study's finished trials, and one self-contained HTML report of them.

Every builder takes the COMPLETE trials (``aiq_search.results.complete_trials``) and returns a plotly
Figure, so the report, the dashboard and a notebook all draw the same thing. Each point carries its trial
number in ``customdata[0]``: that is how a reader (or a test) finds which trial a point is.
"""

from __future__ import annotations

import html
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go
import plotly.io as pio
from optuna.trial import FrozenTrial

from aiq_search.results import (
    by_aiq,
    complete_trials,
    count_states,
    describe_architecture,
    pareto_front,
    require_complete_trials,
    study_settings,
)

TEMPLATE = "plotly_white"
_HOVER = (
    "trial #%{customdata[0]}<br>accuracy %{customdata[1]:.4f}<br>parameters %{customdata[2]:,}"
    "<br>network efficiency %{customdata[3]:.4f}<br>aIQ %{customdata[4]:.4f}<br>%{customdata[5]}"
    "<extra></extra>"
)


def _customdata(trial: FrozenTrial) -> list[Any]:
    attrs = trial.user_attrs
    return [
        trial.number,
        attrs["accuracy"],
        attrs["n_params"],
        attrs["network_efficiency"],
        attrs["aiq"],
        describe_architecture(attrs["architecture"]),
    ]


def _trial_points(trials: list[FrozenTrial], x: str, y: str) -> go.Scatter:
    """Every trial as a point at two of its user attributes, colored by aIQ, described on hover."""
    return go.Scatter(
        name="trials",
        x=[t.user_attrs[x] for t in trials],
        y=[t.user_attrs[y] for t in trials],
        mode="markers",
        marker=dict(
            size=9,
            color=[t.user_attrs["aiq"] for t in trials],
            colorscale="Viridis",
            colorbar=dict(title="aIQ"),
            line=dict(width=0.5, color="#333"),
        ),
        customdata=[_customdata(t) for t in trials],
        hovertemplate=_HOVER,
    )


def _styled(fig: go.Figure, title: str, xaxis: dict[str, Any], yaxis: dict[str, Any]) -> go.Figure:
    """One look for every figure: title, axes, template, legend below the plot."""
    fig.update_layout(title=title, xaxis=xaxis, yaxis=yaxis, template=TEMPLATE,
                      legend=dict(orientation="h", y=-0.2))
    return fig


def pareto_figure(trials: list[FrozenTrial], *, eval_split: str = "validation") -> go.Figure:
    """Accuracy against parameter count: where the small-and-accurate trade-off lies.

    Every trial is a point colored by aIQ; the non-dominated trials are joined by a step line (the
    region a better network would have to enter); the best-aIQ and most accurate trials are labelled.
    """
    fig = go.Figure(_trial_points(trials, "n_params", "accuracy"))
    front = pareto_front(trials)
    fig.add_trace(
        go.Scatter(
            name="Pareto front",
            x=[t.user_attrs["n_params"] for t in front],
            y=[t.user_attrs["accuracy"] for t in front],
            mode="lines+markers",
            line=dict(shape="hv", color="#d62728", width=2),
            marker=dict(size=12, symbol="circle-open", color="#d62728", line=dict(width=2)),
            customdata=[_customdata(t) for t in front],
            hovertemplate=_HOVER,
        )
    )
    if trials:
        best = by_aiq(trials)[0]
        most_accurate = min(trials, key=lambda t: (-t.user_attrs["accuracy"], t.user_attrs["n_params"], t.number))
        labels = {best.number: f"best aIQ #{best.number}"}
        labels[most_accurate.number] = (
            f"best aIQ and most accurate #{best.number}"
            if most_accurate.number == best.number
            else f"most accurate #{most_accurate.number}"
        )
        for trial in (best, most_accurate):
            fig.add_annotation(
                x=math.log10(trial.user_attrs["n_params"]),  # a log axis places annotations by log10
                y=trial.user_attrs["accuracy"],
                xref="x",
                yref="y",
                text=labels[trial.number],
                showarrow=True,
                arrowhead=2,
                ax=-40,
                ay=-30 if trial is best else 30,
            )
    return _styled(fig, "aIQ Pareto front: accuracy against parameters",
                   dict(title="trainable parameters (log scale)", type="log"), dict(title=f"accuracy ({eval_split})"))


def efficiency_figure(trials: list[FrozenTrial], *, beta: float = 2.0) -> go.Figure:
    """Network efficiency against accuracy, with the curve of equal aIQ through the best trial.

    aIQ = (e · a^β)^(1/(β+1)), so the curve e = aIQ^(β+1) / a^β shows what efficiency another accuracy
    would need to tie the best trial.
    """
    fig = go.Figure(_trial_points(trials, "accuracy", "network_efficiency"))
    if trials:
        best = by_aiq(trials)[0].user_attrs["aiq"]
        low = min(t.user_attrs["accuracy"] for t in trials)
        steps = 50
        accuracies = [low + (1.0 - low) * i / steps for i in range(steps + 1)]
        accuracies = [a for a in accuracies if a > 0]
        curve = [best ** (beta + 1) / a**beta for a in accuracies]
        kept = [(a, e) for a, e in zip(accuracies, curve) if e <= 1.0]
        fig.add_trace(
            go.Scatter(
                name=f"aIQ = {best:.4f} (best)",
                x=[a for a, _ in kept],
                y=[e for _, e in kept],
                mode="lines",
                line=dict(dash="dash", color="#888"),
                hoverinfo="skip",
            )
        )
    return _styled(fig, "Network efficiency against accuracy", dict(title="accuracy"),
                   dict(title="network efficiency"))


def layer_efficiency_figure(trials: list[FrozenTrial], *, top: int = 5) -> go.Figure:
    """Per-layer efficiency of the best-aIQ trials: a low bar is a layer whose neurons are mostly wasted."""
    fig = go.Figure()
    for trial in by_aiq(trials)[:top]:
        layers = trial.user_attrs["layer_efficiencies"]
        fig.add_trace(
            go.Bar(
                name=f"#{trial.number} (aIQ {trial.user_attrs['aiq']:.3f})",
                x=list(layers),
                y=list(layers.values()),
                customdata=[[trial.number, describe_architecture(trial.user_attrs["architecture"])]] * len(layers),
                hovertemplate="trial #%{customdata[0]} %{x}: efficiency %{y:.4f}<br>%{customdata[1]}<extra></extra>",
            )
        )
    fig.update_layout(barmode="group")
    return _styled(fig, f"Per-layer efficiency of the top {top} trials by aIQ", dict(title="layer"),
                   dict(title="layer efficiency (bits per neuron)", range=[0, 1]))


def history_figure(trials: list[FrozenTrial]) -> go.Figure:
    """Each trial's aIQ and the best so far, by trial number: has the search stopped improving?"""
    ordered = sorted(trials, key=lambda t: t.number)
    running: list[float] = []
    for trial in ordered:
        value = trial.user_attrs["aiq"]
        running.append(max(value, running[-1]) if running else value)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            name="trial aIQ",
            x=[t.number for t in ordered],
            y=[t.user_attrs["aiq"] for t in ordered],
            mode="markers",
            marker=dict(color="#1f77b4", size=7, opacity=0.6),
            customdata=[_customdata(t) for t in ordered],
            hovertemplate=_HOVER,
        )
    )
    fig.add_trace(
        go.Scatter(
            name="best aIQ so far",
            x=[t.number for t in ordered],
            y=running,
            mode="lines",
            line=dict(shape="hv", color="#d62728", width=2),
        )
    )
    return _styled(fig, "Best aIQ so far", dict(title="trial number"), dict(title="aIQ"))


def report_figures(study: optuna.Study) -> list[go.Figure]:
    """The report's four figures, in reading order."""
    settings = study_settings(study)
    trials = require_complete_trials(study)
    return [
        pareto_figure(trials, eval_split=settings.get("eval_split", "validation")),
        efficiency_figure(trials, beta=float(settings.get("beta", 2.0))),
        layer_efficiency_figure(trials),
        history_figure(trials),
    ]


def _summary(study: optuna.Study) -> str:
    settings = study_settings(study)
    trials = complete_trials(study)
    rows = [
        ("mode", settings.get("mode")),
        ("data set", f"{settings.get('dataset')} (scored on the {settings.get('eval_split')} split)"),
        ("family", settings.get("family")),
        ("β", settings.get("beta")),
        ("trials", count_states(study)),
    ]
    if trials:
        best = by_aiq(trials)[0]
        attrs = best.user_attrs
        rows.append(
            (
                "best aIQ",
                f"trial #{best.number}: aIQ {attrs['aiq']:.4f}, accuracy {attrs['accuracy']:.4f}, "
                f"test accuracy {attrs['test_accuracy']:.4f}, {attrs['n_params']:,} parameters, "
                f"network efficiency {attrs['network_efficiency']:.4f} — "
                f"{describe_architecture(attrs['architecture'])}",
            )
        )
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def write_report(study: optuna.Study, path: str | Path) -> Path:
    """Write one HTML page holding every figure, with plotly.js embedded so it opens with no network."""
    path = Path(path)
    divs = [
        pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0), default_height="600px")
        for i, fig in enumerate(report_figures(study))
    ]
    title = html.escape(f"aiq-search: {study.study_name}")
    written = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
th, td {{ text-align: left; padding: 0.2em 1em 0.2em 0; vertical-align: top; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>Written {written}.</p>
{_summary(study)}
{"".join(divs)}
</body>
</html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
