"""Opening storages (Optuna's own RDBStorage, credentials masked, readers never creating a schema) and the
place-keeping among workers: counts agree with Optuna's reads, a raced trial waits for its place or gives
itself up, and grid studies over conditional spaces complete exactly their grid."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from aiq_search.cli import main
from aiq_search.errors import StorageError
from aiq_search.study import count_states, open_storage, redact
from aiq_search.worker import Places, Surplus


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return request.getfixturevalue("postgres_url")


def test_open_storage_is_optunas_own(url: str) -> None:
    storage = open_storage(url, heartbeat_interval=5, grace_period=20)
    assert isinstance(storage, optuna.storages.RDBStorage)  # riding out outages (aiq_search.study._outage)
    assert storage.get_heartbeat_interval() == 5


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql+psycopg://aiq:s3cret@db:5432/aiq", "postgresql+psycopg://aiq:***@db:5432/aiq"),
    ("postgresql+psycopg://db/aiq?password=s3cret&sslmode=require",
     "postgresql+psycopg://db/aiq?password=***&sslmode=require"),
    ("postgresql+psycopg://aiq@db/aiq?sslpassword=s3cret", "postgresql+psycopg://aiq@db/aiq?sslpassword=***"),
    ("postgresql+psycopg://aiq@db/aiq?access_token=s3cret", "postgresql+psycopg://aiq@db/aiq?access_token=***"),
    ("postgresql+psycopg://aiq:s3cret@db:notaport/aiq", "<unparseable postgresql+psycopg URL>"),
    ("s3cret is no URL", "<unparseable ? URL>"),
    ("sqlite:///runs/x.db", "sqlite:///runs/x.db"),
])
def test_redact_masks_every_credential(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_readers_never_create_a_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE customers (id INTEGER)")
    connection.close()
    for command in (["status", "--storage", f"sqlite:///{path}"], ["plot", "x", "--storage", f"sqlite:///{path}"]):
        assert main(command) == 2
        assert capsys.readouterr().err == f"aiq-search: error: sqlite:///{path} holds no Optuna storage " \
                                          "(no study was ever created there)\n"
    with sqlite3.connect(path) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    connection.close()
    assert tables == ["customers"]
    with pytest.raises(StorageError, match="no SQLite study database at"):
        open_storage(f"sqlite:///{tmp_path / 'absent.db'}", create=False)
    assert not (tmp_path / "absent.db").exists()


def test_readers_never_create_a_schema_on_postgresql(postgres_url: str) -> None:
    with pytest.raises(StorageError, match="holds no Optuna storage"):
        open_storage(postgres_url, create=False)
    open_storage(postgres_url)  # a writer creates it
    assert isinstance(open_storage(postgres_url, create=False), optuna.storages.RDBStorage)


def test_counts_agree_with_optunas_reads(url: str) -> None:
    study = optuna.create_study(storage=open_storage(url), study_name="counts")
    for state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED, TrialState.COMPLETE):
        trial = study.ask()
        study.tell(trial, 1.0 if state == TrialState.COMPLETE else None, state=state)
    study.ask()
    study.enqueue_trial({})
    trials = study.get_trials(deepcopy=False)
    assert count_states(trials) == Counter({"COMPLETE": 2, "FAIL": 1, "PRUNED": 1, "RUNNING": 1, "WAITING": 1})
    assert count_states(t for t in trials if t.number < 3) == Counter({"COMPLETE": 1, "FAIL": 1, "PRUNED": 1})


@pytest.mark.parametrize("first_ends", [TrialState.COMPLETE, TrialState.FAIL])
def test_a_raced_trial_waits_for_its_place(tmp_path: Path, first_ends: TrialState) -> None:
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 'race.db'}"))
    first = study.ask()  # worker A's trial: the last one a study of 1 needs
    late = study.ask()  # worker B counted the study before A asked, so it started one too
    ended = threading.Event()

    def end_first() -> None:
        ended.set()  # before the tell: once it commits, the waiting worker may return before this thread runs on
        study.tell(first, 0.5 if first_ends == TrialState.COMPLETE else None, state=first_ends)

    timer = threading.Timer(0.3, end_first)
    places = Places(study, 1, deadline=None, poll_s=0.01)
    timer.start()
    try:
        if first_ends == TrialState.COMPLETE:  # B's trial is not needed: it gives itself up
            with pytest.raises(Surplus, match="not needed: 1 earlier trials completed the study of 1"):
                places.wait_for_place(late)
        else:  # A's trial failed: B's runs in its place, once A's has ended
            places.wait_for_place(late)
        assert ended.is_set()  # it waited for A's trial to end
    finally:
        timer.join()


def test_a_trial_that_cannot_fill_the_study_does_not_read_it() -> None:
    places = Places(None, 1, deadline=None, poll_s=0.01)  # type: ignore[arg-type]  # any read would raise
    places.seen = Counter({"FAIL": 3})

    class Trial:  # number 3: three FAIL trials below it, so none below can fill a study of 1
        number = 3

    places.wait_for_place(Trial())  # type: ignore[arg-type]


def test_may_start_waits_for_the_last_trials_running_elsewhere(tmp_path: Path) -> None:
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 'last.db'}"))
    running = study.ask()  # another worker's trial, the last the study of 1 needs
    threading.Timer(0.3, lambda: study.tell(running, state=TrialState.FAIL)).start()
    started = time.monotonic()
    assert Places(study, 1, deadline=None, poll_s=0.01).may_start()  # it failed: a place is free
    assert time.monotonic() - started >= 0.25
    study.tell(study.ask(), 1.0)
    assert not Places(study, 1, deadline=None, poll_s=0.01).may_start()


GRID = {"study": {"sampler": "grid", "seed": 1, "n_trials": 100},
        "search": {"family": "lenet300", "n_layers": [1, 2], "width": [4, 8], "batch_norm": False, "dropout": 0.0}}


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_grid_over_a_conditional_space_completes_exactly_the_grid(
        url: str, workers: int, write_study: Callable[..., Path]) -> None:
    """n_layers 1 or 2, one width per layer: 2 + 4 = 6 architectures, each completed once, parameters stored
    in the order they were suggested (the grid sampler rebuilds its tree from that order). A combination
    that two workers drew at once ran to the end in one of them only."""
    import subprocess
    import sys

    path = write_study(**GRID)
    assert main(["create", str(path), "--storage", url]) == 0
    commands = [[sys.executable, "-m", "aiq_search.cli", "worker", str(path), "--storage", url, "--no-progress",
                 "--worker-index", str(i)] for i in range(workers)]
    processes = [subprocess.Popen(c) for c in commands]
    assert [p.wait(timeout=300) for p in processes] == [0] * workers
    study = optuna.load_study(study_name="tiny", storage=url)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    layouts = sorted(tuple(t.user_attrs["architecture"]["widths"]) for t in trials)  # params hold positions
    assert layouts == [(4,), (4, 4), (4, 8), (8,), (8, 4), (8, 8)]
    others = study.get_trials(states=(TrialState.FAIL, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING))
    assert all(t.state == TrialState.FAIL and t.user_attrs["fail_reason"].startswith("a repeat: trial ")
               for t in others), [(t.number, t.state, t.user_attrs) for t in others]
    for trial in trials:
        layers = len(trial.user_attrs["architecture"]["widths"])
        assert list(trial.params) == ["n_layers", *[f"width_{i}" for i in range(layers)]]
