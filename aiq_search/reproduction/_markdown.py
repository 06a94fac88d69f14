"""The reproduction report as markdown: each finding's numbers from the studies, next to the paper's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiq_search.reproduction._figures import (
    efficiency_history_chart,
    grid_chart,
    noise_chart,
    pairs_chart,
    search_chart,
    top_shape,
)
from aiq_search.reproduction._findings import (
    Findings,
    Pairing,
    best_by,
    first_reaching,
    grid_of,
)
from aiq_search.reproduction._replay import (
    expected_random_trials,
    median_reached,
    replay_tpe,
)
from aiq_search.reproduction._summaries import shape_key
from aiq_search.reproduction._svg import Chart
from aiq_search.reproduction._tables import (
    grid_line,
    name,
    noise_levels,
    pct,
    pts,
    ran_table,
    recipe,
    table,
)

__all__ = ["PAPER", "TARGET", "render"]

# The paper's own numbers (Schaub & Hotaling 2020, MNIST), shown beside ours.
PAPER = {"lenet5_gap_percent": 2.32, "lenet5_param_ratio": 30912, "noise75_test_accuracy": 0.9251}
# Search efficiency: trials until the best aIQ so far reaches this fraction of the grid's best.
TARGET = 0.98


class _Writer:
    """Collects the markdown and writes each figure beside it."""

    def __init__(self, out: Path, figures: Path) -> None:
        self.parts: list[str] = []
        self.out, self.figures = out, figures

    def add(self, text: str) -> None:
        self.parts.append(text.rstrip("\n") + "\n")

    def figure(self, chart: Chart, name: str, caption: str) -> None:
        self.figures.mkdir(parents=True, exist_ok=True)
        path = self.figures / f"{name}.svg"
        path.write_text(chart.to_svg(), encoding="utf-8")
        self.add(f"![{caption}]({path.relative_to(self.out.parent).as_posix()})\n")


def _finding1(w: _Writer, f: Findings, headline: list[list[str]]) -> None:
    w.add("## Finding 1: the best-aIQ network against the most accurate\n")
    if not f.grids:
        w.add("No exhaustive grid has finished yet.\n")
    for family, summary in sorted(f.grids.items()):
        gap = f.gap(family)
        best, top = gap["best_aiq"], gap["most_accurate"]
        size = grid_of(summary)
        w.add(f"### {family}: {len(summary['trials'])} of {size} networks ({name(summary)})\n")
        w.add(f"Recipe: {recipe(summary)}.\n")
        w.add(grid_line(summary))
        rows = [[role, t["summary"], f"{t['n_params']:,}", pct(t["accuracy"]), f"{t['network_efficiency']:.4f}",
                 f"{t['aiq']:.4f}"] for role, t in (("best aIQ", best), ("most accurate", top))]
        w.add(table(["", "network", "parameters", "test accuracy", "efficiency", "aIQ"], rows))
        relative = gap["gap"] / top["accuracy"]
        w.add(f"The best-aIQ network is **{100 * gap['gap']:.2f} points** ({pct(relative)} relative) less accurate "
              f"than the most accurate, with **{gap['ratio']:,.1f}×** fewer parameters.\n")
        paper = f"{PAPER['lenet5_gap_percent']:.2f}% less accurate, {PAPER['lenet5_param_ratio']:,}× fewer " \
                "parameters" if family == "lenet5" else "not given"
        if family == "lenet5":
            params = [t["n_params"] for t in summary["trials"]]
            w.add(f"The paper: {paper}. The gap here differs from the paper's by "
                  f"{abs(100 * gap['gap'] - PAPER['lenet5_gap_percent']):.2f} points; the ratio cannot exceed "
                  f"this grid's range of parameter counts (a factor of {max(params) / min(params):,.0f})"
                  f"{', below the paper' if max(params) / min(params) < PAPER['lenet5_param_ratio'] else ''}.\n")
        headline.append([f"1. {family}: best-aIQ vs most accurate network", paper,
                         (f"{100 * gap['gap']:.2f} points ({pct(relative)}) less accurate, {gap['ratio']:,.1f}× "
                         f"fewer parameters ({len(summary['trials'])} networks)")])
        top5 = sorted(summary["trials"], key=lambda t: (-t["aiq"], t["number"]))[:5]
        w.add("Top 5 by aIQ:\n")
        w.add(table(["network", "parameters", "test accuracy", "efficiency", "aIQ"],
                     [[t["summary"], f"{t['n_params']:,}", pct(t["accuracy"]), f"{t['network_efficiency']:.4f}",
                       f"{t['aiq']:.4f}"] for t in top5]))
        w.figure(grid_chart(f, family), f"finding1-{family}", f"{family}: accuracy against parameters, by aIQ")
        for longer in (p for p in f.longer if p.base is summary):
            _longer(w, longer, best, top)


def _longer(w: _Writer, p: Pairing, best: dict[str, Any], top: dict[str, Any]) -> None:
    """The grid's networks trained again with another epoch limit: how far the limit moves finding 1."""
    w.add(f"**Training length** ({name(p.variant)}): the same networks, {p.label}:\n")
    rows = [[b["summary"].split(",")[0], b["epochs"], pct(b["accuracy"]), f"{b['aiq']:.4f}", v["epochs"],
             pct(v["accuracy"]), f"{v['network_efficiency']:.4f}", f"{v['aiq']:.4f}"] for b, v in p.pairs]
    w.add(table(["network", "epochs (grid)", "test accuracy", "aIQ", "epochs (longer)", "test accuracy",
                 "efficiency", "aIQ"], rows))
    again = {shape_key(b["architecture"]): v for b, v in p.pairs}
    b, t = again.get(shape_key(best["architecture"])), again.get(shape_key(top["architecture"]))
    if b is not None and t is not None:
        w.add(f"Trained longer, the grid's most accurate network is {100 * (t['accuracy'] - b['accuracy']):.2f} "
              f"points more accurate than its best-aIQ network (at the grid's limit: "
              f"{100 * (top['accuracy'] - best['accuracy']):.2f}).\n")


