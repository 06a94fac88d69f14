"""Throughput of the study service on PostgreSQL: trials per hour with 1 and with 2 workers, and the share
of the workers' time spent in storage calls.

The study is studies/quickstart.toml (digits, small LeNet-5 ranges, up to 15 epochs) without pruning; both runs
train the same architectures, drawn at random from its space once and replayed by trial number (the work per
run would otherwise differ with each worker's sampler seed). Each worker is its own process with one torch thread;
the runs happen here, one after the other, each on a fresh PostgreSQL database, in several rounds (rotating
their order, since this machine's speed drifts). A third run per round, one worker on Optuna's RDBStorage as it
is, is the baseline for the storage figures. Last, the shipped quickstart as it is (TPE sampler, median
pruner) runs once with each storage.

Trials per hour count COMPLETE trials over the span from the first trial's start to the last one's end (as
the storage recorded them), so process start-up and data loading are left out. The storage share is the time
a worker's main thread spent inside the SQL storage (every method of Optuna's RDBStorage and of aiq_search's
BufferedRDBStorage over it, outermost call only; the heartbeat thread is not counted, as it does not hold up
trials) divided by the time its loop ran; the part spent while the dashboard callback refreshed its figure
(after each COMPLETE trial) is shown on its own. Calls are storage method calls (a buffered write is a call
that touches no database); commits are the database transactions the main thread made.

    python bench/study.py [--n-trials 20] [--rounds 5] [--server postgresql+psycopg://root@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import statistics
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
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import event
from sqlalchemy.engine import make_url

from aiq_search import dashboard
from aiq_search import storage as storage_module
from aiq_search.architectures import FAMILIES
from aiq_search.data import load_dataset
from aiq_search.storage import BufferedRDBStorage, open_storage
from aiq_search.study import create_or_load_study, load_device_and_data, work_on_study
from aiq_search.studyfile import StudyFile, load_study_file

REPO = Path(__file__).resolve().parent.parent
STORAGE_METHODS = [name for name in dir(BufferedRDBStorage) if callable(getattr(BufferedRDBStorage, name))
                   and not name.startswith("__") and name not in ("remove_session", "get_heartbeat_interval",
                                                                 "get_heartbeat_stale_trial_callback")]


class StorageTimer:
    """Wraps the storage instance's methods to add up the main thread's time inside them, and the dashboard's
    figure refresh to tell its share apart."""

    def __init__(self, storage: BufferedRDBStorage) -> None:
        self.seconds = 0.0
        self.dashboard_seconds = 0.0
        self.in_dashboard = False
        self.calls: Counter[str] = Counter()
        self.by_method: Counter[str] = Counter()
        self.commits = 0
        self._depth = 0
        self._main = threading.get_ident()
        event.listen(storage.engine, "commit", self._count_commit)
        for name in STORAGE_METHODS:
            if hasattr(storage, name):
                setattr(storage, name, self._wrap(name, getattr(storage, name)))

    def _count_commit(self, connection: Any) -> None:
        if threading.get_ident() == self._main:
            self.commits += 1

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


def worker(config: StudyFile, index: int, params: list[dict[str, Any]] | None, results: multiprocessing.Queue,
           plain: bool) -> None:
    """One worker process: the study service's own loop, on a timed storage (``plain``: Optuna's RDBStorage
    as it is, the baseline, which every backend outside aiq_search's upsert list gets)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the table is the output
    torch.set_num_threads(1)
    if plain:
        storage_module._UPSERT_BACKENDS = ()
    device_and_data = load_device_and_data(config)
    study_cfg = config.study
    storage = open_storage(study_cfg.storage, heartbeat_interval=study_cfg.heartbeat_interval,
                           grace_period=study_cfg.grace_period, create=False)
    study = create_or_load_study(config, storage, create=False, worker_index=index)
    if params is not None:
        study.sampler = ReplaySampler(params)
    timer = StorageTimer(storage)
    dashboard.publish_figures = timer.watch_dashboard(dashboard.publish_figures)  # looked up after each trial
    started = time.perf_counter()
    summary = work_on_study(study, config, worker_index=index, progress_bar=False,
                            device_and_data=device_and_data)
    results.put({"index": index, "ran": summary.ran, "loop_s": time.perf_counter() - started,
                 "storage_s": timer.seconds, "dashboard_s": timer.dashboard_seconds,
                 "by_method": dict(timer.by_method), "calls_by_method": dict(timer.calls),
                 "commits": timer.commits})


def sample_params(config: StudyFile, n: int) -> list[dict[str, Any]]:
    """``n`` parameter sets drawn at random from the study's search space, so both runs train the same nets."""
    family = FAMILIES[config.search.family]
    space = config.search.space()
    splits = load_dataset(config.data.dataset, val_size=config.data.val_size, seed=config.study.seed)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=config.study.seed))
    params = []
    for _ in range(n):
        trial = study.ask()
        family.sample(trial, space, splits.input_shape, splits.num_classes)
        params.append(trial.params)
        study.tell(trial, 0.0)
    return params


class ReplaySampler(optuna.samplers.RandomSampler):
    """Trial number k gets parameter set k (a surplus trial past the list wraps round): every run trains the
    same nets, through the same storage calls as any sampler's trials."""

    def __init__(self, params: list[dict[str, Any]]) -> None:
        super().__init__(seed=0)
        self.params = params

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.params[trial.number % len(self.params)][param_name]


