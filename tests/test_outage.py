"""Workers and readers riding out a PostgreSQL outage (a restart, a server stopped for a while) on a server of
the test's own (`own_postgres`), and a worker stopping with one line when the outage outlasts the study's
``outage_timeout``."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from conftest import OwnPostgres
from optuna.trial import TrialState

from aiq_search.study import open_storage

N_TRIALS = 6


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "aiq_search.cli", *args]


def states(url: str) -> list[TrialState]:
    try:
        return [t.state for t in optuna.load_study(study_name="tiny", storage=url).get_trials()]
    except KeyError:  # not created yet
        return []


def wait_until_mid_study(url: str, workers: list[subprocess.Popen[str]]) -> None:
    """Until a trial has completed and one is running (the workers are past their start)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        now = states(url)
        if TrialState.COMPLETE in now and TrialState.RUNNING in now:
            return
        if any(w.poll() is not None for w in workers):
            pytest.fail("a worker stopped before the outage: " + "".join(w.communicate()[1] for w in workers))
        time.sleep(0.2)
    pytest.fail("no trial completed while another ran")


def start_workers(path: Path, url: str, n: int) -> list[subprocess.Popen[str]]:
    assert subprocess.run(cli("create", str(path)), capture_output=True, text=True, timeout=120).returncode == 0
    return [subprocess.Popen(cli("worker", str(path), "--no-progress", "--worker-index", str(i)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(n)]


@pytest.mark.slow
@pytest.mark.parametrize("outage", ["restart", "stopped 12 s"])
def test_workers_ride_out_an_outage_and_keep_their_trials(
        outage: str, own_postgres: OwnPostgres, write_study: Callable[..., Path]) -> None:
    url = own_postgres.url
    path = write_study(study={"n_trials": N_TRIALS, "storage": url, "heartbeat_interval": 2, "grace_period": 8},
                       training={"max_epochs": 20, "patience": 20})
    workers = start_workers(path, url, 2)
    try:
        wait_until_mid_study(url, workers)
        if outage == "restart":
            own_postgres.restart()
        else:
            own_postgres.stop()
            time.sleep(12)
            own_postgres.start()
        results = [w.communicate(timeout=300) for w in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for worker, (_, err) in zip(workers, results, strict=True):
        assert worker.returncode == 0, err
        assert "Traceback" not in err
        if outage != "restart":  # a restart may pass between two storage calls; 12 s cannot
            assert " unreachable (" in err and "; retrying for up to 300 s" in err
            assert " reachable again after " in err
    trials = optuna.load_study(study_name="tiny", storage=url).get_trials()
    assert [t.state for t in trials].count(TrialState.COMPLETE) == N_TRIALS
    # no trial lost to the outage; one may have given itself up when workers coming back from the outage
    # together both started the study's last trial (aiq_search.worker._quota)
    assert all(t.state == TrialState.COMPLETE or t.user_attrs["fail_reason"].startswith("not needed: ")
               for t in trials), [(t.number, t.state, t.user_attrs.get("fail_reason")) for t in trials]


@pytest.mark.slow
def test_an_outage_longer_than_the_timeout_stops_the_worker_with_one_line(
        own_postgres: OwnPostgres, write_study: Callable[..., Path]) -> None:
    url = own_postgres.url
    path = write_study(study={"n_trials": N_TRIALS, "storage": url, "heartbeat_interval": 2, "grace_period": 8,
                              "outage_timeout": 4.0}, training={"max_epochs": 20, "patience": 20})
    [worker] = start_workers(path, url, 1)
    try:
        wait_until_mid_study(url, [worker])
        own_postgres.stop()
        stopped = time.monotonic()
        _, err = worker.communicate(timeout=120)
        waited = time.monotonic() - stopped
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 2, err
    start, error = err.splitlines()
    where = f"storage postgresql+psycopg://postgres@127.0.0.1:{own_postgres.port}/postgres"
    assert start.startswith(f"[worker 0] {where} unreachable (")
    assert start.endswith("; retrying for up to 4 s")
    assert error.startswith(f"[worker 0] error: {where} unreachable for more than 4 s (outage_timeout), "
                            "giving up: ")  # the prefix of the outage's first line: one worker among several
    assert 4 <= waited < 30
    own_postgres.start()  # the stopped worker's trial fails by heartbeat and another worker completes the study
    after = subprocess.run(cli("worker", str(path), "--no-progress"), capture_output=True, text=True, timeout=300)
    assert after.returncode == 0, after.stderr
    trials = optuna.load_study(study_name="tiny", storage=url).get_trials()
    assert [t.state for t in trials].count(TrialState.COMPLETE) == N_TRIALS
    assert [t.state for t in trials].count(TrialState.FAIL) == 1


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_readers_wait_for_the_server_and_say_so_once(own_postgres: OwnPostgres) -> None:
    """What status and the dashboard read through: the same storage, riding out the same outage."""
    handler = Lines()
    logging.getLogger("aiq_search.study._outage").addHandler(handler)
    lines = handler.lines
    restart = threading.Timer(3.0, own_postgres.start)
    try:
        storage = open_storage(own_postgres.url)
        study = optuna.create_study(storage=storage, study_name="read")
        study.tell(study.ask(), 1.0)
        own_postgres.stop()
        restart.start()
        started = time.monotonic()
        assert [s.study_name for s in storage.get_all_studies()] == ["read"]
        assert time.monotonic() - started >= 3.0
        where = f"storage postgresql+psycopg://postgres@127.0.0.1:{own_postgres.port}/postgres"
        assert len(lines) == 2, lines
        assert lines[0].startswith(f"{where} unreachable (") and lines[0].endswith("; retrying for up to 300 s")
        assert lines[1].startswith(f"{where} reachable again after ")
        assert [t.state for t in optuna.load_study(study_name="read", storage=storage).get_trials()] == [
            TrialState.COMPLETE]
    finally:
        restart.join()
        logging.getLogger("aiq_search.study._outage").removeHandler(handler)
