"""Search against the exhaustive sweep, on the recorded grids (issue 19's benchmark).

Each grid's committed summary (docs/reproduction/<study>.json: every network's scores and per-epoch history)
answers the architectures that the service's own sampler asks for, through the service's own pruner and
per-epoch gate (`aiq_search.reproduction._search`); nothing trains. For each grid and strategy it prints,
over the seeds, the median [quartiles] of trials and of network-epochs (and recorded seconds) until the best
aIQ found reaches 98% and 95% of the grid's best, the share of seeds that get there, and the ratios of the
median network-epochs to the random-order sweep's and to the fewest-parameters-first sweep's. The last line
says whether the bar holds for the shipped default (aiq mode) on the extended grids:
median ≤ 10% of the grid's network-epochs, ≤ 0.25× random order, ≤ 1.0× fewest-parameters-first, in ≥ 95%
of the seeds, upper quartile ≤ 25% of the grid.

    python bench/search.py [--seeds 100] [--gp-seeds 20] [--grids lenet300-grid lenet5-grid ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import optuna

from aiq_search.reproduction._search import Grid, Strategy, quantiles, replay
from aiq_search.reproduction._summaries import grid_size
from aiq_search.studyfile import DEFAULT_PRUNER, DEFAULT_SAMPLER

REPO = Path(__file__).resolve().parent.parent
SUMMARIES = REPO / "docs" / "reproduction"
# the grids the bar is judged on: extended so that the best network is interior in every dimension
EXTENDED = ("lenet300-grid-fine", "lenet5-grid-fine")
SHIPPED = Strategy("shipped default", {"sampler": DEFAULT_SAMPLER["aiq"], "pruner": DEFAULT_PRUNER["aiq"]})
STRATEGIES = [
    Strategy("random-order sweep", sweep="random"),
    Strategy("fewest-params-first sweep", sweep="fewest-params"),
    SHIPPED,
    Strategy("TPE, no pruner", {"sampler": "tpe", "pruner": "none"}),
    Strategy("TPE, halving", {"sampler": "tpe", "pruner": "halving"}),
    Strategy("TPE, median", {"sampler": "tpe", "pruner": "median"}),
    Strategy("TPE, hyperband", {"sampler": "tpe", "pruner": "hyperband"}),
    Strategy("TPE 10 start-up, halving", {"sampler": "tpe", "pruner": "halving", "startup_trials": 10}),
    Strategy("TPE, halving from epoch 1", {"sampler": "tpe", "pruner": "halving", "prune_from_epoch": 1}),
    Strategy("random, halving", {"sampler": "random", "pruner": "halving"}),
    Strategy("GP, no pruner", {"sampler": "gp", "pruner": "none"}),
]
BAR = {"of_grid": 0.10, "vs_random": 0.25, "vs_fewest": 1.0, "share": 0.95, "q3_of_grid": 0.25}


def _fmt(q: tuple[float, float, float], digits: int = 0) -> str:
    return f"{q[1]:.{digits}f} [{q[0]:.{digits}f}-{q[2]:.{digits}f}]"


def measure(grid: Grid, strategy: Strategy, seeds: int) -> dict[str, object]:
    """Replays of ``strategy`` on ``grid`` over ``seeds`` seeds: per target, the quartiles of trials,
    epochs and seconds over the seeds that reached it, and the share that did."""
    started = time.perf_counter()
    runs = [replay(grid, strategy, seed, budget=len(grid.records)) for seed in range(seeds)]
    out: dict[str, object] = {"wall": time.perf_counter() - started, "seeds": seeds}
    for fraction in (0.98, 0.95):
        reached = [r for r in (run.reach(grid, fraction) for run in runs) if r is not None]
        out[f"share{fraction}"] = len(reached) / seeds
        if reached:
            out[f"trials{fraction}"] = quantiles([float(r[0]) for r in reached])
            out[f"epochs{fraction}"] = quantiles([float(r[1]) for r in reached])
            out[f"seconds{fraction}"] = quantiles([r[2] for r in reached])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--gp-seeds", type=int, default=20, help="seeds for GPSampler (about 1 s a trial)")
    parser.add_argument("--grids", nargs="+", default=["lenet300-grid", "lenet5-grid", *EXTENDED])
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    verdicts: list[str] = []
    for name in args.grids:
        path = SUMMARIES / f"paper-{name}.json"
        if not path.is_file():
            print(f"\n{name}: no committed summary ({path.relative_to(REPO)}); skipped")
            if name in EXTENDED:
                verdicts.append(f"{name} not recorded")
            continue
        summary = json.loads(path.read_text(encoding="utf-8"))
        grid = Grid.from_summary(summary, grid_size(summary["config"]["search"]))
        best = max(grid.records.values(), key=lambda t: t["aiq"])
        print(f"\n{name}: {len(grid.records)} of {grid.size} networks recorded, {grid.network_epochs:,} "
              f"network-epochs; best aIQ {grid.best_aiq:.4f} ({best['summary']}, {best['n_params']:,} params)")
        print(f"{'strategy':28} {'seeds':>5} {'reach 98%':>9} {'trials to 98%':>16} {'epochs to 98%':>19} "
              f"{'% of grid':>9} {'× random':>8} {'× fewest':>8} {'reach 95%':>9} {'epochs to 95%':>19} {'s/seed':>6}")
        results = {}
        for strategy in STRATEGIES:
            seeds = args.gp_seeds if strategy.settings.get("sampler") == "gp" else args.seeds
            results[strategy.label] = r = measure(grid, strategy, seeds)
            print(_row(strategy.label, seeds, r, results, grid))
        if name in EXTENDED:
            verdicts.append(_verdict(name, grid, results))
    met = bool(verdicts) and all(v.endswith(": met") for v in verdicts)
    print(f"\nbar for the shipped default ({SHIPPED.settings}) on the extended grids: "
          f"{'; '.join(verdicts) or 'no extended grid'}")
    print("met" if met else "not met")
    return 0


def _row(label: str, seeds: int, r: dict[str, object], results: dict[str, dict[str, object]], grid: Grid) -> str:
    """One strategy's line of the table."""
    def cell(key: str) -> str:
        q = r.get(key)
        return _fmt(q) if isinstance(q, tuple) else "–"

    e98 = r.get("epochs0.98")
    ratios = []
    for base in ("random-order sweep", "fewest-params-first sweep"):
        b = results.get(base, {}).get("epochs0.98")
        ratios.append(f"{e98[1] / b[1]:.2f}" if isinstance(e98, tuple) and isinstance(b, tuple) else "–")
    share = f"{e98[1] / grid.network_epochs:.1%}" if isinstance(e98, tuple) else "–"
    return (f"{label:28} {seeds:5d} {r['share0.98']:9.0%} {cell('trials0.98'):>16} {cell('epochs0.98'):>19} "
            f"{share:>9} {ratios[0]:>8} {ratios[1]:>8} {r['share0.95']:9.0%} {cell('epochs0.95'):>19} "
            f"{float(r['wall']) / seeds:6.2f}")  # type: ignore[arg-type]