def run(config: StudyFile, workers: int, params: list[dict[str, Any]] | None, plain: bool = False) -> dict[str, Any]:
    """Create the study, run ``workers`` worker processes on it (replaying ``params``, if given, instead of
    the study file's sampler), and measure."""
    create_or_load_study(config, open_storage(config.study.storage), create=True)
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()
    processes = [context.Process(target=worker, args=(config, i, params, results, plain)) for i in range(workers)]
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
    by_method: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for report in reports:
        by_method.update(report["by_method"])
        calls.update(report["calls_by_method"])
    ran = sum(r["ran"] for r in reports)
    return {"workers": workers, "complete": len(done), "trials": len(study.get_trials()), "span_s": span,
            "per_hour": len(done) / span * 3600,
            "storage_share": storage_s / loop_s, "dashboard_share": sum(r["dashboard_s"] for r in reports) / loop_s,
            "calls_per_trial": sum(calls.values()) / ran,
            "commits_per_trial": sum(r["commits"] for r in reports) / ran,
            "storage_ms_per_trial": 1000 * storage_s / ran,
            "methods": [(name, calls[name] / ran, 1000 * seconds / ran) for name, seconds in by_method.most_common()]}


VARIANTS = (("1", 1, False), ("2", 2, False), ("1, Optuna's RDBStorage", 1, True))  # label, workers, plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--n-trials", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of a 1-worker, a 2-worker and a baseline run (order rotating); medians shown")
    parser.add_argument("--server", default="postgresql+psycopg://root@127.0.0.1:5432/postgres",
                        help="a PostgreSQL server URL; each run gets its own fresh database there")
    args = parser.parse_args()
    server = make_url(args.server)
    admin_dsn = server.set(drivername="postgresql").render_as_string(hide_password=False)
    base = load_study_file(REPO / "studies" / "quickstart.toml")
    params = sample_params(base, args.n_trials)

    def measure(workers: int, plain: bool, shipped: bool = False) -> dict[str, Any]:
        database = f"aiq_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{database}"')
        try:
            url = server.set(database=database).render_as_string(hide_password=False)
            raw = base.model_dump()
            with tempfile.TemporaryDirectory(prefix="aiq-bench-") as artifacts:
                raw["study"].update(name=f"bench-{workers}", storage=url, n_trials=args.n_trials, artifacts=artifacts)
                if not shipped:
                    raw["study"].update(sampler="random", pruner="none")
                raw["training"].update(device="cpu", threads=1)
                return run(StudyFile.model_validate(raw), workers, None if shipped else params, plain)
        finally:
            with psycopg.connect(admin_dsn, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    rounds: list[dict[str, dict[str, Any]]] = []  # per round: variant label -> run
    for round_index in range(args.rounds):
        order = VARIANTS[round_index % 3:] + VARIANTS[:round_index % 3]  # the machine's speed drifts
        rows = {label: measure(workers, plain) for label, workers, plain in order}
        for label, _, _ in VARIANTS:
            rows[label]["speed_up"] = rows[label]["per_hour"] / rows["1"]["per_hour"]
        rounds.append(rows)

    def median(label: str, key: str) -> float:
        return statistics.median(rows[label][key] for rows in rounds)

    print(f"study service on PostgreSQL: quickstart study, {args.n_trials} COMPLETE trials (the same {args.n_trials} "
          f"random architectures in every run), no pruning, 1 torch thread per worker; medians of {args.rounds} rounds")
    print(f"{'workers':>22} {'span s':>7} {'trials/h':>9} {'speed-up':>8} {'storage':>8} {'dashboard':>9} "
          f"{'calls/trial':>11} {'commits/trial':>13} {'storage ms/trial':>16}")
    for label, _, _ in VARIANTS:
        print(f"{label:>22} {median(label, 'span_s'):>7.1f} {median(label, 'per_hour'):>9.0f} "
              f"{median(label, 'speed_up'):>7.2f}x {median(label, 'storage_share'):>7.1%} "
              f"{median(label, 'dashboard_share'):>8.1%} {median(label, 'calls_per_trial'):>11.1f} "
              f"{median(label, 'commits_per_trial'):>13.1f} {median(label, 'storage_ms_per_trial'):>16.1f}")
    print("per round: 2-worker speed-up " + ", ".join(f"{rows['2']['speed_up']:.2f}x" for rows in rounds)
          + "; storage share (1 worker / 2 workers / baseline) "
          + ", ".join("/".join(f"{rows[label]['storage_share']:.1%}" for label, _, _ in VARIANTS) for rows in rounds))
    baseline = VARIANTS[2][0]
    print(f"storage time per trial, Optuna's RDBStorage / aiq_search's: "
          f"{median(baseline, 'storage_ms_per_trial') / median('1', 'storage_ms_per_trial'):.2f}x")
    for label in ("1", baseline):
        print(f"storage calls per trial by method ({label} worker, last round): calls, ms")
        for name, calls, ms in rounds[-1][label]["methods"]:
            print(f"  {name:<36} {calls:>6.1f} {ms:>7.1f}")
    print("the shipped quickstart as it is (TPE sampler, median pruner: pruning checks read the study each epoch), "
          "1 worker, one run each:")
    for label, plain in (("aiq_search", False), ("Optuna's RDBStorage", True)):
        row = measure(1, plain, shipped=True)
        print(f"  {label:<20} {row['complete']} complete of {row['trials']} trials in {row['span_s']:.1f} s, "
              f"storage {row['storage_share']:.1%} ({row['storage_ms_per_trial']:.1f} ms and "
              f"{row['commits_per_trial']:.1f} commits per trial)")
    print("storage: share of the workers' loop time in storage calls; dashboard: the part of it spent "
          "refreshing the dashboard figure")
    print("targets: 2 workers >= 1.70x one worker; storage share <= 5%")


if __name__ == "__main__":
    main()
