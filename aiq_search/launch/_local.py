"""``aiq-search launch``: several local worker processes on one study, spread over devices.

Each worker is an ordinary ``aiq-search worker`` process (what another machine would run), so local and
remote workers behave the same. The launcher creates or resumes the study first, so workers only join it;
it gives each worker a device (round-robin, several per GPU allowed) and an equal share of the CPU threads.
Workers run in their own session: a Ctrl-C reaches the launcher only, which forwards one SIGINT to each
worker (their running trials end FAIL "interrupted", finished ones are already stored) and waits; a second
Ctrl-C kills them. The storage URL, which may hold a password, reaches the workers in their environment
(`STORAGE_ENV`), never on their command line, which every user of the machine can read.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiq_search.errors import ConfigError, StorageError
from aiq_search.readers import StudyStatus, study_status
from aiq_search.study import create_study
from aiq_search.studyfile import StudyFile

__all__ = ["STORAGE_ENV", "LaunchSummary", "WorkerPlan", "launch", "plan_workers"]

# The environment variable in which `aiq-search worker` finds its storage URL when no --storage is given.
STORAGE_ENV = "AIQ_SEARCH_STORAGE"

# How long interrupted workers get to record their trials' end before they are killed.
STOP_GRACE_S = 60.0


@dataclass(frozen=True)
class WorkerPlan:
    """Where one worker runs: its index (also its sampler seed offset), device and CPU threads."""

    index: int
    device: str
    threads: int


def plan_workers(workers: int, devices: Sequence[str], cpu_count: int) -> list[WorkerPlan]:
    """Devices round-robin; the CPU cores split evenly (at least one thread each)."""
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    if not devices:
        raise ConfigError("devices needs at least one device, e.g. ['cpu'] or ['cuda:0', 'cuda:1']")
    threads = max(1, cpu_count // workers)
    return [WorkerPlan(i, devices[i % len(devices)], threads) for i in range(workers)]


@dataclass(frozen=True)
class LaunchSummary:
    """How the workers ended and where the study stands (``status`` None: the storage was out of reach)."""

    plans: list[WorkerPlan]
    returncodes: list[int]
    interrupted: bool
    seconds: float
    status: StudyStatus | None

    @property
    def returncode(self) -> int:
        """130 after Ctrl-C, else the first failing worker's status, else 0."""
        if self.interrupted:
            return 130
        return next((code for code in self.returncodes if code != 0), 0)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Forward SIGINT to the workers still running and wait for them; kill them on a second Ctrl-C or
    after `STOP_GRACE_S`."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_GRACE_S
    try:
        for process in processes:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
    except (KeyboardInterrupt, subprocess.TimeoutExpired):
        for process in processes:
            if process.poll() is None:
                process.kill()
        for process in processes:
            process.wait()


def launch(study_file: str | Path, config: StudyFile, *, workers: int, devices: Sequence[str] | None = None,
           worker_options: Sequence[str] = (), shared_database: bool = False) -> LaunchSummary:
    """Run ``workers`` local ``aiq-search worker`` processes on the study until it is done (or Ctrl-C).

    ``config`` is ``study_file`` with the command-line overrides applied; ``worker_options`` are those
    same options but the storage (every worker gets ``config``'s in `STORAGE_ENV`), passed on to every
    worker. A study file's ``threads`` caps each worker's share. ``shared_database``: see
    `aiq_search.study.check_database`.
    """
    cores = os.cpu_count() or 1
    if config.training.threads is not None:
        cores = min(cores, config.training.threads * workers)
    plans = plan_workers(workers, list(devices or [config.training.device]), cores)
    create_study(config, shared_database=shared_database)  # everything checked here, once, before any worker
    started = time.monotonic()
    processes: list[subprocess.Popen[bytes]] = []
    interrupted = False
    try:
        for plan in plans:
            env = {**os.environ, "OMP_NUM_THREADS": str(plan.threads), "MKL_NUM_THREADS": str(plan.threads),
                   STORAGE_ENV: config.study.storage}
            command = [sys.executable, "-m", "aiq_search.cli", "worker", str(study_file), *worker_options,
                       "--device", plan.device, "--threads", str(plan.threads),
                       "--worker-index", str(plan.index), "--no-progress"]
            processes.append(subprocess.Popen(command, env=env, start_new_session=True))
        for process in processes:
            process.wait()
    except KeyboardInterrupt:
        interrupted = True
        _stop(processes)
    try:
        status: StudyStatus | None = study_status(config.study.storage, config.study.name)[0]
    except StorageError:  # an outage that stopped the workers, each of which said so
        status = None
    return LaunchSummary(plans, [p.returncode for p in processes], interrupted, time.monotonic() - started,
                         status)
