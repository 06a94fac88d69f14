"""Search against the exhaustive sweep, on the recorded grids (issue 19's benchmark).

Each recorded grid (bench/grids/<study>.json.gz, packed with ``--pack`` from a study's summary: every
network's scores and per-epoch history; else the report's summary, docs/reproduction/<study>.json)
answers the architectures that the service's own sampler asks for, through the service's own pruner and
per-epoch gate (`aiq_search.reproduction._search`); nothing trains. For each grid and strategy it prints,
over the seeds, the median [quartiles] of trials and of network-epochs (and recorded seconds) until the best
aIQ found reaches 98% and 95% of the grid's best, the share of seeds that get there, and the ratios of the
median network-epochs to the random-order sweep's and to the fewest-parameters-first sweep's. The last line
says whether the bar holds for the shipped default (aiq mode) on the extended grids:
median ≤ 10% of the grid's network-epochs, ≤ 0.25× random order, ≤ 1.0× fewest-parameters-first, in ≥ 95%
of the seeds, upper quartile ≤ 25% of the grid.

    python bench/search.py [--seeds 100] [--gp-seeds 20] [--grids lenet300-grid lenet5-grid ...]
                           [--strategies "shipped" "tpe, halving" ...]
    python bench/search.py --pack SUMMARY.json   # a summary written by `aiq-search compare`
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna

from aiq_search.reproduction._search import Grid, Strategy, quantiles, replay
from aiq_search.reproduction._summaries import grid_size
from aiq_search.studyfile import DEFAULT_PRUNER, DEFAULT_SAMPLER

REPO = Path(__file__).resolve().parent.parent
PACKED = REPO / "bench" / "grids"
SUMMARIES = REPO / "docs" / "reproduction"
# the grids the bar is judged on: extended so that the best network is interior in every dimension
EXTENDED = ("lenet300-grid-fine", "lenet5-grid-fine")
SHIPPED = Strategy("shipped default", {"sampler": DEFAULT_SAMPLER["aiq"], "pruner": DEFAULT_PRUNER["aiq"]})
RANDOM = Strategy("random-order sweep", sweep="random")
FEWEST = Strategy("fewest-params-first sweep", sweep="fewest-params")
STRATEGIES = [
    RANDOM,
    FEWEST,
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
TARGETS = (0.98, 0.95)
BAR = {"of_grid": 0.10, "vs_random": 0.25, "vs_fewest": 1.0, "share": 0.95, "q3_of_grid": 0.25}
Quartiles = tuple[float, float, float]


@dataclass(frozen=True)
class Measured:
    """A strategy's replays over ``seeds`` seeds: per target, the share of seeds that reached it and the
    quartiles of trials, network-epochs and seconds over those that did (None: none did)."""

    seeds: int
    wall: float
    share: dict[float, float]
    trials: dict[float, Quartiles | None]
    epochs: dict[float, Quartiles | None]
    seconds: dict[float, Quartiles | None]


def measure(grid: Grid, strategy: Strategy, seeds: int) -> Measured:
    started = time.perf_counter()
    runs = [replay(grid, strategy, seed, budget=len(grid.records)) for seed in range(seeds)]
    wall = time.perf_counter() - started
    share, trials, epochs, seconds = {}, {}, {}, {}
    for target in TARGETS:
        reached = [r for r in (run.reach(grid, target) for run in runs) if r is not None]
        share[target] = len(reached) / seeds
        trials[target] = quantiles([float(r[0]) for r in reached]) if reached else None
        epochs[target] = quantiles([float(r[1]) for r in reached]) if reached else None
        seconds[target] = quantiles([r[2] for r in reached]) if reached else None
    return Measured(seeds, wall, share, trials, epochs, seconds)


def load_grid(name: str) -> Grid | None:
    """The packed grid if there is one, else the report's summary of the study; None if neither."""
    packed, summary = PACKED / f"paper-{name}.json.gz", SUMMARIES / f"paper-{name}.json"
    if packed.is_file():
        data = json.loads(gzip.decompress(packed.read_bytes()))
        return Grid.from_summary(data, data["size"])
    if summary.is_file():
        data = json.loads(summary.read_text(encoding="utf-8"))
        return Grid.from_summary(data, grid_size(data["config"]["search"]))
    return None


def pack(summary_path: Path) -> Path:
    """Write the packed grid of a study summary into bench/grids (gzip's mtime 0: same input, same bytes)."""
    data = json.loads(summary_path.read_text(encoding="utf-8"))
    grid = Grid.from_summary(data, grid_size(data["config"]["search"]))
    text = json.dumps(grid.packed(), sort_keys=True, separators=(",", ":"))
    out = PACKED / f"{grid.name}.json.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    return out


