"""Throughput of the study service on real work: LeNet-300-100 on MNIST, 1 and 2 workers on PostgreSQL.

Every run trains the same nets: a fixed, seeded list of two-hidden-layer LeNet-300-100 widths is enqueued
(``study.enqueue_trial``) in trial-number order, with batch norm and dropout fixed off through the search
space, so the random sampler picks nothing. Each trial trains ``--epochs`` epochs (no early stop, no
pruning). Each worker is its own process with one torch thread that loads MNIST once and runs aiq_search's
own loop (``work_on_study``) on a storage opened by ``open_storage``, heartbeats included, as the service
runs it. The runs happen here one after the other, each on a fresh PostgreSQL database created and
dropped around it, in rounds whose order rotates (this machine's speed drifts); medians over rounds.

Trials per hour count COMPLETE trials over the span from the first trial's start to the last one's end, as
the storage recorded them, so process start-up and data loading are left out.

The machine's own ceiling, measured in the same rounds: the same trials with no shared database at all,
each worker process on its own in-memory Optuna study (``InMemoryStorage``) holding its share of the
widths (worker i trains widths i, i+N, ...), everything else the same. Its 2-worker speed-up is what two
processes training side by side get on these cores; the service's speed-up is compared with it.

Storage share: the time a worker's main thread spends inside the storage's database transactions, divided
by the time its loop (``work_on_study``) ran, over all workers of a run. A transaction is timed with
SQLAlchemy's public session events on ``RDBStorage.scoped_session``, from its start (before the pooled
connection is checked out and pinged) to the end of its commit or rollback: every SQL round trip, the
ORM's work on the rows and turning them into Optuna's records. Left out: the heartbeat thread (it does not
hold up trials) and the pure in-memory work of Optuna's trial cache in front of the RDB storage. (Timing
the storage object's public methods would miss most calls: Optuna's cache reaches it through private ones.)

    python bench/study.py [--n-trials 20] [--epochs 3] [--rounds 3] [--data-dir ../shared/data]
                          [--server postgresql+psycopg://root@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import psycopg
import torch
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from sqlalchemy import event
from sqlalchemy.engine import make_url

from aiq_search.data import DataSplits, load_dataset
from aiq_search.errors import AiqSearchError
from aiq_search.study import create_or_load_study, load_device_and_data, open_storage
from aiq_search.studyfile import StudyFile, load_study_file
from aiq_search.worker import work_on_study

REPO = Path(__file__).resolve().parent.parent
ARCHITECTURES = 20  # the seeded list every run replays, by trial number
ARCHITECTURE_SEED = 0
SPEED_UP_TARGET = 1.8
STORAGE_SHARE_TARGET = 0.01


def architectures(n: int = ARCHITECTURES, seed: int = ARCHITECTURE_SEED) -> list[dict[str, int]]:
    """``n`` LeNet-300-100-like width pairs around 300-100, the same for every run."""
    rng = random.Random(seed)
    return [{"width_0": rng.randint(150, 500), "width_1": rng.randint(50, 200)} for _ in range(n)]


def bench_config(url: str, artifacts: str, n_trials: int, epochs: int, data_dir: Path) -> StudyFile:
    """The shipped mnist-lenet300 study, made repeatable: random sampler (the enqueued widths fix every
    choice), no pruning, no early stop, a fixed number of epochs, one torch thread on the CPU."""
    raw = load_study_file(REPO / "studies" / "mnist-lenet300.toml").model_dump()
    raw["study"].update(name="bench-lenet300", storage=url, artifacts=artifacts, n_trials=n_trials,
                        sampler="random", pruner="none")
    raw["data"].update(data_dir=str(data_dir))
    raw["search"] = {"family": "lenet300", "n_layers": 2, "batch_norm": False, "dropout": 0.0}
    raw["training"].update(max_epochs=epochs, patience=None, device="cpu", threads=1)
    return StudyFile.model_validate(raw)


class StorageTimer:
    """Adds up the main thread's time inside the storage's database transactions, and counts them and the
    SQL statements they ran (see the module docstring)."""

    def __init__(self, storage: RDBStorage) -> None:
        self.seconds = 0.0
        self.transactions = 0
        self.statements = 0
        self._main = threading.get_ident()
        self._started: dict[int, float] = {}
        event.listen(storage.scoped_session, "after_transaction_create", self._begin)
        event.listen(storage.scoped_session, "after_transaction_end", self._end)
        event.listen(storage.engine, "before_cursor_execute", self._statement)

    def _begin(self, session: Any, transaction: Any) -> None:
        if transaction.parent is None and threading.get_ident() == self._main:
            self._started[id(transaction)] = time.perf_counter()

    def _end(self, session: Any, transaction: Any) -> None:
        started = self._started.pop(id(transaction), None)
        if started is not None:
            self.seconds += time.perf_counter() - started
            self.transactions += 1

    def _statement(self, *args: Any) -> None:
        if threading.get_ident() == self._main:
            self.statements += 1


def worker(config: StudyFile, index: int, results: Any) -> None:
    """One worker process: one torch thread, MNIST loaded once, the service's loop on a timed storage."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the table is the output
    torch.set_num_threads(1)
    device_and_data = load_device_and_data(config)
    study_cfg = config.study
    storage = open_storage(study_cfg.storage, heartbeat_interval=study_cfg.heartbeat_interval,
                           grace_period=study_cfg.grace_period, max_retry=study_cfg.max_retry, create=False)
    study = create_or_load_study(config, storage, create=False, worker_index=index)
    timer = StorageTimer(storage)
    started = time.perf_counter()
    summary = work_on_study(study, config, storage=storage, progress_bar=False, device_and_data=device_and_data)
    results.put({"ran": summary.ran, "loop_s": time.perf_counter() - started, "storage_s": timer.seconds,
                 "transactions": timer.transactions, "statements": timer.statements})