def _finding2(w: _Writer, f: Findings, headline: list[list[str]]) -> None:
    w.add("## Finding 2: batch normalization and dropout raise efficiency\n")
    if not f.pairings:
        w.add("No variant study (batch norm or dropout) has finished yet.\n")
        return
    rows = []
    for p in f.pairings:
        e, a, q = p.stats("network_efficiency"), p.stats("accuracy"), p.stats("aiq")
        rows.append([p.label, name(p.variant), e["n"], f"{e['mean']:+.4f}", f"{e['sd']:.4f}",
                     f"{e['min']:+.4f} … {e['max']:+.4f}", f"{e['up']} of {e['n']}", pts(a["mean"]),
                     f"{a['up']} of {a['n']}", f"{q['mean']:+.4f}", f"{q['up']} of {q['n']}"])
        headline.append([f"2. {p.label} raises efficiency", "yes",
                         f"up in {e['up']} of {e['n']} networks, mean {e['mean']:+.4f}"])
    w.add("Each network of the variant study against the network of the same shape in the base grid "
          "(differences: variant − base):\n")
    w.add(table(["variant", "study file", "pairs", "efficiency: mean", "sd", "range", "went up",
                  "test accuracy: mean (points)", "went up", "aIQ: mean", "went up"], rows))
    for p in f.pairings:
        w.add(f"<details><summary>{p.label}: every pair</summary>\n")
        w.add(table(["network", "efficiency without", "with", "test accuracy without", "with"],
                     [[b["summary"].split(",")[0], f"{b['network_efficiency']:.4f}", f"{v['network_efficiency']:.4f}",
                       pct(b["accuracy"]), pct(v["accuracy"])] for b, v in p.pairs]))
        w.add("</details>\n")
    w.figure(pairs_chart(f.pairings), "finding2-pairs", "efficiency with and without each variant")


