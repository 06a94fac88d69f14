"""Figures of a study's finished trials, for the HTML report (aiq_search.readers._report) and the dashboard.

Every builder takes the COMPLETE trials (``aiq_search.study._read.complete_trials``) and returns a plotly
Figure, so the report, the dashboard and a notebook all draw the same thing. Each point carries its trial
number in ``customdata[0]``: that is how a reader (or a test) finds which trial a point is.
"""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go
from optuna.trial import FrozenTrial

from aiq_search.study import RecordedSettings, by_aiq, describe_trial, pareto_front

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
        describe_trial(trial),
    ]


def fraction_range(values: list[float]) -> list[float]:
    """An axis or colour range for fractions (accuracy, efficiency, aIQ): the values with a little room,
    never outside [0, 1] by more than a marker's half; equal values (e.g. all 0) get the whole [0, 1]
    rather than plotly's range around them (−0.5 to 1, −0.4 to 0.4)."""
    low, high = min(values, default=0.0), max(values, default=1.0)
    if high - low < 1e-9:
        return [-0.02, 1.02]
    pad = max(0.02, 0.08 * (high - low))
    return [max(-0.02, low - pad), min(1.02, high + pad)]


def _trial_points(trials: list[FrozenTrial], x: str, y: str) -> go.Scatter:
    """Every trial as a point at two of its user attributes, colored by aIQ (on a range within [0, 1]),
    described on hover."""
    scores = [t.user_attrs["aiq"] for t in trials]
    low, high = (max(0.0, end) for end in fraction_range(scores)) if trials else (0.0, 1.0)
    return go.Scatter(
        name="trials",
        x=[t.user_attrs[x] for t in trials],
        y=[t.user_attrs[y] for t in trials],
        mode="markers",
        marker=dict(
            size=9,
            color=scores,
            colorscale="Viridis",
            cmin=low,
            cmax=min(1.0, high),
            colorbar=dict(title=dict(text="aIQ", side="top"), thickness=12),
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


# Lines short enough for the dashboard's half-width card.
PARETO_NOTE = ("Red line: the Pareto front, the trials that no other trial beats on both<br>"
               "accuracy and size. aIQ scores accuracy and how well a network uses its<br>"
               "neurons, not its size: the best-aIQ trial (star) need not lie on the front.")


def count_label(n: float) -> str:
    """A parameter count as an axis label: 500, 1k, 2.5k, 10k, 1M."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:g}{suffix}"
    return f"{n:g}"


def count_ticks(low: float, high: float) -> list[float]:
    """Round parameter counts between ``low`` and ``high`` for a log axis: 1-2-5 steps, denser when the
    range is narrow, and for a range narrower than that, three numbers spread over it (two digits)."""
    exponents = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    for mantissas in ((1, 2, 5), (1, 2, 3, 5, 7), (1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [m * 10**e for e in exponents for m in mantissas if low <= m * 10**e <= high]
        if len(ticks) >= 4:
            return ticks
    if len(ticks) >= 2:
        return ticks
    return sorted({float(f"{low * (high / low) ** f:.2g}") for f in (0.2, 0.5, 0.8)})


def _marked(name: str, trial: FrozenTrial, symbol: str, color: str, size: int) -> go.Scatter:
    """One trial drawn over its point with its own marker and legend entry: labels that cover no point."""
    return go.Scatter(
        name=name,
        x=[trial.user_attrs["n_params"]],
        y=[trial.user_attrs["accuracy"]],
        mode="markers",
        marker=dict(size=size, symbol=symbol, color=color, line=dict(width=1.5, color="#222")),
        customdata=[_customdata(trial)],
        hovertemplate=_HOVER,
    )


def pareto_figure(trials: list[FrozenTrial], *, eval_split: str = "validation") -> go.Figure:
    """Accuracy against parameter count: where the small-and-accurate trade-off lies.

    Every trial is a point colored by aIQ; the non-dominated trials are joined by a step line (the
    region a better network would have to enter); the best-aIQ and most accurate trials get their own
    markers and legend entries, and a note says why the best-aIQ trial may sit off the front.
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
    xaxis: dict[str, Any] = dict(title="trainable parameters (log scale)", type="log")
    if trials:
        best = by_aiq(trials)[0]
        most_accurate = min(trials, key=lambda t: (-t.user_attrs["accuracy"], t.user_attrs["n_params"], t.number))
        if most_accurate.number == best.number:
            fig.add_trace(_marked(f"best aIQ and most accurate #{best.number}", best, "star", "#ffd700", 20))
        else:
            fig.add_trace(_marked(f"best aIQ #{best.number} (aIQ {best.user_attrs['aiq']:.3f})", best,
                                  "star", "#ffd700", 20))
            fig.add_trace(_marked(f"most accurate #{most_accurate.number} "
                                  f"(accuracy {most_accurate.user_attrs['accuracy']:.3f})",
                                  most_accurate, "diamond", "#ff7f0e", 14))
        counts = [t.user_attrs["n_params"] for t in trials]
        low, high = min(counts) / 1.25, max(counts) * 1.25  # room around the outermost points
        ticks = count_ticks(low, high)
        xaxis.update(range=[math.log10(low), math.log10(high)], tickvals=ticks,
                     ticktext=[count_label(t) for t in ticks])
        fig.add_annotation(text=PARETO_NOTE, xref="paper", yref="paper", x=0, y=1.01, xanchor="left",
                           yanchor="bottom", showarrow=False, align="left", font=dict(size=11, color="#555"))
    accuracy = dict(title=f"accuracy ({eval_split})", range=fraction_range([t.user_attrs["accuracy"] for t in trials]))
    fig = _styled(fig, "aIQ Pareto front: accuracy against parameters", xaxis, accuracy)
    fig.update_layout(margin=dict(t=125))
    return fig


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
    return _styled(fig, "Network efficiency against accuracy",
                   dict(title="accuracy", range=fraction_range([t.user_attrs["accuracy"] for t in trials])),
                   dict(title="network efficiency", range=fraction_range(
                       [t.user_attrs["network_efficiency"] for t in trials])))


# Above this many probed layers, each trial is one line over the layers rather than a group of bars.
MANY_LAYERS = 12
DEAD_COLOR = "#d62728"


def _short(name: str, chars: int | None) -> str:
    """A layer name cut to its last ``chars`` characters (its most specific part), marked with an ellipsis."""
    return name if chars is None or len(name) <= chars else "…" + name[1 - chars:]


def layer_efficiency_figure(trials: list[FrozenTrial], *, top: int = 5, label_chars: int | None = None) -> go.Figure:
    """Per-layer efficiency of the best-aIQ trials: a low bar is a layer whose neurons are mostly wasted, and a
    dead layer (efficiency 0, every input gives one state) gets a red cross: one zeroes the network's
    efficiency and aIQ (a geometric mean). Laid out for any number of layers (a MobileNet has 50): lines
    instead of bars when there are many, labels slanted with the bottom margin fitted to the longest (cut to
    ``label_chars``, full on hover), the legend above the plot."""
    fig = go.Figure()
    best = by_aiq(trials)[:top]
    names: list[str] = []
    for trial in best:
        names += [name for name in trial.user_attrs["layer_efficiencies"] if name not in names]
    many = len(names) > MANY_LAYERS
    dead_x: list[str] = []
    dead_data: list[list[Any]] = []
    for trial in best:
        layers = trial.user_attrs["layer_efficiencies"]
        data = [[trial.number, describe_trial(trial)]] * len(layers)
        common = dict(name=f"#{trial.number} (aIQ {trial.user_attrs['aiq']:.3f})", x=list(layers),
                      y=list(layers.values()), customdata=data,
                      hovertemplate="trial #%{customdata[0]} %{x}: efficiency %{y:.4f}<br>%{customdata[1]}"
                                    "<extra></extra>")
        fig.add_trace(go.Scatter(mode="lines+markers", marker=dict(size=5), **common) if many else go.Bar(**common))
        dead = [name for name, value in layers.items() if value == 0]
        dead_x += dead
        dead_data += [[trial.number, describe_trial(trial)]] * len(dead)
    if dead_x:
        fig.add_trace(go.Scatter(name="dead layer (efficiency 0)", x=dead_x, y=[0.0] * len(dead_x), mode="markers",
                                 marker=dict(symbol="x", size=11, color=DEAD_COLOR), customdata=dead_data,
                                 hovertemplate="trial #%{customdata[0]} %{x}: dead (efficiency 0)<br>"
                                               "%{customdata[1]}<extra></extra>"))
    labels = [_short(name, label_chars) for name in names]
    longest = max((len(label) for label in labels), default=0)
    slant = many or longest * len(names) > 60  # horizontal labels would overlap
    fig.update_layout(barmode="group", margin=dict(b=40 + round(longest * 6 * (0.75 if slant else 0.2)), t=90))
    fig = _styled(fig, f"Per-layer efficiency of the top {top} trials by aIQ",
                  dict(title="layer", tickangle=-45 if slant else 0, automargin=True,
                       categoryorder="array", categoryarray=names, tickfont=dict(size=10 if many else 12),
                       # shown shortened; plotly still leaves out labels where they would overlap
                       labelalias={name: label for name, label in zip(names, labels, strict=True) if name != label}),
                  dict(title="layer efficiency (bits per neuron)", range=[-0.03, 1.03]))
    fig.update_layout(legend=dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom"))
    return fig


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
    return _styled(fig, "Best aIQ so far", dict(title="trial number"),
                   dict(title="aIQ", range=fraction_range([t.user_attrs["aiq"] for t in trials])))


def report_figures(trials: list[FrozenTrial], settings: RecordedSettings) -> list[go.Figure]:
    """The report's four figures, in reading order (``settings``: the study's, `results.study_settings`)."""
    return [
        pareto_figure(trials, eval_split=settings.eval_split),
        efficiency_figure(trials, beta=settings.beta),
        layer_efficiency_figure(trials),
        history_figure(trials),
    ]
