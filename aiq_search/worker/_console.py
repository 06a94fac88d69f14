"""What a worker shows in its terminal: a live bar (rich) with where the whole study stands — trials by
state, the running trial's epoch, the best aIQ and an estimate of the time left — and one line per finished
trial (with its warnings: `aiq_search.worker._doubts`; a failure as `aiq_search.worker._faults` tells it).
``bar=False`` (quiet mode, logs, launched workers) keeps only the lines."""

from __future__ import annotations

import math

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from aiq_search.readers import TrialRow, best_rows
from aiq_search.training import EpochReport
from aiq_search.worker._faults import Faults

__all__ = ["Display", "time_left"]


def time_left(trials: list[FrozenTrial], n_trials: int) -> float | None:
    """Seconds until the study has ``n_trials`` COMPLETE trials, from its own trials: the time finished trials
    (pruned and failed ones included) took per COMPLETE trial, times the COMPLETE trials still needed, shared
    by the workers now running trials. None until a trial has completed."""
    finished = [(t.state, t.duration) for t in trials if t.state.is_finished() and t.duration is not None]
    complete = sum(state == TrialState.COMPLETE for state, _ in finished)
    if not complete:
        return None
    per_complete = sum(duration.total_seconds() for _, duration in finished) / complete
    workers = max(1, sum(t.state == TrialState.RUNNING for t in trials))
    return max(0, n_trials - complete) * per_complete / workers


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Display:
    """The bar counts COMPLETE trials towards ``n_trials``; its text names the trial and epoch this worker
    runs, the study's trials by state, its best aIQ and the time left."""

    def __init__(self, console: Console | None, n_trials: int, max_epochs: int, *, bar: bool, prefix: str,
                 faults: Faults | None = None) -> None:
        self.console = console
        self.faults = faults
        self.prefix = prefix
        self.n_trials = n_trials
        self.max_epochs = max_epochs
        self.doing = "starting"
        self.study_line = ""
        self.progress: Progress | None = None
        if console is not None and bar and console.is_terminal:
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), console=console, transient=True)
            self.task = self.progress.add_task("starting", total=n_trials)

    def __enter__(self) -> Display:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def _draw(self) -> None:
        if self.progress is not None:  # drawn now: epochs can be shorter than the bar's refresh period
            self.progress.update(self.task, description=f"{self.doing} · {self.study_line}", refresh=True)

    def study(self, study: optuna.Study) -> None:
        """Read where the whole study stands (all workers) into the bar."""
        if self.progress is None:
            return
        trials = study.get_trials(deepcopy=False)
        counts = {state: sum(t.state == state for t in trials) for state in
                  (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)}
        best = best_rows(trials, 1)
        self.study_line = (f"{counts[TrialState.PRUNED]} pruned, {counts[TrialState.FAIL]} failed, "
                           f"{counts[TrialState.RUNNING]} running · best aIQ "
                           f"{'–' if not best else f'{best[0].aiq:.4f}'} · about "
                           f"{_duration(time_left(trials, self.n_trials))} left")
        self.progress.update(self.task, completed=counts[TrialState.COMPLETE])
        self._draw()

    def started(self, trial: Trial) -> None:
        self.doing = f"trial {trial.number} · epoch 1/{self.max_epochs}"
        self.study(trial.study)

    def epoch(self, trial: Trial, report: EpochReport) -> None:
        self.doing = f"trial {trial.number} · epoch {min(report.epoch + 1, self.max_epochs)}/{self.max_epochs}"
        self._draw()

    def waiting(self) -> None:
        self.doing = "waiting for the last trials running elsewhere"
        self._draw()

    def finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.doing = "next trial"
        self.study(study)
        row = TrialRow.of(trial)
        fault = self.faults.faults.get(trial.number) if self.faults is not None else None
        if fault is not None and fault.fatal is not None:
            return  # the worker stops with a line that says it all
        if trial.state == TrialState.COMPLETE:
            detail = (f"aIQ {row.aiq:.4f}  accuracy {row.accuracy:.4f}  {row.n_params:,} params  "
                      f"efficiency {row.network_efficiency:.3f}  {row.epochs} epochs")
        elif trial.state == TrialState.FAIL:
            detail = fault.line() if fault is not None else row.fail_reason or "failed"
        else:
            detail = f"after {len(trial.intermediate_values)} epochs"
        self.line(f"trial {trial.number} {trial.state.name.lower()}: {detail}")
        doubts = trial.user_attrs.get("warnings") if trial.state == TrialState.COMPLETE else None
        if doubts:
            self.line(f"trial {trial.number} warning: {'; '.join(doubts)}")

    def line(self, text: str) -> None:
        if self.console is not None:
            self.console.print(f"{self.prefix}{text}", markup=False, highlight=False, soft_wrap=True)
