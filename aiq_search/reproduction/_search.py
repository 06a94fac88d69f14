"""A tabular benchmark of search: a finished grid's trials, with their per-epoch histories, answer the
architectures that the service's own sampler asks for, and the service's own per-epoch gate decides whether
each is pruned. The study is built exactly as a worker builds it (`make_sampler`, `make_pruner`, the
family's `sample` over the study file's narrowed space, `should_stop`, `completed_repeat`), in memory, and no
network is trained: 100 seeds of a strategy cost seconds to minutes, and any change to the service's
defaults shows in the numbers. A repeat of a finished network costs nothing (the service answers it from
the record); a pruned network costs the epochs it ran; a repeat of a pruned one runs again."""

from __future__ import annotations

import json
import math
import random
import statistics
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from aiq_search.families import Choice
from aiq_search.study import completed_repeat, directions, make_pruner, make_sampler, should_stop
from aiq_search.studyfile import StudyFile, StudySection

__all__ = ["Grid", "Run", "Step", "Strategy", "arch_key", "quantiles", "replay", "sweep"]

# what a replay reads of each network and of each of its epochs
PACKED_KEYS = ("architecture", "summary", "aiq", "accuracy", "n_params", "epochs", "train_seconds")
PACKED_EPOCH_KEYS = ("epoch", "val_accuracy", "network_efficiency")


def arch_key(spec: dict[str, Any]) -> str:
    """One string per architecture: how the grid's records are looked up."""
    return json.dumps(spec, sort_keys=True)


@dataclass(frozen=True)
class Grid:
    """A finished grid study's COMPLETE trials (from its committed summary), by architecture."""

    name: str
    config: StudyFile
    records: dict[str, dict[str, Any]]
    size: int  # combinations the grid lists (a grid still training has fewer records)

    @classmethod
    def from_summary(cls, summary: dict[str, Any], size: int) -> Grid:
        """From a study summary (`aiq_search.reproduction._summaries`) or a `packed` grid."""
        records = {arch_key(t["architecture"]): t for t in summary["trials"]}
        return cls(summary["study"], StudyFile.model_validate(summary["config"]), records, size)

    @property
    def best_aiq(self) -> float:
        return max(t["aiq"] for t in self.records.values())

    @property
    def network_epochs(self) -> int:
        """What the exhaustive sweep of the recorded networks cost."""
        return sum(t["epochs"] for t in self.records.values())

    def packed(self) -> dict[str, Any]:
        """The grid as the benchmark needs it: per network only what the replay reads (its scores and its
        per-epoch validation accuracy and efficiency), a fifth of its full summary."""
        trials = [{**{k: t[k] for k in PACKED_KEYS},
                   "history": [{k: e[k] for k in PACKED_EPOCH_KEYS} for e in t["history"]]}
                  for t in self.records.values()]
        return {"study": self.name, "config": self.config.record(), "size": self.size, "trials": trials}


@dataclass(frozen=True)
class Strategy:
    """A way to search a grid: the study section's settings that differ from the grid's own (``sampler``,
    ``pruner``, ``startup_trials``, ``prune_from_epoch``, ``mode``), or an ordered sweep (``sweep``:
    ``"random"`` or ``"fewest-params"``)."""

    label: str
    settings: dict[str, Any] = field(default_factory=dict)
    sweep: str | None = None


@dataclass(frozen=True)
class Step:
    """One trial of a replay: what it cost and, if it finished, its record."""

    epochs: int
    seconds: float
    record: dict[str, Any] | None


@dataclass(frozen=True)
class Run:
    """One seed of one strategy on one grid."""

    steps: list[Step]

    def reach(self, grid: Grid, fraction: float) -> tuple[int, int, float] | None:
        """(trials, network-epochs, seconds) spent when the best aIQ found first reached ``fraction`` of
        the grid's best; None if it never did."""
        target = fraction * grid.best_aiq
        epochs, seconds = 0, 0.0
        for n, step in enumerate(self.steps, 1):
            epochs, seconds = epochs + step.epochs, seconds + step.seconds
            if step.record is not None and step.record["aiq"] >= target:
                return n, epochs, seconds
        return None