def _verdict(name: str, grid: Grid, results: dict[str, dict[str, object]]) -> str:
    if len(grid.records) < grid.size:
        return f"{name} incomplete ({len(grid.records)} of {grid.size})"
    shipped, rnd, few = (results[k].get("epochs0.98") for k in (SHIPPED.label, "random-order sweep",
                                                                 "fewest-params-first sweep"))
    if not shipped or not rnd or not few:
        return f"{name}: not met (the shipped default never reached 98%)"
    _, med, q3 = shipped  # type: ignore[misc]
    checks = {"≤10% of grid": med <= BAR["of_grid"] * grid.network_epochs,
              "≤0.25× random": med <= BAR["vs_random"] * rnd[1],  # type: ignore[index]
              "≤1.0× fewest-first": med <= BAR["vs_fewest"] * few[1],  # type: ignore[index]
              "≥95% of seeds": results[SHIPPED.label]["share0.98"] >= BAR["share"],  # type: ignore[operator]
              "upper quartile ≤25%": q3 <= BAR["q3_of_grid"] * grid.network_epochs}
    failed = [k for k, ok in checks.items() if not ok]
    return f"{name}: {'met' if not failed else 'not met (' + ', '.join(failed) + ')'}"


if __name__ == "__main__":
    sys.exit(main())
