"""Several worker processes on one SQLite study: `launch`, its device and thread plan, Ctrl-C, resume."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from aiq_search.cli import main
from aiq_search.errors import ConfigError
from aiq_search.launch import WorkerPlan, plan_workers
from aiq_search.studyfile import load_study_file


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "aiq_search.cli", *args]


def load(path: Path) -> optuna.Study:
    config = load_study_file(path)
    return optuna.load_study(study_name=config.study.name, storage=config.study.storage)


def test_plan_spreads_devices_round_robin_and_divides_threads() -> None:
    assert plan_workers(3, ["cuda:0", "cuda:1"], 16) == [
        WorkerPlan(0, "cuda:0", 5), WorkerPlan(1, "cuda:1", 5), WorkerPlan(2, "cuda:0", 5)]
    assert plan_workers(4, ["cpu"], 2) == [WorkerPlan(i, "cpu", 1) for i in range(4)]
    with pytest.raises(ConfigError, match="workers must be at least 1"):
        plan_workers(0, ["cpu"], 2)


@pytest.mark.slow
def test_two_workers_share_an_sqlite_study(write_study: Callable[..., Path],
                                           check_recorded: Callable[[FrozenTrial], None]) -> None:
    path = write_study(study={"n_trials": 8, "pruner": "median"})
    result = subprocess.run(cli("launch", str(path), "--workers", "2", "--devices", "cpu"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "database is locked" not in result.stdout + result.stderr
    for index in (0, 1):  # both worked, each on one of the two cores
        assert f"[worker {index}] trial " in result.stdout
        assert f"worker {index} (cpu, 1 threads): exit status 0" in result.stdout
    trials = load(path).get_trials()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 8  # the study's count, not each worker's
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # a FAIL only from a race for the study's last place: both workers started a trial for it at once and the
    # higher-numbered one gave itself up when the other completed (aiq_search.worker._quota; seen under load)
    assert all(t.user_attrs["fail_reason"].startswith("not needed: ")
               for t in trials if t.state == TrialState.FAIL), [t.user_attrs for t in trials]
    for trial in done:
        check_recorded(trial)


@pytest.mark.slow
def test_ctrl_c_stops_workers_cleanly_and_run_resumes(write_study: Callable[..., Path]) -> None:
    """SIGINT to the launcher: workers stop, running trials end FAIL 'interrupted', finished trials stay;
    `run` then resumes to the target without repeating them."""
    path = write_study(study={"n_trials": 40}, training={"max_epochs": 150, "patience": 150})
    launcher = subprocess.Popen(cli("launch", str(path), "--workers", "2", "--devices", "cpu"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                trials = load(path).get_trials()
            except KeyError:  # the launcher has not created the study yet
                continue
            # a trial started after one completed, a second ago, is training (the workers' first trials
            # start and end together: one about to end may complete before the signal comes)
            done = [t.datetime_complete for t in trials if t.state == TrialState.COMPLETE]
            if any(t.state == TrialState.RUNNING and t.datetime_start > min(done)
                   and datetime.now() - t.datetime_start > timedelta(seconds=1) for t in trials if done):
                break
        else:
            pytest.fail("no trial completed while another ran")
        launcher.send_signal(signal.SIGINT)
        out, err = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 130, err
    assert "interrupted after" in out
    trials = load(path).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    interrupted = [t for t in trials if t.state == TrialState.FAIL]
    assert interrupted, (out, err)
    assert all(t.user_attrs["fail_reason"] == "interrupted (Ctrl-C or SIGINT)" for t in interrupted)
    # one line per worker, no traceback: "[worker 0] interrupted: trial 7 marked FAIL" (or between trials)
    lines = [re.fullmatch(r"\[worker (\d)\] interrupted(?:: trial (\d+) marked FAIL| between trials)", line)
             for line in err.splitlines()]
    assert all(lines) and sorted(m[1] for m in lines) == ["0", "1"], err
    assert sorted(int(m[2]) for m in lines if m[2]) == [t.number for t in interrupted]
    assert [f"worker {i} (cpu, 1 threads): exit status 130" in out for i in (0, 1)] == [True, True]
    finished = {t.number: t.values for t in trials if t.state == TrialState.COMPLETE}
    assert 1 <= len(finished) < 40

    target = str(len(finished) + 1)
    resumed = subprocess.run(cli("run", str(path), "--n-trials", target, "--no-progress"),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "this process ran 1 trials" in resumed.stdout
    after = {t.number: t.values for t in load(path).get_trials(states=(TrialState.COMPLETE,))}
    assert len(after) == len(finished) + 1 and all(after[n] == v for n, v in finished.items())


@pytest.mark.slow
def test_ctrl_c_stops_run_with_one_line(write_study: Callable[..., Path]) -> None:
    path = write_study(study={"n_trials": 5}, training={"max_epochs": 400, "patience": 400})
    run = subprocess.Popen(cli("run", str(path), "--no-progress"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            time.sleep(0.3)
            try:
                running = load(path).get_trials(states=(TrialState.RUNNING,))
            except KeyError:  # not created yet
                continue
            if running and datetime.now() - running[0].datetime_start > timedelta(seconds=1):  # training
                break
        else:
            pytest.fail("no trial started")
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, (out, err)
    [trial] = load(path).get_trials()
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_reason"] == "interrupted (Ctrl-C or SIGINT)"
    assert err == f"aiq-search: interrupted: trial {trial.number} marked FAIL\n"


@pytest.mark.parametrize("command", [["run"], ["create"], ["launch", "--workers", "1"]])
@pytest.mark.parametrize("broken", ["artifacts under a file", "database under a file", "database is a folder"])
def test_unusable_paths_are_one_line_before_any_study(
        command: list[str], broken: str, tmp_path: Path, write_study: Callable[..., Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    """Tests run as root, which may write anywhere: a regular file where a folder must be is what makes a
    path unusable here."""
    (tmp_path / "file").write_text("not a folder")
    database, artifacts = tmp_path / "study.db", tmp_path / "artifacts"
    if broken == "artifacts under a file":
        artifacts = tmp_path / "file" / "artifacts"
        expected = f"cannot write to the artifacts folder {artifacts}: Not a directory"
    elif broken == "database under a file":
        database = tmp_path / "file" / "study.db"
        expected = f"cannot create the SQLite study database {database}: {tmp_path / 'file'} is not a folder"
    else:
        database.mkdir()
        expected = f"the SQLite study database {database} is not a file"
    path = write_study(study={"storage": f"sqlite:///{database}", "artifacts": str(artifacts)})
    assert main([command[0], str(path), *command[1:]]) == 2
    assert capsys.readouterr().err == f"aiq-search: error: {expected}\n"
    assert not (tmp_path / "study.db").is_file()  # no study left behind