def sweep(grid: Grid, how: str, seed: int) -> Run:
    """Train every recorded network in turn: in a random order, or the fewest parameters first."""
    records = list(grid.records.values())
    if how == "random":
        random.Random(seed).shuffle(records)
    else:
        records.sort(key=lambda t: (t["n_params"], arch_key(t["architecture"])))
    return Run([Step(t["epochs"], t["train_seconds"], t) for t in records])


def replay(grid: Grid, strategy: Strategy, seed: int, *, budget: int, stop_at: float = 0.98) -> Run:
    """``strategy`` run through the service's code against ``grid`` until ``budget`` trials COMPLETE (as
    ``n_trials`` counts them; at most twice as many trials in all), stopping once the best aIQ found
    reaches ``stop_at`` of the grid's best (aiq mode)."""
    if strategy.sweep is not None:
        return sweep(grid, strategy.sweep, seed)
    config = grid.config
    # the grid's own study section with the strategy's settings, validated as a study file's would be
    section = StudySection.model_validate({**config.study.model_dump(), "seed": seed, **strategy.settings})
    max_epochs = config.training.max_epochs
    family, space = config.search.resolve(), config.search.space()
    first = next(iter(grid.records.values()))["architecture"]
    study = optuna.create_study(
        directions=directions(section.mode), pruner=make_pruner(section, max_epochs),
        sampler=make_sampler(section, sum(isinstance(c, Choice) for c in space.values())))
    pareto, best = section.mode == "pareto", -math.inf
    target = math.inf if pareto else stop_at * grid.best_aiq  # pareto mode spends its whole budget
    steps: list[Step] = []
    completed = 0
    while completed < budget and len(steps) < 2 * budget and best < target:
        trial = study.ask()
        spec = family.sample(trial, space, first["input_shape"], first["num_classes"])
        record = grid.records.get(arch_key(spec))
        if record is None:  # a combination the grid has not finished (yet): as if it failed at once
            study.tell(trial, state=TrialState.FAIL)
            steps.append(Step(0, 0.0, None))
            continue
        trial.set_user_attr("architecture", spec)
        trial.set_user_attr("n_params", record["n_params"])
        if completed_repeat(study, trial, spec) is not None:
            study.tell(trial, _values(record, pareto))
            steps.append(Step(0, 0.0, record))
        else:
            steps.append(_train(study, trial, record, section, max_epochs, config, pareto))
        if steps[-1].record is not None:
            completed += 1
            best = max(best, record["aiq"])
    return Run(steps)


def _values(record: dict[str, Any], pareto: bool) -> list[float]:
    return [record["accuracy"], float(record["n_params"])] if pareto else [record["aiq"]]


def _train(study: optuna.Study, trial: optuna.Trial, record: dict[str, Any], section: StudySection, max_epochs: int,
           config: StudyFile, pareto: bool) -> Step:
    """The recorded training, epoch by epoch, through the service's gate: pruned or complete."""
    per_epoch = record["train_seconds"] / max(1, record["epochs"])
    for epoch in record["history"]:
        aiq = config.metrics.aiq(epoch["network_efficiency"], epoch["val_accuracy"])
        if should_stop(trial, section, max_epochs, epoch["epoch"], aiq, val_accuracy=epoch["val_accuracy"],
                       n_params=record["n_params"]):
            study.tell(trial, state=TrialState.PRUNED)
            return Step(epoch["epoch"], per_epoch * epoch["epoch"], None)
    trial.set_user_attr("history", record["history"])
    study.tell(trial, _values(record, pareto))
    return Step(record["epochs"], record["train_seconds"], record)


def quantiles(values: list[float]) -> tuple[float, float, float]:
    """Lower quartile, median, upper quartile."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3
