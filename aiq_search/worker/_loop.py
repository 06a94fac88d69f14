"""A worker: works on a study in this process until it has its ``n_trials`` COMPLETE trials (however many
workers share it), its timeout has passed, or its sampler has tried every choice (the grid sampler).

Optuna runs the trials (``study.optimize``); after each one a callback asks `Places` whether this worker may
start another (waiting while the study's last trials run elsewhere) and stops the loop when not. Fault
tolerance is Optuna's: heartbeats fail the trials of a killed worker after the grace period and the retry
callback queues them again for any worker. The storage rides out outages (`aiq_search.study._outage`); one longer
than the study's ``outage_timeout`` stops the worker with that one error, whatever Optuna made of it. Ctrl-C
stops it with `Interrupted`, whose message says what became of its trial.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import optuna
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console

from aiq_search.data import DataSplits
from aiq_search.errors import AiqSearchError
from aiq_search.readers import TrialRow, best_rows
from aiq_search.study import (
    TOP_DEFAULT,
    count_states,
    create_or_load_study,
    load_device_and_data,
    lost_connection,
    open_artifact_store,
    open_storage,
    outage_behind,
    redact,
)
from aiq_search.studyfile import StudyFile
from aiq_search.worker._console import Display
from aiq_search.worker._faults import Faults, storage_error, storage_failure
from aiq_search.worker._interrupt import deferred as ctrl_c_deferred
from aiq_search.worker._objective import Objective, check_network
from aiq_search.worker._quota import Places

__all__ = ["Interrupted", "RunSummary", "run_study", "work_on_study"]

# A worker whose trials all fail in a row is broken (bad environment, bug), not unlucky: stop it.
MAX_FAILURES_IN_A_ROW = 10
# A worker rewrites the dashboard's stored figure at most this often (and when it stops).
DASHBOARD_REFRESH_S = 5.0


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped the worker; the message says what became of the trial it was running."""


@dataclass(frozen=True)
class RunSummary:
    """What one worker did and where the study stands afterwards."""

    study_name: str
    storage: str
    n_trials: int
    counts: dict[str, int]
    ran: int
    seconds: float
    best: list[TrialRow] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.counts.get("COMPLETE", 0) >= self.n_trials


class _DashboardRefresher:
    """Refreshes the dashboard's figure (COMPLETE trials only) after finished trials, at most once every
    ``DASHBOARD_REFRESH_S`` per worker (a refresh rewrites the whole stored figure), and once more when the
    worker stops, so the figure a study is left with shows every trial."""

    def __init__(self, storage: BaseStorage) -> None:
        from aiq_search.readers import publish_figures

        self._publish = publish_figures
        self._storage = storage
        self._last = float("-inf")
        self._stale = False

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state != TrialState.COMPLETE:
            return
        self._stale = True
        if time.monotonic() - self._last >= DASHBOARD_REFRESH_S:
            self.flush(study)

    def flush(self, study: optuna.Study) -> None:
        if self._stale:
            self._publish(study, self._storage)
            self._last, self._stale = time.monotonic(), False


class _Tally:
    """After each trial: count it, stop a worker whose trials keep failing or whose failure is fatal
    (`Faults.fatal`), and ask for the next place."""

    def __init__(self, places: Places, faults: Faults) -> None:
        self.places = places
        self.faults = faults
        self.ran = 0
        self.failures_in_a_row = 0

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.faults.fatal is not None:
            raise self.faults.fatal
        detail = self.faults.detail(trial.number) or trial.user_attrs.get("fail_reason") or "no reason recorded"
        self.count(trial.state == TrialState.FAIL, f"{detail} (trial {trial.number})")
        if not self.places.may_start():
            study.stop()

    def count(self, failed: bool, reason: str) -> None:
        self.ran += 1
        self.failures_in_a_row = self.failures_in_a_row + 1 if failed else 0
        if self.failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
            raise AiqSearchError(f"{self.failures_in_a_row} trials in a row failed in this worker; the last: "
                                 f"{reason}; the worker stops: fix what it names (the "
                                 "code, or the study file's settings) and run again (finished trials are kept)")


def _trial(study: optuna.Study, number: int | None) -> FrozenTrial | None:
    return next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)


def _failed_elsewhere(study: optuna.Study, number: int | None) -> bool:
    """Whether trial ``number``, which this worker ran, has been failed by another worker."""
    trial = _trial(study, number)
    return trial is not None and trial.state == TrialState.FAIL


def _interrupted(study: optuna.Study, number: int | None) -> Interrupted:
    """What Ctrl-C left of the trial this worker last started (the objective marks it FAIL)."""
    trial = _trial(study, number)
    if trial is None or trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return Interrupted("interrupted between trials")
    if trial.state == TrialState.RUNNING:  # stopped before Optuna could record its end
        return Interrupted(f"interrupted: trial {trial.number} left RUNNING; it fails by heartbeat after the "
                           "grace period")
    return Interrupted(f"interrupted: trial {trial.number} marked {trial.state.name}")