def alone(config: StudyFile, index: int, workers: int, widths: list[dict[str, int]], results: Any) -> None:
    """One worker process of the ceiling: its share of the widths on its own in-memory study."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    device, data = load_device_and_data(config)
    mine = widths[index::workers]
    config = config.model_copy(update={"study": config.study.model_copy(update={"n_trials": len(mine)})})
    storage = optuna.storages.InMemoryStorage()
    study = create_or_load_study(config, storage, create=True, worker_index=index, data=data)
    for params in mine:
        study.enqueue_trial(params)
    work_on_study(study, config, storage=storage, progress_bar=False, device_and_data=(device, data))
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if [t.params for t in done] != mine:
        raise SystemExit(f"bench: worker {index} expected its {len(mine)} widths COMPLETE, got "
                         f"{[t.params for t in done]}")
    results.put({"start": min(t.datetime_start for t in done), "end": max(t.datetime_complete for t in done),
                 "trials": len(done)})


def in_processes(target: Any, args_of: Any, workers: int) -> list[dict[str, Any]]:
    """Run ``target(*args_of(i), results)`` in ``workers`` spawned processes; their reports, one each."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=target, args=(*args_of(i), results)) for i in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    if any(process.exitcode for process in processes):
        raise SystemExit(f"bench: a worker failed (exit codes {[p.exitcode for p in processes]})")
    return [results.get(timeout=10) for _ in processes]


def run_alone(config: StudyFile, workers: int, widths: list[dict[str, int]]) -> dict[str, Any]:
    """The ceiling: ``workers`` processes, each on its own in-memory study, measured as `run` measures."""
    share = [widths[number % len(widths)] for number in range(config.study.n_trials)]  # as `run` enqueues them
    reports = in_processes(alone, lambda i: (config, i, workers, share), workers)
    span = (max(r["end"] for r in reports) - min(r["start"] for r in reports)).total_seconds()
    return {"span_s": span, "per_hour": sum(r["trials"] for r in reports) / span * 3600}


