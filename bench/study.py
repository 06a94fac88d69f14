"""Throughput of the study service on PostgreSQL: trials per hour with 1 and with 2 workers, and the share
of the workers' time spent in storage calls.

The study is studies/quickstart.toml (digits, small LeNet-5 ranges, up to 15 epochs) with random sampling and no
pruning, so every trial does the same kind of work in both runs. Each worker is its own process with one
torch thread; both runs happen here, one after the other, each on a fresh PostgreSQL database.

Trials per hour count COMPLETE trials over the span from the first trial's start to the last one's end (as
the storage recorded them), so process start-up and data loading are left out. The storage share is the time
a worker's main thread spent inside Optuna's SQL storage (every RDBStorage method, outermost call only; the
heartbeat thread is not counted, as it does not hold up trials) divided by the time its loop ran; the part
spent while the dashboard callback refreshed its figure (after each COMPLETE trial) is shown on its own.

    python bench/study.py [--n-trials 20] [--server postgresql+psycopg://root@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import psycopg
import torch
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from aiq_search import dashboard
from aiq_search import study as study_module
from aiq_search.storage import open_storage
from aiq_search.study import create_or_load_study, load_device_and_data, work_on_study
from aiq_search.studyfile import StudyFile, load_study_file

REPO = Path(__file__).resolve().parent.parent
STORAGE_METHODS = [name for name in dir(RDBStorage) if callable(getattr(RDBStorage, name))
                   and not name.startswith("__") and name not in ("remove_session", "get_heartbeat_interval",
                                                                 "get_heartbeat_stale_trial_callback")]


class StorageTimer:
    """Wraps the storage instance's methods to add up the main thread's time inside them, and the dashboard's
    figure refresh to tell its share apart."""

    def __init__(self, storage: RDBStorage) -> None:
        self.seconds = 0.0
        self.dashboard_seconds = 0.0
        self.in_dashboard = False
        self.calls: Counter[str] = Counter()
        self.by_method: Counter[str] = Counter()
        self._depth = 0
        self._main = threading.get_ident()
        for name in STORAGE_METHODS:
            setattr(storage, name, self._wrap(name, getattr(storage, name)))

    def _wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != self._main or self._depth:
                return method(*args, **kwargs)
            self._depth += 1
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                self._depth -= 1
                self.seconds += elapsed
                self.dashboard_seconds += elapsed if self.in_dashboard else 0.0
                self.calls[name] += 1
                self.by_method[name] += elapsed

        return timed

    def watch_dashboard(self, publish: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(publish)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.in_dashboard = True
            try:
                return publish(*args, **kwargs)
            finally:
                self.in_dashboard = False

        return timed


def worker(config: StudyFile, index: int, results: multiprocessing.Queue) -> None:
    """One worker process: the study service's own loop, on a timed storage."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the table is the output
    torch.set_num_threads(1)
    device_and_data = load_device_and_data(config)
    study_cfg = config.study
    storage = open_storage(study_cfg.storage, heartbeat_interval=study_cfg.heartbeat_interval,
                           grace_period=study_cfg.grace_period, create=False)
    study = create_or_load_study(config, storage, create=False, worker_index=index)
    timer = StorageTimer(storage)
    # the trial's batched attribute write commits outside any storage method: time it whole, as one call
    study_module._set_user_attrs = timer._wrap("_set_user_attrs", study_module._set_user_attrs)
    dashboard.publish_figures = timer.watch_dashboard(dashboard.publish_figures)  # looked up after each trial
    started = time.perf_counter()
    summary = work_on_study(study, config, worker_index=index, progress_bar=False,
                            device_and_data=device_and_data)
    results.put({"index": index, "ran": summary.ran, "loop_s": time.perf_counter() - started,
                 "storage_s": timer.seconds, "dashboard_s": timer.dashboard_seconds,
                 "calls": sum(timer.calls.values()),
                 "by_method": dict(timer.by_method.most_common(4))})


def run(config: StudyFile, workers: int) -> dict[str, Any]:
    """Create the study, run ``workers`` worker processes on it, and measure."""
    create_or_load_study(config, open_storage(config.study.storage), create=True)
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()
    processes = [context.Process(target=worker, args=(config, i, results)) for i in range(workers)]
    for process in processes:
        process.start()
    reports = [results.get(timeout=1800) for _ in processes]
    for process in processes:
        process.join()
    study = optuna.load_study(study_name=config.study.name, storage=config.study.storage)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    loop_s = sum(r["loop_s"] for r in reports)
    storage_s = sum(r["storage_s"] for r in reports)
    dashboard_s = sum(r["dashboard_s"] for r in reports)
    by_method: Counter[str] = Counter()
    for report in reports:
        by_method.update(report["by_method"])
    return {"workers": workers, "complete": len(done), "trials": len(study.get_trials()), "span_s": span,
            "per_hour": len(done) / span * 3600, "storage_share": storage_s / loop_s,
            "dashboard_share": dashboard_s / loop_s,
            "calls_per_trial": sum(r["calls"] for r in reports) / sum(r["ran"] for r in reports),
            "storage_ms_per_trial": 1000 * storage_s / sum(r["ran"] for r in reports),
            "top": by_method.most_common(3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--n-trials", type=int, default=20)
    parser.add_argument("--server", default="postgresql+psycopg://root@127.0.0.1:5432/postgres",
                        help="a PostgreSQL server URL; each run gets its own fresh database there")
    args = parser.parse_args()
    server = make_url(args.server)
    admin_dsn = server.set(drivername="postgresql").render_as_string(hide_password=False)
    base = load_study_file(REPO / "studies" / "quickstart.toml")
    rows = []
    for workers in (1, 2):
        database = f"aiq_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{database}"')
        try:
            url = server.set(database=database).render_as_string(hide_password=False)
            raw = base.model_dump()
            with tempfile.TemporaryDirectory(prefix="aiq-bench-") as artifacts:
                raw["study"].update(name=f"bench-{workers}", storage=url, sampler="random", pruner="none",
                                    n_trials=args.n_trials, artifacts=artifacts)
                raw["training"].update(device="cpu", threads=1)
                rows.append(run(StudyFile.model_validate(raw), workers))
        finally:
            with psycopg.connect(admin_dsn, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    print(f"study service on PostgreSQL: quickstart study, {args.n_trials} COMPLETE trials, random sampler, "
          "no pruning, 1 torch thread per worker")
    print(f"{'workers':>7} {'complete':>8} {'span s':>8} {'trials/h':>9} {'speed-up':>8} {'storage':>8} "
          f"{'dashboard':>9} {'calls/trial':>11} {'storage ms/trial':>16}  top storage methods (s)")
    for row in rows:
        top = ", ".join(f"{name} {seconds:.2f}" for name, seconds in row["top"])
        print(f"{row['workers']:>7} {row['complete']:>8} {row['span_s']:>8.1f} {row['per_hour']:>9.0f} "
              f"{row['per_hour'] / rows[0]['per_hour']:>7.2f}x {row['storage_share']:>7.1%} "
              f"{row['dashboard_share']:>8.1%} "
              f"{row['calls_per_trial']:>11.1f} {row['storage_ms_per_trial']:>16.1f}  {top}")
    print("storage: share of the workers' loop time in storage calls; dashboard: the part of it spent "
          "refreshing the dashboard figure")
    print("targets: 2 workers >= 1.70x one worker; storage share <= 5%")


if __name__ == "__main__":
    main()
