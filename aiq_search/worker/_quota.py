"""Keeping count among workers: a study's ``n_trials`` is the number of COMPLETE trials it ends with, however
many workers share it.

A worker starts a trial only while COMPLETE + RUNNING trials are fewer than ``n_trials`` (or a retried trial
is WAITING), and waits while the last trials run elsewhere, since one of them may still fail and need
replacing. A trial that another worker started at the same instant checks its place in trial-number order:
it waits for the earlier trials, runs if one of them ends without completing, and gives itself up (FAIL,
with its reason) if they complete the study, so the count is never overshot. Dead workers' trials are
failed by Optuna's heartbeat check while a worker waits.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter
from collections.abc import Callable

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.trial import Trial

from aiq_search.study import count_states, grid_exhausted
from aiq_search.worker._interrupt import check as check_interrupt

__all__ = ["Places", "Surplus"]


class Surplus(Exception):
    """This trial is not needed: the study already has all the trials it needs, or a twin runs its grid
    combination."""


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail the trials of dead workers (heartbeat older than the grace period) and queue their retries, as
    Optuna does before each trial; a worker waiting for the study's last trials does it while it waits."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


class Places:
    """Whether this worker may start another trial of ``study``, and whether a started trial may run."""

    def __init__(self, study: optuna.Study, n_trials: int, *, deadline: float | None, poll_s: float,
                 on_wait: Callable[[], None] | None = None) -> None:
        self.study = study
        self.on_wait = on_wait  # told when this worker waits for trials running elsewhere
        self.n_trials = n_trials
        self.deadline = deadline
        self.poll_s = poll_s
        self.seen: Counter[str] = Counter()  # the study's trials by state when this worker last decided

    def may_start(self) -> bool:
        """True if this worker should start another trial; waits while the study's last trials run
        elsewhere; False once the study has its trials or the deadline has passed."""
        while True:
            counts = count_states(self.study.get_trials(deepcopy=False))
            if counts["COMPLETE"] >= self.n_trials or grid_exhausted(self.study):
                return False
            if self.deadline is not None and time.monotonic() >= self.deadline:
                return False
            if counts["WAITING"] or counts["COMPLETE"] + counts["RUNNING"] < self.n_trials:
                self.seen = counts
                return True
            if self.on_wait is not None:
                self.on_wait()
            fail_stale_trials(self.study)  # one of the running trials may be a dead worker's
            time.sleep(self.poll_s)

    def wait_for_place(self, trial: Trial) -> None:
        """Hold a trial that a race let start while earlier trials could already fill the study: return when
        it may run, raise `Surplus` if the earlier trials complete the study. Trials that had ended when this
        worker decided to start stay ended, so the study is read only when enough trials numbered below this
        one could still be COMPLETE or RUNNING."""
        seen = self.seen
        if trial.number >= seen.total():  # a new trial: every trial seen then is numbered below it
            may_fill = trial.number - seen["FAIL"] - seen["PRUNED"]
            if may_fill < self.n_trials:
                return
        while True:
            ahead = count_states(t for t in self.study.get_trials(deepcopy=False) if t.number < trial.number)
            complete = ahead["COMPLETE"]
            if complete >= self.n_trials:
                raise Surplus(f"not needed: {complete} earlier trials completed the study of {self.n_trials} "
                              "while this one was waiting to start")
            if complete + ahead["RUNNING"] < self.n_trials:
                return
            fail_stale_trials(self.study)
            check_interrupt()
            time.sleep(self.poll_s)
