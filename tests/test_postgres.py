"""Distributed studies on the real PostgreSQL server: shared counts and a worker killed mid-trial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from aiq_search.cli import main
from aiq_search.readers import study_status
from aiq_search.study import STALE_REASON, fail_reason
from aiq_search.studyfile import load_study_file
from aiq_search.worker import run_study

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "aiq_search.cli", *args]


def test_three_workers_end_with_exactly_the_study_count(
        write_study: Callable[..., Path], postgres_url: str,
        check_recorded: Callable[[FrozenTrial], None]) -> None:
    path = write_study(study={"n_trials": 12, "storage": postgres_url})
    result = subprocess.run(cli("launch", str(path), "--workers", "3", "--devices", "cpu"),
                            capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr
    assert [f"worker {i} (cpu, " in result.stdout for i in range(3)] == [True] * 3
    study = optuna.load_study(study_name="tiny", storage=postgres_url)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 12
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    for trial in done:
        check_recorded(trial)


def test_worker_killed_mid_trial_is_retried_and_nothing_finished_is_lost(
        write_study: Callable[..., Path], postgres_url: str,
        check_recorded: Callable[[FrozenTrial], None]) -> None:
    path = write_study(study={"n_trials": 3, "storage": postgres_url, "heartbeat_interval": 1, "grace_period": 3},
                       training={"max_epochs": 120, "patience": 120})
    doomed = subprocess.Popen(cli("run", str(path), "--no-progress"), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                study = optuna.load_study(study_name="tiny", storage=postgres_url)
            except KeyError:  # not created yet
                continue
            states = [t.state for t in study.get_trials()]
            if TrialState.COMPLETE in states and TrialState.RUNNING in states:
                break
        else:
            pytest.fail("the worker never had a finished and a running trial")
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=30)
    finally:
        if doomed.poll() is None:
            doomed.kill()
    before = study.get_trials()
    finished = {t.number: t.values for t in before if t.state == TrialState.COMPLETE}
    killed = [t for t in before if t.state == TrialState.RUNNING]
    assert len(killed) == 1

    summary = run_study(load_study_file(path), create=False, worker_index=1, progress_bar=False)
    assert summary.finished
    after = optuna.load_study(study_name="tiny", storage=postgres_url).get_trials()
    by_number = {t.number: t for t in after}
    dead = by_number[killed[0].number]
    assert dead.state == TrialState.FAIL
    assert "fail_reason" not in dead.user_attrs  # its worker died: Optuna can write nothing on a failed trial
    assert fail_reason(dead) == STALE_REASON  # and every reader says why
    assert study_status(postgres_url, "tiny")[0].counts["FAIL"] == 1
    retries = [t for t in after if t.system_attrs.get("failed_trial") == dead.number]  # Optuna's retry record
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == dead.params
    check_recorded(retries[0])
    done = [t for t in after if t.state == TrialState.COMPLETE]
    assert len(done) == 3
    assert all(by_number[n].values == values for n, values in finished.items())  # no finished trial lost


def test_bad_file_and_unreachable_server_leave_the_study_untouched(
        write_study: Callable[..., Path], postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_study(study={"n_trials": 2, "storage": postgres_url})
    assert main(["run", str(good), "--no-progress"]) == 0
    study = optuna.load_study(study_name="tiny", storage=postgres_url)
    before = [(t.number, t.state, t.values) for t in study.get_trials()]
    capsys.readouterr()
    bad = write_study("bad.toml", study={"n_trials": 2, "storage": postgres_url, "sampler": "annealing"})
    assert main(["run", str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"aiq-search: error: {bad}: field 'study.sampler': ")
    gone = postgres_url.replace("127.0.0.1:5432", "127.0.0.1:1")
    assert main(["worker", str(good), "--storage", gone]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aiq-search: error: cannot open the storage ") and err.count("\n") == 1
    assert [(t.number, t.state, t.values) for t in study.get_trials()] == before
    assert main(["status", "--storage", postgres_url]) == 0
    assert "tiny (aiq mode): 2 complete, target 2 complete" in capsys.readouterr().out