def _finding3(w: _Writer, f: Findings, headline: list[list[str]]) -> None:
    w.add("## Finding 3: label noise, accuracy and efficiency\n")
    if not f.noise_series:
        w.add("No label-noise series (the same study at two or more noise levels) has finished yet.\n")
        return
    for k, series in enumerate(f.noise_series):
        rows = f.noise_rows(series)
        files = ", ".join(name(s) for s in sorted(series, key=lambda s: s["config"]["data"].get("label_noise", 0)))
        w.add(f"Studies: {files}. Efficiency on the test split at the end; the epochs from each trial's "
              "history (efficiency there is measured on the validation split after every epoch).\n")
        per_network = []
        for shape, noise_rows in rows.items():
            for r in noise_rows:
                e = r.epochs
                per_network.append([shape.split(",")[0], f"{r.noise:g}", pct(r.trial["test_accuracy"]),
                                    f"{r.trial['network_efficiency']:.4f}", f"{r.trial['aiq']:.4f}", e["ran"],
                                    e["min_efficiency"], e["best_train"], e["best_val"]])
        w.add(table(["network", "label noise", "test accuracy", "efficiency", "aIQ", "epochs run",
                      "epoch of lowest efficiency", "epoch of best training accuracy",
                      "epoch of best validation accuracy (kept)"], per_network))
        w.add("By noise level (medians over the networks; \"above clean\": the network's efficiency is higher "
              "than the same network's without label noise):\n")
        w.add(noise_levels(rows))
        worst = max(r.noise for v in rows.values() for r in v)
        at_worst = [r.trial | {"shape": s} for s, v in rows.items() for r in v if r.noise == worst]
        best = best_by(at_worst, "test_accuracy")
        paper = pct(PAPER["noise75_test_accuracy"]) if worst == 0.75 else "not given"
        headline.append([(f"3. {series[0]['config']['search']['family']}: test accuracy with {worst:g} of training "
                         "labels random"), paper,
                         f"{pct(best['test_accuracy'])} ({best['shape'].split(',')[0]}; best of {len(at_worst)})"])
        w.figure(noise_chart(rows, "test_accuracy", "test accuracy"), f"finding3-accuracy-{k}",
                 "test accuracy against label noise")
        w.figure(noise_chart(rows, "network_efficiency", "network efficiency"), f"finding3-efficiency-{k}",
                 "efficiency against label noise")
        shape = top_shape(rows)
        w.figure(efficiency_history_chart(rows[shape], shape), f"finding3-history-{k}",
                 "efficiency per epoch at each noise level")


def _search(w: _Writer, f: Findings, headline: list[list[str]], seeds: int) -> None:
    w.add("## Search efficiency (not in the paper): TPE against the exhaustive grid\n")
    if not f.grids:
        w.add("No exhaustive grid has finished yet.\n")
        return
    w.add(f"How many trials TPE needs before its best aIQ reaches {TARGET:.0%} of the grid's best. **Tabular "
          "replay**: no training; each architecture TPE asks for is answered with the aIQ the grid recorded for "
          f"it (Optuna's TPESampler set up as aiq-search sets it up, {seeds} seeds, at most twice the grid's "
          "size in trials, a repeated architecture counted as another trial). **Real studies**: TPE studies run "
          "with the tool on the grid's space, every network trained again.\n")
    for family, grid in sorted(f.grids.items()):
        size, trials = grid_of(grid), grid["trials"]
        grid_best = best_by(trials, "aiq")["aiq"]
        target, budget = TARGET * grid_best, 2 * size
        replays = replay_tpe(trials, target=target, seeds=range(seeds), budget=budget)
        reached = [r.reached_at for r in replays if r.reached_at is not None]
        median = median_reached(replays)
        good = sum(t["aiq"] >= target for t in trials)
        random = expected_random_trials(size, good)
        within = sum(r <= 0.1 * size for r in reached)
        w.add(f"### {family}: {name(grid)}, {len(trials)} of {size} networks\n")
        w.add(f"Target: aIQ ≥ {target:.4f} ({TARGET:.0%} of {grid_best:.4f}); {good} of the grid's networks "
              "reach it.\n")
        rows: list[list[object]] = [
            ["TPE replay, median over seeds", median if median is not None else "not reached by every seed",
             pct(median / size) if median is not None else "",
             (f"reached by {len(reached)} of {seeds} seeds (range {min(reached, default=0)}–"
              f"{max(reached, default=0)}); within 10% of the grid by {within}")],
            ["random order (expected, no repeats)", f"{random:.1f}", pct(random / size),
             "(size + 1) / (good + 1)"]]
        real = []
        for search in (s for s, g in f.searches if g is grid):
            curve = f.search_curve(search)
            at = first_reaching(curve, target)
            real.append((search["study"], curve))
            rows.append([f"real study {name(search)}", at if at is not None else f"not within {len(curve)}",
                         pct(at / size) if at is not None else "", f"networks trained: {len(curve)}"])
        w.add(table(["search", "trials to reach the target", "as a fraction of the grid", "notes"], rows))
        headline.append([f"search, {family}: TPE trials to {TARGET:.0%} of the grid's best aIQ",
                         "no search in the paper",
                         f"median {median} of {size} ({pct(median / size)}) in a replay of {seeds} seeds"
                         if median is not None else f"not reached by every replay seed within {budget}"])
        w.figure(search_chart(replays, real, target, grid_best, size), f"search-tpe-{family}",
                 f"{family}: best aIQ so far against trials")


