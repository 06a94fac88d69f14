"""Small static charts as SVG text, with no plotting library: GitHub shows SVG in markdown, plotly needs a
browser (kaleido) for static images, and matplotlib is not a dependency. Points, lines, a log axis, a colour
scale and a legend are all the reproduction report needs."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

__all__ = ["Chart", "Series", "color_scale"]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#7f7f7f")
# viridis, sampled: low values dark blue, high values yellow
_RAMP = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))

WIDTH, HEIGHT = 640, 400
LEFT, RIGHT, TOP, BOTTOM = 70, 170, 40, 50
Scale = Callable[[float], float]  # a data value to its pixel coordinate on one axis


def color_scale(value: float, low: float, high: float) -> str:
    """``value`` on a viridis ramp from ``low`` to ``high``, as #rrggbb."""
    t = 0.0 if high <= low else min(1.0, max(0.0, (value - low) / (high - low)))
    pos = t * (len(_RAMP) - 1)
    i = min(int(pos), len(_RAMP) - 2)
    frac = pos - i
    rgb = [round(a + (b - a) * frac) for a, b in zip(_RAMP[i], _RAMP[i + 1], strict=True)]
    return "#" + "".join(f"{c:02x}" for c in rgb)


@dataclass
class Series:
    """Points (``mode="points"``) or a polyline (``"line"``); ``colors`` gives each point its own colour,
    ``labels`` writes text beside points (empty strings: none)."""

    name: str
    x: Sequence[float]
    y: Sequence[float]
    mode: str = "points"
    color: str | None = None
    colors: Sequence[str] | None = None
    labels: Sequence[str] | None = None
    size: float = 4.0
    marker: str = "circle"
    dashed: bool = False
    width: float = 1.5


