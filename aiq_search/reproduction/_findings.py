"""The paper's findings, computed from study summaries (`aiq_search.reproduction._summaries`).

Which study plays which part is read from the studies themselves, never from their names:

- a *base* study: a grid, no label noise, batch norm off and dropout 0 fixed; the largest one of a family is
  that family's exhaustive grid (finding 1);
- a *variant* study: batch norm on or dropout > 0 fixed, no label noise, trained and scored like a base study
  of its family: its networks are paired with the base networks of the same shape (finding 2);
- a *noise series*: studies that differ only in ``label_noise`` (finding 3);
- a *search*: a non-grid aiq-mode study on exactly a base grid's space (search efficiency).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Any, TypedDict

from aiq_search.reproduction._summaries import grid_size, shape_key

__all__ = ["Findings", "NoiseRow", "Pairing", "find", "first_reaching", "paired", "trial_epochs"]

Summary = dict[str, Any]
Trial = dict[str, Any]


class Epochs(TypedDict):
    """What `trial_epochs` reads from a trial's history (None: the trial recorded no history)."""

    min_efficiency: int | None
    best_train: int | None
    best_val: int | None
    ran: int


def _fixed(summary: Summary, key: str) -> Any:
    """A search choice the study fixes (None when it searches it)."""
    value = summary["config"]["search"].get(key)
    return None if isinstance(value, (list, dict)) else value


def _setup(summary: Summary, *, with_search: bool, with_noise: bool, with_epochs: bool = True) -> str:
    """What two studies must share to be compared: training, scoring, data (and the search space)."""
    config = summary["config"]
    data = {k: v for k, v in config["data"].items() if k not in ("data_dir", "download")
            and (with_noise or k != "label_noise")}
    search = config["search"] if with_search else {"family": config["search"]["family"]}
    ignored = {"device": None, "threads": None, **({} if with_epochs else {"max_epochs": None})}
    return json.dumps([config["training"] | ignored, config["metrics"], data, search,
                       config["study"]["eval_split"], config["study"]["mode"]], sort_keys=True)


def _noise(summary: Summary) -> float:
    return summary["config"]["data"].get("label_noise", 0.0)


def _is_grid(summary: Summary) -> bool:
    return summary["config"]["study"]["sampler"] == "grid"


def _is_base(summary: Summary) -> bool:
    return (_is_grid(summary) and _noise(summary) == 0 and _fixed(summary, "batch_norm") is False
            and _fixed(summary, "dropout") == 0)


def best_by(trials: list[Trial], key: str) -> Trial:
    """The trial with the highest ``key``; the earlier trial wins a tie."""
    return min(trials, key=lambda t: (-t[key], t["number"]))


@dataclass(frozen=True)
class Pairing:
    """A variant study against its base: per shape, the base and the variant trial."""

    variant: Summary
    base: Summary
    label: str
    pairs: list[tuple[Trial, Trial]]

    def differences(self, key: str) -> list[float]:
        return [v[key] - b[key] for b, v in self.pairs]

    def stats(self, key: str) -> dict[str, float]:
        """Mean, standard deviation, extremes and how many went up of the paired differences in ``key``."""
        d = self.differences(key)
        return {"n": len(d), "mean": statistics.fmean(d), "sd": statistics.stdev(d) if len(d) > 1 else 0.0,
                "min": min(d), "max": max(d), "up": sum(x > 0 for x in d)}


def paired(variant: Summary, base: Summary, label: str) -> Pairing:
    """The variant's trials matched with the base's by network shape (`shape_key`)."""
    by_shape = {shape_key(t["architecture"]): t for t in base["trials"]}
    pairs = [(by_shape[k], t) for t in variant["trials"] if (k := shape_key(t["architecture"])) in by_shape]
    return Pairing(variant, base, label, pairs)


def trial_epochs(trial: Trial) -> Epochs:
    """From a trial's history: the epoch of lowest efficiency (where it stops falling), of best training
    accuracy and of best validation accuracy (the weights kept), and how many epochs ran."""
    history = trial["history"]
    if not history:
        return {"min_efficiency": None, "best_train": None, "best_val": None, "ran": trial["epochs"]}

    def argbest(key: str, sign: float) -> int:
        return min(history, key=lambda e: (-sign * e[key], e["epoch"]))["epoch"]

    return {"min_efficiency": argbest("network_efficiency", -1), "best_train": argbest("train_accuracy", 1),
            "best_val": argbest("val_accuracy", 1), "ran": len(history)}