def run(config: StudyFile, data: DataSplits, workers: int, widths: list[dict[str, int]]) -> dict[str, Any]:
    """Create the study, enqueue the widths, run ``workers`` worker processes on it and measure."""
    storage = open_storage(config.study.storage, create=True)
    study = create_or_load_study(config, storage, create=True, data=data)
    for number in range(config.study.n_trials):
        study.enqueue_trial(widths[number % len(widths)])
    reports = in_processes(worker, lambda i: (config, i), workers)
    trials = study.get_trials(deepcopy=False)
    storage.engine.dispose()  # before the database is dropped
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    if len(done) != config.study.n_trials or any(t.params != widths[t.number % len(widths)] for t in done):
        raise SystemExit(f"bench: expected the {config.study.n_trials} enqueued trials COMPLETE, got "
                         f"{[(t.number, t.state.name, t.params) for t in trials]}")
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    ran = sum(r["ran"] for r in reports)
    storage_s = sum(r["storage_s"] for r in reports)
    return {"span_s": span, "per_hour": len(done) / span * 3600,
            "storage_share": storage_s / sum(r["loop_s"] for r in reports),
            "storage_ms_per_trial": 1000 * storage_s / ran,
            "transactions_per_trial": sum(r["transactions"] for r in reports) / ran,
            "statements_per_trial": sum(r["statements"] for r in reports) / ran}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-trials", type=int, default=20, help="COMPLETE trials per run")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs per trial")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of 1 and 2 workers, on the service and alone (order rotating)")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder holding mnist/MNIST/raw (or MNIST/raw)")
    parser.add_argument("--server", default="postgresql+psycopg://root@127.0.0.1:5432/postgres",
                        help="a PostgreSQL server URL; each run gets its own fresh database there")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        data = load_dataset("mnist", data_dir=args.data_dir, val_size=0.1)  # to record the study's settings
    except AiqSearchError as exc:
        print(f"SKIP: {exc} (--data-dir to change)")
        return 0
    server = make_url(args.server)
    admin_dsn = server.set(drivername="postgresql").render_as_string(hide_password=False)
    widths = architectures()

    def measure(workers: int) -> dict[str, Any]:
        database = f"aiq_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{database}"')
        try:
            url = server.set(database=database).render_as_string(hide_password=False)
            with tempfile.TemporaryDirectory(prefix="aiq-bench-") as artifacts:
                config = bench_config(url, artifacts, args.n_trials, args.epochs, args.data_dir)
                return run(config, data, workers, widths)
        finally:
            with psycopg.connect(admin_dsn, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    def measure_alone(workers: int) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="aiq-bench-") as artifacts:
            # the URL is never opened: each worker of the ceiling makes its own in-memory storage
            config = bench_config("sqlite://", artifacts, args.n_trials, args.epochs, args.data_dir)
            return run_alone(config, workers, widths)

    runs = [("service", 1), ("service", 2), ("alone", 1), ("alone", 2)]
    rounds: list[dict[tuple[str, int], dict[str, Any]]] = []
    for index in range(args.rounds):
        order = runs[index % len(runs):] + runs[:index % len(runs)]  # rotating: the machine's speed drifts
        rows = {key: (measure if key[0] == "service" else measure_alone)(key[1]) for key in order}
        for kind in ("service", "alone"):
            rows[kind, 1]["speed_up"] = 1.0
            rows[kind, 2]["speed_up"] = rows[kind, 2]["per_hour"] / rows[kind, 1]["per_hour"]
        rows["service", 2]["of_ceiling"] = rows["service", 2]["speed_up"] / rows["alone", 2]["speed_up"]
        rounds.append(rows)
        print(f"round {index + 1}: " + ", ".join(
            f"{kind} {w} worker(s) {rows[kind, w]['span_s']:.1f} s"
            + (f" (storage {rows[kind, w]['storage_share']:.2%})" if kind == "service" else "")
            for kind, w in order), flush=True)

    def median(key: tuple[str, int], field: str) -> float:
        return statistics.median(rows[key][field] for rows in rounds)

    print(f"\nLeNet-300-100 (2 hidden layers, the same {min(args.n_trials, len(widths))} seeded widths in every run) "
          f"on MNIST, {args.n_trials} trials x {args.epochs} epochs, 1 torch thread per worker, "
          f"{os.cpu_count()} CPU core(s) here; medians of {args.rounds} round(s)")
    print(f"{'run':<34} {'workers':>7} {'span s':>8} {'trials/h':>9} {'speed-up':>9} {'storage':>8} "
          f"{'ms/trial':>9} {'transactions/trial':>18} {'statements/trial':>16}")
    for kind, label in (("service", "service: one PostgreSQL study"), ("alone", "ceiling: own in-memory study each")):
        for workers in (1, 2):
            key = (kind, workers)
            row = (f"{label:<34} {workers:>7} {median(key, 'span_s'):>8.1f} {median(key, 'per_hour'):>9.0f} "
                   f"{median(key, 'speed_up'):>8.2f}x")
            if kind == "service":
                row += (f" {median(key, 'storage_share'):>8.2%} {median(key, 'storage_ms_per_trial'):>9.1f} "
                        f"{median(key, 'transactions_per_trial'):>18.1f} {median(key, 'statements_per_trial'):>16.1f}")
            print(row)
    print("per round, 2-worker speed-up: service " + ", ".join(f"{r['service', 2]['speed_up']:.2f}x" for r in rounds)
          + "; ceiling " + ", ".join(f"{r['alone', 2]['speed_up']:.2f}x" for r in rounds))
    print(f"service speed-up / ceiling speed-up (same round): median {median(('service', 2), 'of_ceiling'):.2f}")
    print(f"storage: share of the workers' loop time inside storage transactions (main thread). Targets: 2 workers "
          f">= {SPEED_UP_TARGET}x one worker (on 2 free cores); storage share <= {STORAGE_SHARE_TARGET:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