@dataclass
class Chart:
    """One chart: axes with ticks, series, a legend; ``log_x`` for parameter counts, ``hline`` for a target,
    ``colorbar`` (title, low, high) when points are coloured by value."""

    title: str
    x_label: str
    y_label: str
    log_x: bool = False
    series: list[Series] = field(default_factory=list)
    hline: tuple[float, str] | None = None
    diagonal: bool = False
    colorbar: tuple[str, float, float] | None = None

    def add(self, series: Series) -> Chart:
        self.series.append(series)
        return self

    def _ranges(self) -> tuple[tuple[float, float], tuple[float, float]]:
        xs = [self._x(v) for s in self.series for v in s.x]
        ys = [v for s in self.series for v in s.y]
        if self.hline is not None:
            ys.append(self.hline[0])
        if self.diagonal:
            xs = ys = xs + ys
        if not xs:
            return (0.0, 1.0), (0.0, 1.0)

        def padded(lo: float, hi: float) -> tuple[float, float]:
            pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 0.5
            return lo - pad, hi + pad

        return padded(min(xs), max(xs)), padded(min(ys), max(ys))

    def _x(self, value: float) -> float:
        return math.log10(value) if self.log_x else value

    def to_svg(self) -> str:
        """The chart as a standalone SVG document."""
        (x0, x1), (y0, y1) = self._ranges()
        plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

        def px(v: float) -> float:
            return LEFT + (self._x(v) - x0) / (x1 - x0) * plot_w

        def py(v: float) -> float:
            return TOP + (1 - (v - y0) / (y1 - y0)) * plot_h

        out = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
               f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">'),
               f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
               (f'<text x="{WIDTH / 2 - RIGHT / 2}" y="20" text-anchor="middle" font-size="13">'
               f'{escape(self.title)}</text>'),
               f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>']
        out += self._ticks(x0, x1, y0, y1, px, py)
        out.append(f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 12}" text-anchor="middle">'
                   f'{escape(self.x_label)}</text>')
        out.append(f'<text transform="translate(16 {TOP + plot_h / 2}) rotate(-90)" text-anchor="middle">'
                   f'{escape(self.y_label)}</text>')
        if self.diagonal:
            lo, hi = max(x0, y0), min(x1, y1)
            out.append(f'<line x1="{px(lo):.1f}" y1="{py(lo):.1f}" x2="{px(hi):.1f}" y2="{py(hi):.1f}" '
                       'stroke="#999" stroke-dasharray="4 3"/>')
        if self.hline is not None:
            value, label = self.hline
            out.append(f'<line x1="{LEFT}" y1="{py(value):.1f}" x2="{LEFT + plot_w}" y2="{py(value):.1f}" '
                       'stroke="#555" stroke-dasharray="6 3"/>')
            out.append(f'<text x="{LEFT + plot_w - 4}" y="{py(value) + 14:.1f}" fill="#555" '
                       f'text-anchor="end">{escape(label)}</text>')
        for i, s in enumerate(self.series):
            out += self._series(s, s.color or PALETTE[i % len(PALETTE)], px, py)
        out += self._legend()
        out.append("</svg>")
        return "\n".join(out) + "\n"

    def _ticks(self, x0: float, x1: float, y0: float, y1: float, px: Scale, py: Scale) -> list[str]:
        out = []
        if self.log_x:
            xticks = [10.0 ** e for e in range(math.ceil(x0), math.floor(x1) + 1)]
        else:
            xticks = _nice_ticks(x0, x1)
        for v in xticks:
            x = px(v)
            label = f"{v:,.0f}" if self.log_x else _fmt(v)
            out.append(f'<line x1="{x:.1f}" y1="{HEIGHT - BOTTOM}" x2="{x:.1f}" y2="{HEIGHT - BOTTOM + 4}" '
                       'stroke="#444"/>')
            out.append(f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{label}</text>')
        for v in _nice_ticks(y0, y1):
            y = py(v)
            out.append(f'<line x1="{LEFT - 4}" y1="{y:.1f}" x2="{LEFT}" y2="{y:.1f}" stroke="#444"/>')
            out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
        return out

    def _series(self, s: Series, color: str, px: Scale, py: Scale) -> list[str]:
        points = [(px(x), py(y)) for x, y in zip(s.x, s.y, strict=True)]
        out = []
        if s.mode == "line" and points:
            dash = ' stroke-dasharray="5 3"' if s.dashed else ""
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="{s.width}"{dash}/>')
        for i, (x, y) in enumerate(points):
            fill = s.colors[i] if s.colors else color
            if s.marker == "star":
                out.append(f'<text x="{x:.1f}" y="{y + 5:.1f}" text-anchor="middle" font-size="{s.size * 4}" '
                           f'fill="{fill}" stroke="black" stroke-width="0.6">★</text>')
            elif s.marker == "diamond":
                r = s.size * 1.6
                out.append(f'<polygon points="{x:.1f},{y - r:.1f} {x + r:.1f},{y:.1f} {x:.1f},{y + r:.1f} '
                           f'{x - r:.1f},{y:.1f}" fill="{fill}" stroke="black" stroke-width="0.8"/>')
            elif s.size > 0:
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{s.size}" fill="{fill}" fill-opacity="0.85"/>')
            if s.labels and s.labels[i]:  # right of the point, or left of it in the plot's right part
                right = x < LEFT + 0.6 * (WIDTH - LEFT - RIGHT)
                out.append(f'<text x="{x + (9 if right else -9):.1f}" y="{y - 8:.1f}" '
                           f'text-anchor="{"start" if right else "end"}">{escape(s.labels[i])}</text>')
        return out

    def _legend(self) -> list[str]:
        out = []
        x = WIDTH - RIGHT + 12
        y = TOP + 6
        for i, s in enumerate(self.series):
            if not s.name:
                continue
            color = s.color or PALETTE[i % len(PALETTE)]
            if s.mode == "line":
                out.append(f'<line x1="{x}" y1="{y}" x2="{x + 18}" y2="{y}" stroke="{color}" stroke-width="2"/>')
            elif s.marker == "star":
                out.append(f'<text x="{x + 9}" y="{y + 5}" text-anchor="middle" font-size="13" fill="{color}" '
                           'stroke="black" stroke-width="0.6">★</text>')
            elif s.marker == "diamond":
                out.append(f'<polygon points="{x + 9},{y - 6} {x + 15},{y} {x + 9},{y + 6} {x + 3},{y}" '
                           f'fill="{color}" stroke="black" stroke-width="0.8"/>')
            else:
                out.append(f'<circle cx="{x + 9}" cy="{y}" r="4" fill="{color}"/>')
            out.append(f'<text x="{x + 24}" y="{y + 4}">{escape(s.name)}</text>')
            y += 18
        if self.colorbar is not None:
            title, low, high = self.colorbar
            y += 10
            out.append(f'<text x="{x}" y="{y}">{escape(title)}</text>')
            steps = 20
            for k in range(steps):
                value = high - (high - low) * k / (steps - 1)
                out.append(f'<rect x="{x}" y="{y + 6 + k * 6}" width="14" height="6" '
                           f'fill="{color_scale(value, low, high)}"/>')
            out.append(f'<text x="{x + 18}" y="{y + 14}">{_fmt(high)}</text>')
            out.append(f'<text x="{x + 18}" y="{y + 6 + steps * 6}">{_fmt(low)}</text>')
        return out


def _nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """About ``count`` round tick values between ``lo`` and ``hi``."""
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4g}"
