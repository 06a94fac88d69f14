"""Pareto mode against the exhaustive sweep, on the recorded grids: how much of the grid's accuracy/size
front a search finds, for how much training.

The recorded grids of `bench/search.py` answer the architectures that the service's own sampler asks for in
``mode = "pareto"`` (maximize accuracy, minimize parameters), through the service's own pruner and per-epoch
gate (`aiq_search.reproduction._search.replay`); nothing trains. The front's quality is its hypervolume in
(accuracy, log-parameters) space: parameters scaled to [0, 1] between the grid's largest network (0) and its
smallest (1), accuracy as it is, the reference point (0, 0). For each grid and strategy it prints, over the
seeds, the share of seeds that reach 98% and 95% of the full grid's hypervolume, the median [quartiles] of
network-epochs until they do, that as a share of the grid's network-epochs, and its ratios to the
random-order and fewest-parameters-first sweeps.

    python bench/pareto.py [--seeds 20] [--grids lenet300-grid lenet5-grid lenet300-grid-fine]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Iterable

import optuna
from search import FEWEST, RANDOM, load_grid

from aiq_search.reproduction._search import Grid, Run, Strategy, quantiles, replay

STRATEGIES = [
    RANDOM,
    FEWEST,
    Strategy("NSGA-II (shipped default)", {"mode": "pareto", "sampler": "nsga2", "pruner": "none"}),
    Strategy("NSGA-II, dominated", {"mode": "pareto", "sampler": "nsga2", "pruner": "dominated"}),
    Strategy("TPE, no pruner", {"mode": "pareto", "sampler": "tpe", "pruner": "none"}),
    Strategy("TPE, dominated", {"mode": "pareto", "sampler": "tpe", "pruner": "dominated"}),
    Strategy("random, no pruner", {"mode": "pareto", "sampler": "random", "pruner": "none"}),
]
TARGETS = (0.98, 0.95)


class Scale:
    """Maps a network's (accuracy, parameters) into the unit square the hypervolume is taken in."""

    def __init__(self, grid: Grid) -> None:
        sizes = [t["n_params"] for t in grid.records.values()]
        self.low, self.high = math.log(min(sizes)), math.log(max(sizes))

    def point(self, record: dict) -> tuple[float, float]:
        span = self.high - self.low or 1.0
        return record["accuracy"], (self.high - math.log(record["n_params"])) / span


def hypervolume(points: Iterable[tuple[float, float]]) -> float:
    """Area of the unit square's part dominated by ``points`` (both coordinates maximized, reference (0, 0))."""
    area, best_y = 0.0, 0.0
    for x, y in sorted(points, reverse=True):  # by accuracy, highest first
        if y > best_y:
            area += x * (y - best_y)
            best_y = y
    return area


def reach(run: Run, scale: Scale, target: float) -> int | None:
    """Network-epochs spent when the front found first covered ``target`` hypervolume; None if never."""
    epochs, points = 0, []
    for step in run.steps:
        epochs += step.epochs
        if step.record is not None:
            points.append(scale.point(step.record))
            if hypervolume(points) >= target:
                return epochs
    return None


def _fmt(q: tuple[float, float, float] | None) -> str:
    return f"{q[1]:.0f} [{q[0]:.0f}-{q[2]:.0f}]" if q is not None else "–"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--grids", nargs="+", default=["lenet300-grid", "lenet5-grid", "lenet300-grid-fine"])
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    for name in args.grids:
        grid = load_grid(name)
        if grid is None:
            print(f"\n{name}: not recorded; skipped")
            continue
        scale = Scale(grid)
        full = hypervolume(scale.point(t) for t in grid.records.values())
        print(f"\n{name}: {len(grid.records)} of {grid.size} networks recorded, {grid.network_epochs:,} "
              f"network-epochs; full-grid hypervolume {full:.4f}")
        print(f"{'strategy':28} {'seeds':>5} {'reach 98%':>9} {'epochs to 98%':>19} {'% of grid':>9} "
              f"{'× random':>8} {'× fewest':>8} {'reach 95%':>9} {'epochs to 95%':>19} {'s/seed':>6}")
        medians: dict[str, float] = {}
        for strategy in STRATEGIES:
            started = time.perf_counter()
            runs = [replay(grid, strategy, seed, budget=len(grid.records)) for seed in range(args.seeds)]
            wall = (time.perf_counter() - started) / args.seeds
            cells = []
            for target in TARGETS:
                got = [e for e in (reach(run, scale, target * full) for run in runs) if e is not None]
                q = quantiles([float(e) for e in got]) if got else None
                if target == TARGETS[0] and q is not None:
                    medians[strategy.label] = q[1]
                cells.append((len(got) / args.seeds, q))
            (share98, q98), (share95, q95) = cells
            m = medians.get(strategy.label)
            ratios = [f"{m / medians[b.label]:.2f}" if m is not None and b.label in medians else "–"
                      for b in (RANDOM, FEWEST)]
            of_grid = f"{m / grid.network_epochs:.1%}" if m is not None else "–"
            print(f"{strategy.label:28} {args.seeds:5d} {share98:9.0%} {_fmt(q98):>19} {of_grid:>9} "
                  f"{ratios[0]:>8} {ratios[1]:>8} {share95:9.0%} {_fmt(q95):>19} {wall:6.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
