"""``launch --ray`` against the local ``launch``: the same study, the same number of workers, in one run.

The study trains one fixed LeNet-300 architecture on digits (every trial the same work; no pruning), on a
fresh PostgreSQL database per run, each worker with one CPU and one torch thread. The local run is
`aiq_search.launch._local.launch` (one ``aiq-search worker`` process per worker); the Ray run is
`aiq_search.launch._ray.launch_on_ray` on a new local Ray instance (its start is part of the run, as for a
user). The runs alternate over the rounds (this machine's speed drifts), and the table shows each run and
the medians.

Trials per hour count COMPLETE trials over the span from the first trial's start to the last one's end, as
the storage recorded them; trial s is the median COMPLETE trial's duration (the work itself, which Ray
should not slow); start-up is the time from the launch call until every worker runs a trial (the
workers-th trial's start: for Ray, starting the instance, placing the actors, the workers importing torch
and loading the data); total is the launch call's wall time.

    python bench/ray.py [--workers 2] [--n-trials 12] [--epochs 300] [--rounds 2]
                        [--server postgresql+psycopg://root@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import psycopg
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from aiq_search.launch import launch, launch_on_ray
from aiq_search.studyfile import StudyFile, load_study_file

STUDY = """\
[study]
name = "bench-ray"
storage = "{storage}"
artifacts = "{artifacts}"
sampler = "random"
pruner = "none"
n_trials = {n_trials}
seed = 0

[data]
dataset = "digits"

[search]
family = "lenet300"
n_layers = 1
width = 64
batch_norm = false
dropout = 0.0

[training]
optimizer = "adam"
lr = 0.01
batch_size = 64
max_epochs = {epochs}
patience = {epochs}
device = "cpu"
threads = 1
"""


@contextmanager
def fresh_database(server: str) -> Iterator[str]:
    """A new database on the server for one run, dropped afterwards."""
    url = make_url(server)
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"aiq_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def measure(config: StudyFile, workers: int, called: datetime.datetime, seconds: float) -> dict[str, float]:
    study = optuna.load_study(study_name=config.study.name, storage=config.study.storage)
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert len(done) == config.study.n_trials, f"{len(done)} COMPLETE trials, not {config.study.n_trials}"
    starts = sorted(t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start)
    last = max(t.datetime_complete for t in done)
    return {"startup": (starts[min(workers, len(starts)) - 1] - called).total_seconds(),
            "per_hour": len(done) / (last - starts[0]).total_seconds() * 3600,
            "trial": statistics.median(t.duration.total_seconds() for t in done), "total": seconds}


def run(kind: str, args: argparse.Namespace, folder: Path) -> dict[str, float]:
    with fresh_database(args.server) as storage:
        path = folder / f"{kind}-{uuid.uuid4().hex[:6]}.toml"
        path.write_text(STUDY.format(storage=storage, artifacts=folder / path.stem, n_trials=args.n_trials,
                                     epochs=args.epochs), encoding="utf-8")
        config = load_study_file(path)
        called, started = datetime.datetime.now(), time.monotonic()
        if kind == "ray":
            summary = launch_on_ray(config, workers=args.workers, cpus_per_worker=1.0)
        else:
            summary = launch(path, config, workers=args.workers, devices=["cpu"])
        assert summary.returncode == 0, f"{kind} launch ended with {summary.returncode}"
        return measure(config, args.workers, called, time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--n-trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=300, help="per trial; 300 is about 4 s of training")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--server", default="postgresql+psycopg://root@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    # this file is named ray.py: its folder, first on the path, would shadow the ray package when Ray loads
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results: dict[str, list[dict[str, float]]] = {"local": [], "ray": []}
    with tempfile.TemporaryDirectory(prefix="aiq-bench-ray-") as tmp:
        for round_ in range(args.rounds):
            for kind in ("local", "ray") if round_ % 2 == 0 else ("ray", "local"):
                results[kind].append(run(kind, args, Path(tmp)))
    print(f"\n{args.workers} workers, {args.n_trials} trials of {args.epochs} epochs (digits, fixed LeNet-300 "
          f"64), {args.rounds} rounds, PostgreSQL")
    print(f"{'launch':<14}{'start-up s':>12}{'trials/hour':>14}{'trial s':>10}{'total s':>10}")
    def median(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in results[kind])

    for kind in ("local", "ray"):
        for i, r in enumerate(results[kind]):
            print(f"{kind + ' #' + str(i + 1):<14}{r['startup']:>12.1f}{r['per_hour']:>14.0f}{r['trial']:>10.2f}"
                  f"{r['total']:>10.1f}")
    for kind in ("local", "ray"):
        print(f"{kind + ' median':<14}{median(kind, 'startup'):>12.1f}{median(kind, 'per_hour'):>14.0f}"
              f"{median(kind, 'trial'):>10.2f}{median(kind, 'total'):>10.1f}")
    ratio = median("ray", "per_hour") / median("local", "per_hour")
    print(f"ray / local trials per hour: {ratio:.3f} (target >= 0.95); trial duration ray / local: "
          f"{median('ray', 'trial') / median('local', 'trial'):.3f}; start-up +"
          f"{median('ray', 'startup') - median('local', 'startup'):.1f} s")


if __name__ == "__main__":
    main()