def _fmt(q: Quartiles | None) -> str:
    return f"{q[1]:.0f} [{q[0]:.0f}-{q[2]:.0f}]" if q is not None else "–"


def _ratio(a: Quartiles | None, b: Quartiles | None) -> str:
    return f"{a[1] / b[1]:.2f}" if a is not None and b is not None else "–"


def _row(label: str, r: Measured, results: dict[str, Measured], grid: Grid) -> str:
    """One strategy's line of the table."""
    e98 = r.epochs[0.98]
    share = f"{e98[1] / grid.network_epochs:.1%}" if e98 is not None else "–"
    base = [results[s.label].epochs[0.98] if s.label in results else None for s in (RANDOM, FEWEST)]
    return (f"{label:28} {r.seeds:5d} {r.share[0.98]:9.0%} {_fmt(r.trials[0.98]):>16} {_fmt(e98):>19} "
            f"{share:>9} {_ratio(e98, base[0]):>8} {_ratio(e98, base[1]):>8} {r.share[0.95]:9.0%} "
            f"{_fmt(r.epochs[0.95]):>19} {_fmt(r.seconds[0.98]):>19} {r.wall / r.seeds:6.2f}")


def _verdict(name: str, grid: Grid, results: dict[str, Measured]) -> str:
    if len(grid.records) < grid.size:
        return f"{name} incomplete ({len(grid.records)} of {grid.size})"
    shipped, rnd, few = (results[s.label].epochs[0.98] for s in (SHIPPED, RANDOM, FEWEST))
    if shipped is None or rnd is None or few is None:
        return f"{name}: not met (the shipped default never reached 98%)"
    _, median, q3 = shipped
    checks = {"≤10% of grid": median <= BAR["of_grid"] * grid.network_epochs,
              "≤0.25× random": median <= BAR["vs_random"] * rnd[1],
              "≤1.0× fewest-first": median <= BAR["vs_fewest"] * few[1],
              "≥95% of seeds": results[SHIPPED.label].share[0.98] >= BAR["share"],
              "upper quartile ≤25%": q3 <= BAR["q3_of_grid"] * grid.network_epochs}
    failed = [k for k, ok in checks.items() if not ok]
    return f"{name}: {'met' if not failed else 'not met (' + ', '.join(failed) + ')'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--gp-seeds", type=int, default=20, help="seeds for GPSampler (about 1 s a trial)")
    parser.add_argument("--grids", nargs="+", default=["lenet300-grid", "lenet5-grid", *EXTENDED])
    parser.add_argument("--pack", type=Path, metavar="SUMMARY.json", help="pack a study summary and stop")
    parser.add_argument("--strategies", nargs="+", metavar="LABEL", type=str.lower,
                        help="only the strategies whose label starts so (the sweeps always run: the ratios need them)")
    args = parser.parse_args()
    if args.pack:
        print(pack(args.pack).relative_to(REPO))
        return 0
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    verdicts: list[str] = []
    for name in args.grids:
        grid = load_grid(name)
        if grid is None:
            print(f"\n{name}: not recorded (no bench/grids/paper-{name}.json.gz); skipped")
            if name in EXTENDED:
                verdicts.append(f"{name} not recorded")
            continue
        best = max(grid.records.values(), key=lambda t: t["aiq"])
        print(f"\n{name}: {len(grid.records)} of {grid.size} networks recorded, {grid.network_epochs:,} "
              f"network-epochs; best aIQ {grid.best_aiq:.4f} ({best['summary']}, {best['n_params']:,} params)")
        print(f"{'strategy':28} {'seeds':>5} {'reach 98%':>9} {'trials to 98%':>16} {'epochs to 98%':>19} "
              f"{'% of grid':>9} {'× random':>8} {'× fewest':>8} {'reach 95%':>9} {'epochs to 95%':>19} "
              f"{'train s to 98%':>19} {'s/seed':>6}")
        results: dict[str, Measured] = {}
        chosen = [s for s in STRATEGIES if s.sweep is not None or not args.strategies
                  or any(s.label.lower().startswith(prefix) for prefix in args.strategies)]
        for strategy in chosen:
            seeds = args.gp_seeds if strategy.settings.get("sampler") == "gp" else args.seeds
            results[strategy.label] = measure(grid, strategy, seeds)
            print(_row(strategy.label, results[strategy.label], results, grid), flush=True)
        if name in EXTENDED and SHIPPED in chosen:
            verdicts.append(_verdict(name, grid, results))
    met = bool(verdicts) and all(v.endswith(": met") for v in verdicts)
    print(f"\nbar for the shipped default ({SHIPPED.settings}) on the extended grids: "
          f"{'; '.join(verdicts) or 'no extended grid'}")
    print("met" if met else "not met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
