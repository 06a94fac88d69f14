"""What a worker makes of a trial that fails in the user's code (a family, a data set, settings that cannot
train): one line naming the trial, the error and the innermost frame in the user's file, the traceback in a
log file the line names (or printed, with ``--traceback``), and a stop instead of a streak of failures when
the failure is one the study cannot run without:

- a trial that fails before training (sampling, building, counting, the probe's ``metrics.layers``) while
  the study has no COMPLETE or PRUNED trial: the next trials would fail the same way;
- a failure to save the trial's weights (a full disk, a file-size limit, a read-only file system): every
  trial would fail to save them; a study storage that fails to write (`storage_failure`): every trial would fail
  to be recorded.
"""

from __future__ import annotations

import errno
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.exceptions import StorageInternalError
from optuna.trial import TrialState

from aiq_search.errors import AiqSearchError, StorageError, one_line, user_frame
from aiq_search.study import lost_connection, outage_behind, redact

__all__ = ["Fault", "Faults", "disk_full", "log_dir", "storage_error", "storage_failure"]

# errors of a write that no retry fixes: no space, a file-size limit, a quota, a read-only file system
DISK_FULL = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS})
SETUP, TRAIN, SAVE = "setup", "train", "save"  # where in a trial it failed


def log_dir() -> Path:
    """Where a worker writes the tracebacks of failed trials (the system's temporary folder)."""
    return Path(tempfile.gettempdir()) / "aiq-search"


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from or while handling, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def disk_full(exc: BaseException) -> OSError | None:
    """The write error behind ``exc`` that a full disk or a file-size limit raised."""
    return next((e for e in _chain(exc) if isinstance(e, OSError) and e.errno in DISK_FULL), None)


def storage_failure(exc: BaseException) -> BaseException | None:
    """The root cause of ``exc`` when the study storage failed under it (Optuna's `StorageInternalError`:
    a full disk, a read-only file, a broken database); not for an outage (`aiq_search.study._outage`)."""
    if outage_behind(exc) is not None or lost_connection(exc):  # the worker rides these out, or says so
        return None
    chain = _chain(exc)
    return chain[-1] if any(isinstance(e, StorageInternalError) for e in chain) else None


def storage_error(root: BaseException, url: str) -> StorageError:
    """The one line a worker stops with when the storage at ``url`` failed with ``root``."""
    return StorageError(f"the study storage {redact(url)} failed: {one_line(root)}; the worker stops (finished "
                        "trials are kept): free space or fix the storage and run again")


@dataclass(frozen=True)
class Fault:
    """One failed trial: its error on one line, where in the user's code, and the traceback's log file."""

    number: int
    reason: str
    where: str | None
    log: Path | None
    fatal: AiqSearchError | None

    def line(self) -> str:
        """``RuntimeError: boom at my_models.py:41 in build; traceback: /tmp/aiq-search/s-trial-3.log``."""
        text = self.reason + (f" at {self.where}" if self.where else "")
        return text + (f"; traceback: {self.log}" if self.log else "")


class Faults:
    """The failures of this worker's trials, by trial number; `fatal` is set once one means stop."""

    def __init__(self, study_name: str, *, storage: str = "", show_traceback: bool = False) -> None:
        self.study_name = study_name
        self.storage = storage
        self.show_traceback = show_traceback
        self.faults: dict[int, Fault] = {}
        self.fatal: AiqSearchError | None = None

    def failed(self, trial: optuna.Trial, exc: BaseException, stage: str) -> Fault:
        """Record why ``trial`` failed at ``stage`` and whether the worker must stop."""
        fault = Fault(trial.number, one_line(exc), user_frame(exc), self._keep_traceback(trial.number, exc), None)
        root = storage_failure(exc)
        stop = self._stop(trial, exc, stage) if root is None else None
        if root is not None:
            fault = Fault(fault.number, fault.reason, fault.where, fault.log, storage_error(root, self.storage))
            self.fatal = fault.fatal
        elif stop is not None:
            error, advice = stop
            fault = Fault(fault.number, fault.reason, fault.where, fault.log,
                          error(f"trial {trial.number} failed: {fault.line()}; {advice}"))
            self.fatal = fault.fatal
        self.faults[trial.number] = fault
        return fault

    @staticmethod
    def _stop(trial: optuna.Trial, exc: BaseException, stage: str) -> tuple[type[AiqSearchError], str] | None:
        """Why no later trial can do better, as the error to stop with and what to do; None to go on."""
        if stage == SAVE or disk_full(exc) is not None:  # no later trial can write either
            what = "the trial's weights could not be saved" if stage == SAVE else "a disk is full or read-only"
            return StorageError, (f"{what}: free space for the artifacts (and the temporary folder) and run "
                                  "again (finished trials are kept)")
        if stage == SETUP and not trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,
                                                                                 TrialState.PRUNED)):
            return AiqSearchError, ("the study's first network could not be set up, so no trial can run: fix "
                                    "the family, the data set or [metrics] layers and run again")
        return None

    def refusal(self, exc: BaseException) -> AiqSearchError:
        """Why a run is refused when no network of its search can be set up (`objective.check_network`)."""
        fault = Fault(-1, one_line(exc), user_frame(exc), self._keep_traceback("setup", exc), None)
        return AiqSearchError(f"the search's first network cannot be set up: {fault.line()}; fix the family, "
                              "the data set or [metrics] layers and run again")

    def _keep_traceback(self, number: int | str, exc: BaseException) -> Path | None:
        text = "".join(traceback.format_exception(exc))
        if self.show_traceback:
            print(text, end="", file=sys.stderr, flush=True)
            return None
        path = log_dir() / f"{self.study_name}-{'trial-' if isinstance(number, int) else ''}{number}.log"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError:  # a full disk here too: the line still names the error and where it happened
            return None
        return path

    def detail(self, number: int) -> str | None:
        """The line for trial ``number``'s failure, if it failed here in the user's code."""
        fault = self.faults.get(number)
        return None if fault is None else fault.line()