@dataclass(frozen=True)
class NoiseRow:
    """One network shape at one label-noise level."""

    noise: float
    trial: Trial
    epochs: Epochs


def first_reaching(values: list[float], target: float) -> int | None:
    """The 1-based position of the first value >= ``target`` (None: never)."""
    return next((i for i, v in enumerate(values, start=1) if v >= target), None)


@dataclass
class Findings:
    """Every part of the report, from one list of summaries."""

    summaries: list[Summary]
    grids: dict[str, Summary] = field(default_factory=dict)
    pairings: list[Pairing] = field(default_factory=list)
    noise_series: list[list[Summary]] = field(default_factory=list)
    searches: list[tuple[Summary, Summary]] = field(default_factory=list)
    longer: list[Pairing] = field(default_factory=list)

    def gap(self, family: str) -> dict[str, Any]:
        """Finding 1 for a family: its best-aIQ and its most accurate network, the accuracy gap (points) and
        the parameter ratio (most accurate / best aIQ)."""
        trials = self.grids[family]["trials"]
        best, top = best_by(trials, "aiq"), best_by(trials, "accuracy")
        return {"best_aiq": best, "most_accurate": top, "gap": top["accuracy"] - best["accuracy"],
                "ratio": top["n_params"] / best["n_params"]}

    def noise_rows(self, series: list[Summary]) -> dict[str, list[NoiseRow]]:
        """Finding 3: per network shape (its summary line), one row per noise level."""
        rows: dict[str, list[NoiseRow]] = {}
        for summary in sorted(series, key=_noise):
            for trial in sorted(summary["trials"], key=lambda t: t["n_params"]):
                rows.setdefault(trial["summary"], []).append(NoiseRow(_noise(summary), trial, trial_epochs(trial)))
        return rows

    def search_curve(self, search: Summary) -> list[float]:
        """Best aIQ so far after each COMPLETE trial of a search, in trial order."""
        best, curve = float("-inf"), []
        for trial in sorted(search["trials"], key=lambda t: t["number"]):
            best = max(best, trial["aiq"])
            curve.append(best)
        return curve


def find(summaries: list[Summary]) -> Findings:
    """Sort the studies into the parts of the report (see the module's docstring)."""
    found = Findings(summaries)
    bases = [s for s in summaries if _is_base(s)]
    for s in sorted(bases, key=lambda s: -len(s["trials"])):
        found.grids.setdefault(s["config"]["search"]["family"], s)
    for s in bases:  # the family's grid trained for longer (or shorter): same networks, other epoch limit
        grid = found.grids[s["config"]["search"]["family"]]
        limit = s["config"]["training"]["max_epochs"]
        if s is not grid and limit != grid["config"]["training"]["max_epochs"] and \
                _setup(s, with_search=False, with_noise=True, with_epochs=False) == \
                _setup(grid, with_search=False, with_noise=True, with_epochs=False):
            pairing = paired(s, grid, f"up to {limit} epochs")
            if pairing.pairs:
                found.longer.append(pairing)
    for s in summaries:
        if not _is_grid(s) or _noise(s) != 0 or s in bases:
            continue
        bn, dropout = _fixed(s, "batch_norm"), _fixed(s, "dropout")
        if bn is None or dropout is None or (bn is False and dropout == 0):
            continue
        label = "batch norm" if bn and not dropout else f"dropout {dropout:g}" if not bn else \
            f"batch norm, dropout {dropout:g}"
        label = f"{s['config']['search']['family']}: {label}"
        setup = _setup(s, with_search=False, with_noise=True)
        base = next((b for b in sorted(bases, key=lambda b: -len(b["trials"]))
                     if _setup(b, with_search=False, with_noise=True) == setup), None)
        if base is not None:
            pairing = paired(s, base, label)
            if pairing.pairs:
                found.pairings.append(pairing)
    series: dict[str, list[Summary]] = {}
    for s in summaries:
        if _is_grid(s):
            series.setdefault(_setup(s, with_search=True, with_noise=False), []).append(s)
    found.noise_series = [g for g in series.values() if len({_noise(s) for s in g}) > 1]
    for s in summaries:
        if _is_grid(s) or s["config"]["study"]["mode"] != "aiq":
            continue
        setup = _setup(s, with_search=True, with_noise=True)
        searched = next((b for b in bases if _setup(b, with_search=True, with_noise=True) == setup), None)
        if searched is not None:
            found.searches.append((s, searched))
    return found


def grid_of(summary: Summary) -> int:
    """The number of combinations a grid study lists."""
    return grid_size(summary["config"]["search"])
