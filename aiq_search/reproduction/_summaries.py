"""A finished study as a small JSON summary: its recorded settings and, for every COMPLETE trial, the
scores and per-epoch history the report uses. Summaries are committed beside the report, so it can be
rebuilt without the SQLite files and weights, which stay out of the repository."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from aiq_search.errors import StorageError
from aiq_search.study import (
    COMMON_KEYS,
    complete_trials,
    count_states,
    describe_trial,
    open_study,
    study_settings,
)
from aiq_search.studyfile import load_study_section

__all__ = ["SUMMARY_VERSION", "NotRun", "grid_size", "load_summary", "shape_key", "summarize_study", "summary_for"]

SUMMARY_VERSION = 1
# What a summary keeps of each epoch of a trial's history.
_EPOCH_KEYS = ("epoch", "train_loss", "train_accuracy", "val_accuracy", "network_efficiency")
# Spec keys that a variant study changes on purpose: pairs are matched on every other key.
VARIANT_KEYS = ("batch_norm", "dropout")


def shape_key(architecture: dict[str, Any]) -> str:
    """The architecture without its common keys and variant switches (batch norm, dropout), as one string:
    the same network shape in two studies has the same key."""
    shape = {k: v for k, v in architecture.items() if k not in COMMON_KEYS and k not in VARIANT_KEYS}
    return json.dumps(shape, sort_keys=True)


def grid_size(search: dict[str, Any]) -> int:
    """How many combinations a study's ``[search]`` table lists: the product of its lists' lengths."""
    return math.prod(len(v) for k, v in search.items() if k != "family" and isinstance(v, list))


def _trial(trial: FrozenTrial) -> dict[str, Any]:
    attrs = trial.user_attrs
    history = [{k: epoch[k] for k in _EPOCH_KEYS if k in epoch} for epoch in attrs.get("history", [])]
    return {
        "number": trial.number,
        "params": dict(trial.params),
        "architecture": attrs["architecture"],
        "summary": describe_trial(trial),
        **{k: attrs[k] for k in ("aiq", "accuracy", "test_accuracy", "val_accuracy", "n_params",
                                 "network_efficiency", "layer_efficiencies", "epochs", "train_seconds", "device")},
        "history": history,
    }


def summarize_study(storage: str, name: str, *, file: str | None = None) -> dict[str, Any]:
    """The summary of study ``name`` in ``storage`` (``file``: the study file it came from, recorded)."""
    study = open_study(storage, name)
    settings = study_settings(study)
    every = study.get_trials(deepcopy=False)
    trials = [t for t in complete_trials(study) if "aiq" in t.user_attrs]
    starts = [t.datetime_start for t in every if t.datetime_start is not None]
    ends = [t.datetime_complete for t in every if t.datetime_complete is not None]
    wall = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
    return {
        "version": SUMMARY_VERSION,
        "study": name,
        "file": file,
        "config": settings.config,
        "counts": dict(count_states(every)),
        "running": sum(t.state == TrialState.RUNNING for t in every),
        "first_start": min(starts).isoformat(timespec="seconds") if starts else None,
        "last_end": max(ends).isoformat(timespec="seconds") if ends else None,
        "wall_seconds": wall,
        "trials": [_trial(t) for t in trials],
    }


def load_summary(path: str | Path) -> dict[str, Any]:
    """A summary written by `summary_for`; a one-line error for a file that is not one."""
    path = Path(path)
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StorageError(f"{path}: cannot read the study summary: {exc}") from None
    if not isinstance(summary, dict) or summary.get("version") != SUMMARY_VERSION:
        raise StorageError(f"{path}: not a study summary of version {SUMMARY_VERSION}")
    return summary


class NotRun(StorageError):
    """A study that has not run yet and has no committed summary: the report lists it as not run."""


def summary_for(study_file: str | Path, summaries: Path, *,
                committed: Path | None = None) -> tuple[dict[str, Any], Path | None]:
    """The summary of a study file's study, and the file it came from: None when it was read from its
    storage (the caller writes it to ``summaries/<study name>.json``), else the summary committed before
    in ``summaries`` or, when that has none, in ``committed`` (the default report's folder). `NotRun` when
    there is none; a summary file that is not one is a one-line `StorageError`."""
    section = load_study_section(study_file)
    places = [summaries / f"{section.name}.json"]
    if committed is not None and committed.resolve() != summaries.resolve():
        places.append(committed / f"{section.name}.json")
    stored = next((path for path in places if path.is_file()), None)
    try:
        summary = summarize_study(section.storage, section.name, file=Path(study_file).as_posix())
    except StorageError:
        if stored is not None:
            return load_summary(stored), stored
        raise NotRun(f"{study_file}: not run yet (no study in its storage, no summary "
                     f"{' or '.join(path.as_posix() for path in places)})") from None
    if not summary["trials"]:
        if stored is not None:
            return load_summary(stored), stored
        raise NotRun(f"{study_file}: not run yet (study {section.name!r} has no COMPLETE trial)")
    return summary, None
