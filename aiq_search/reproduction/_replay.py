"""A tabular benchmark of search efficiency: Optuna's TPE sampler, set up as aiq-search sets it up for a
study, asks for architectures of a finished grid's space, and each one is answered with the aIQ that grid
trial recorded (no training). How many trials TPE needs to come near the grid's best aIQ, over many seeds,
costs seconds instead of hours; a real TPE study confirms it (its networks are trained again, so their aIQ
differs a little from the grid's)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import optuna

__all__ = ["ReplayResult", "expected_random_trials", "replay_tpe"]


@dataclass(frozen=True)
class ReplayResult:
    """One seed's replay: the trial (1-based) at which the target was first reached (None: not within
    ``budget``), and the best aIQ after each trial."""

    seed: int
    reached_at: int | None
    curve: list[float]


def _table(trials: list[dict[str, Any]]) -> tuple[dict[str, list[Any]], dict[tuple[Any, ...], float]]:
    """The grid's choices (parameter → sorted values) and its recorded aIQ by parameter values."""
    names = sorted({name for t in trials for name in t["params"]})
    choices = {name: sorted({t["params"][name] for t in trials}) for name in names}
    table = {tuple(t["params"][n] for n in names): t["aiq"] for t in trials}
    return choices, table


def replay_tpe(trials: list[dict[str, Any]], *, target: float, seeds: range | list[int],
               budget: int) -> list[ReplayResult]:
    """Replay TPE (``TPESampler(seed=seed, constant_liar=True)``, as `aiq_search.study._samplers` makes it) against
    a grid's COMPLETE trials, up to ``budget`` trials per seed. A combination the grid did not finish
    counts as a trial that failed."""
    choices, table = _table(trials)
    names = list(choices)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results = []
    for seed in seeds:
        study = optuna.create_study(direction="maximize",
                                    sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True))
        best, curve, reached = float("-inf"), [], None
        for n in range(1, budget + 1):
            trial = study.ask()
            key = tuple(trial.suggest_categorical(name, choices[name]) for name in names)
            value = table.get(key)
            if value is None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, value)
                best = max(best, value)
            curve.append(best)
            if reached is None and best >= target:
                reached = n
        results.append(ReplayResult(seed, reached, curve))
    return results


def expected_random_trials(size: int, good: int) -> float:
    """Expected draws, without replacement, from ``size`` combinations of which ``good`` reach the target,
    until the first good one: (size + 1) / (good + 1). A baseline for the replay."""
    return (size + 1) / (good + 1)


def median_reached(results: list[ReplayResult]) -> float | None:
    """The median trial at which the target was reached (None if any seed never reached it)."""
    reached = [r.reached_at for r in results if r.reached_at is not None]
    return None if len(reached) < len(results) else statistics.median(reached)