def _optimize(study: optuna.Study, objective: Objective, places: Places, tally: _Tally, display: Display,
              callbacks: list[Callable[[optuna.Study, FrozenTrial], None]], *, outage_timeout: float) -> None:
    """``study.optimize`` until no place is left; going on after another worker failed this worker's trial,
    and after a connection was lost under a read that Optuna makes through its trial cache, which the storage
    cannot make again (`aiq_search.study._outage`): new connections wait for the server. The latter only for as long
    as the outage timeout while no trial finishes."""
    lost_since, ran_then = 0.0, -1
    while True:
        try:
            if not places.may_start():
                return
            with ctrl_c_deferred():  # not inside Optuna's ask and tell (`aiq_search.worker._interrupt`)
                study.optimize(objective, catch=(Exception,), callbacks=callbacks)
            return  # stopped by the tally (no place left) or by the sampler (every choice tried)
        except (UpdateFinishedTrialError, ValueError):  # Optuna's tell: "Cannot tell a FAIL trial"
            # another worker failed this worker's trial as dead (its heartbeats did not reach the storage
            # within the grace period) and queued its retry: go on
            if not _failed_elsewhere(study, objective.trial_number):
                raise
            reason = f"trial {objective.trial_number}: another worker failed it when its heartbeats stopped"
            display.line(reason)
            tally.count(True, reason)
        except Exception as exc:
            if outage_behind(exc) is not None or not lost_connection(exc):
                raise
            if tally.ran != ran_then:
                lost_since, ran_then = time.monotonic(), tally.ran
            if time.monotonic() - lost_since >= outage_timeout:
                raise


def work_on_study(study: optuna.Study, config: StudyFile, *, storage: BaseStorage, label: str | None = None,
                  console: Console | None = None, progress_bar: bool = True,
                  device_and_data: tuple[torch.device, DataSplits] | None = None,
                  show_traceback: bool = False) -> RunSummary:
    """Run trials of ``study`` in this process until it has ``config.study.n_trials`` COMPLETE trials, its
    timeout has passed or its sampler stops it. ``storage`` is the one ``study`` was loaded from (for the
    dashboard's figure). A failed trial's traceback goes to a log file its line names, or with
    ``show_traceback`` to stderr (`aiq_search.worker._faults`). Safe to run in many processes on one study."""
    device, data = device_and_data or load_device_and_data(config)
    started = time.monotonic()
    n_trials = config.study.n_trials
    deadline = started + config.study.timeout if config.study.timeout is not None else None
    faults = Faults(study.study_name, storage=config.study.storage, show_traceback=show_traceback)
    with Display(console, n_trials, config.training.max_epochs, bar=progress_bar,
                 prefix=f"[{label}] " if label else "", faults=faults) as display:
        places = Places(study, n_trials, deadline=deadline, poll_s=min(2.0, config.study.heartbeat_interval / 2),
                        on_wait=display.waiting)
        tally = _Tally(places, faults)
        display.study(study)
        objective = Objective(config, data, device, places, on_start=display.started, on_epoch=display.epoch,
                              faults=faults)
        refresher = _DashboardRefresher(storage)
        try:
            _optimize(study, objective, places, tally, display, [display.finished, refresher, tally],
                      outage_timeout=config.study.outage_timeout)
        except KeyboardInterrupt:
            raise _interrupted(study, objective.trial_number) from None
        except Exception as exc:
            outage = outage_behind(exc)
            if outage is not None:
                raise outage from None
            root = storage_failure(exc)
            if root is None:
                raise
            raise storage_error(root, config.study.storage) from None
        refresher.flush(study)
    trials = study.get_trials(deepcopy=False)
    return RunSummary(study.study_name, redact(config.study.storage), n_trials, dict(count_states(trials)), tally.ran,
                      time.monotonic() - started, best_rows(trials, TOP_DEFAULT))


def run_study(config: StudyFile, *, create: bool = True, worker_index: int = 0, label: str | None = None,
              console: Console | None = None, progress_bar: bool = True, show_traceback: bool = False) -> RunSummary:
    """Create (``create``) or join the study of ``config`` and work on it in this process until done.

    Re-running resumes: finished trials count towards ``n_trials`` and are never repeated.
    """
    if config.training.threads is not None:
        torch.set_num_threads(config.training.threads)
    # before the storage: a missing data set or artifacts folder must not leave an empty study behind
    device, data = load_device_and_data(config)
    faults = Faults(config.study.name, show_traceback=show_traceback)
    check_network(config, data, faults)
    open_artifact_store(config.study.artifacts, create=True)
    study_cfg = config.study
    storage = open_storage(study_cfg.storage, heartbeat_interval=study_cfg.heartbeat_interval,
                           grace_period=study_cfg.grace_period, max_retry=study_cfg.max_retry, create=create,
                           outage_timeout=study_cfg.outage_timeout)
    try:
        study = create_or_load_study(config, storage, create=create, worker_index=worker_index, data=data)
    except Exception as exc:  # e.g. recording the settings on a full disk
        root = storage_failure(exc)
        if root is None:
            raise
        raise storage_error(root, study_cfg.storage) from None
    return work_on_study(study, config, storage=storage, label=label, console=console, progress_bar=progress_bar,
                         device_and_data=(device, data), show_traceback=show_traceback)