NOTES = """## How these runs differ from the paper

- **Training length.** The recipe's SGD at lr 1e-3 learns slowly; most networks ran into the epoch limit
  (each grid above says how many), so they are somewhat under-trained, small ones most. Accuracy, and with it
  the accuracy gap of finding 1, depends on that limit.
- **The grid bounds the parameter ratio.** Finding 1's ratio cannot exceed the grid's own range of parameter
  counts (given under each grid); the paper's ratio implies a far wider range of networks than these grids.
- **Where states are read.** A layer's state is its neurons' on/off pattern at the layer's output, or after a
  normalization that precedes the activation (README, "a layer's state"); during training the per-epoch
  efficiency is measured on the validation split, the final one on the test split.
- **Label noise.** Only training labels are randomized; early stopping watches the clean validation labels.
- **TPE on a grid's lists** sees each list as unordered categories (a width of 16 is not known to lie
  between 8 and 32), and its first trials are random (Optuna's default start-up); when only one or a few
  networks reach the target, that is a needle that no sampler finds much faster than random order.
- **The replay** answers TPE from the grid's records without training: a network asked for twice counts as
  two trials, as it would in a real study; the real TPE studies train every network again, with other
  initial weights, so their aIQ differs a little from the grid's.
"""


def render(findings: Findings, out: Path, figures: Path, *, missing: list[tuple[str, str]], commands: list[str],
           seeds: int = 20) -> str:
    """The whole report as markdown; figures are written to ``figures`` as they are made."""
    w = _Writer(out, figures)
    headline: list[list[str]] = []
    body = _Writer(out, figures)
    _finding1(body, findings, headline)
    _finding2(body, findings, headline)
    _finding3(body, findings, headline)
    _search(body, findings, headline, seeds)
    w.add("# Reproducing Schaub & Hotaling (2020), *Assessing Intelligence in Artificial Neural Networks*\n")
    w.add("Written by `aiq-search compare` from the studies below (or their committed summaries in "
          f"`{figures.relative_to(out.parent).as_posix()}/*.json`); no number here is typed in by hand. "
          "Every run is on MNIST; accuracy, efficiency and aIQ are measured on the 10,000 test images.\n")
    w.add("## Headline\n")
    w.add(table(["finding", "paper", "here"], headline))
    w.add("## What ran\n")
    w.add(ran_table(findings, missing))
    w.add("The CPU runs shared a small development machine with other jobs, so their times say little about "
          "speed; a study not run yet keeps its file here and is reported once it has finished.\n")
    w.add("Rebuild (MNIST's IDX files under `$AIQ_DATA_DIR/mnist/MNIST/raw/`):\n")
    w.add("```bash\n" + "\n".join(commands) + "\n```\n")
    w.parts += body.parts
    w.add(NOTES)
    return "\n".join(w.parts)
