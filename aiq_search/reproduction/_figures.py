"""The report's figures (SVG, `aiq_search.reproduction._svg`), one function per finding."""

from __future__ import annotations

from aiq_search.reproduction._findings import Findings, NoiseRow, Pairing, best_by
from aiq_search.reproduction._replay import ReplayResult
from aiq_search.reproduction._svg import PALETTE, Chart, Series, color_scale

__all__ = ["efficiency_history_chart", "grid_chart", "noise_chart", "pairs_chart", "search_chart"]


def grid_chart(findings: Findings, family: str) -> Chart:
    """Finding 1: accuracy against parameters, each network coloured by aIQ, the best-aIQ and the most
    accurate network marked."""
    summary = findings.grids[family]
    trials = summary["trials"]
    low, high = min(t["aiq"] for t in trials), max(t["aiq"] for t in trials)
    split = summary["config"]["study"]["eval_split"]
    chart = Chart(f"{family}: {len(trials)} networks of the grid", "parameters (log scale)",
                  f"accuracy ({split} split)", log_x=True, colorbar=("aIQ", low, high))
    chart.add(Series("", [t["n_params"] for t in trials], [t["accuracy"] for t in trials],
                     colors=[color_scale(t["aiq"], low, high) for t in trials]))
    gap = findings.gap(family)
    best, top = gap["best_aiq"], gap["most_accurate"]
    chart.add(Series("best aIQ", [best["n_params"]], [best["accuracy"]], marker="star", size=5,
                     color=color_scale(best["aiq"], low, high), labels=[best["summary"].split(",")[0]]))
    chart.add(Series("most accurate", [top["n_params"]], [top["accuracy"]], marker="diamond", size=4,
                     color=color_scale(top["aiq"], low, high), labels=[top["summary"].split(",")[0]]))
    return chart


def pairs_chart(pairings: list[Pairing]) -> Chart:
    """Finding 2: each network's efficiency without (x) and with (y) the variant; above the diagonal means
    the variant raised it."""
    chart = Chart("network efficiency, paired by architecture", "without (base grid)", "with the variant",
                  diagonal=True)
    for i, pairing in enumerate(pairings):
        chart.add(Series(pairing.label, [b["network_efficiency"] for b, _ in pairing.pairs],
                         [v["network_efficiency"] for _, v in pairing.pairs], color=PALETTE[i % len(PALETTE)]))
    return chart


def noise_chart(rows: dict[str, list[NoiseRow]], key: str, label: str) -> Chart:
    """Finding 3: ``key`` (test accuracy or efficiency) against the fraction of random training labels,
    one line per architecture."""
    chart = Chart(f"{label} against label noise", "fraction of training labels randomized", label)
    for shape, series in rows.items():
        chart.add(Series(shape.split(",")[0], [r.noise for r in series], [r.trial[key] for r in series],
                         mode="line"))
    return chart


def efficiency_history_chart(rows: list[NoiseRow], shape: str) -> Chart:
    """Finding 3: per-epoch efficiency (validation split) of one architecture at each noise level."""
    chart = Chart(f"{shape.split(',')[0]}: efficiency per epoch", "epoch", "network efficiency (validation)")
    for row in rows:
        history = row.trial["history"]
        chart.add(Series(f"noise {row.noise:g}", [e["epoch"] for e in history],
                         [e["network_efficiency"] for e in history], mode="line", size=0))
    return chart


def search_chart(replays: list[ReplayResult], real: list[tuple[str, list[float]]], target: float,
                 grid_best: float, size: int) -> Chart:
    """Search efficiency: the best aIQ so far against trials (up to the grid's size), for every replayed
    seed and each real study."""
    chart = Chart("TPE: best aIQ so far", "trials", "best aIQ so far",
                  hline=(target, f"98% of the grid's best ({grid_best:.4f})"))
    for i, replay in enumerate(replays):
        points = [(n, v) for n, v in enumerate(replay.curve[:size], start=1) if v != float("-inf")]
        chart.add(Series("TPE replay, per seed" if i == 0 else "", [p[0] for p in points],
                         [p[1] for p in points], mode="line", size=0, color="#9ab", width=1))
    for i, (name, curve) in enumerate(real):
        chart.add(Series(name, list(range(1, len(curve) + 1)), curve, mode="line", size=3,
                         color=PALETTE[(i + 1) % len(PALETTE)], width=2.5))
    return chart


def top_shape(rows: dict[str, list[NoiseRow]]) -> str:
    """The architecture of a noise series with the best aIQ at its lowest noise level."""
    lowest = min(r.noise for series in rows.values() for r in series)
    firsts = [series[0].trial | {"shape": shape} for shape, series in rows.items() if series[0].noise == lowest]
    return best_by(firsts, "aiq")["shape"]
