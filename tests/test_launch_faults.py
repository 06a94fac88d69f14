"""`run`, `create`, `worker` and `launch` when something is wrong: a refused command leaves nothing behind, a
database holding other tables is refused unless shared on purpose, a storage password reaches no worker's
command line, and an outage outlasting ``outage_timeout`` is one line per worker, with its prefix."""

from __future__ import annotations

import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import psycopg
import pytest
from conftest import OwnPostgres
from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial
from sqlalchemy.engine import make_url

from aiq_search.cli import main

COMMANDS = {"run": ["run"], "create": ["create"], "worker": ["worker"], "launch": ["launch", "--workers", "1"]}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "aiq_search.cli", *args]


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def sqlite_tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as connection:
        return sorted(row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))


def foreign_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        for table in ("users", "orders", "items", "invoices"):
            connection.execute(f"CREATE TABLE {table} (id INTEGER)")


def study_with_a_trial(path: Path) -> None:
    """`create` the study and give it one finished trial (its settings are fixed from then on)."""
    assert main(["create", str(path)]) == 0
    url = make_url(f"sqlite:///{path.parent / 'study.db'}")
    study = optuna.load_study(study_name="tiny", storage=url.render_as_string())
    study.add_trial(create_trial(params={"width": 4}, distributions={"width": IntDistribution(4, 16)}, value=0.5))


@pytest.mark.parametrize(("case", "commands"), [
    ("a storage URL of no database", ["run", "create", "worker", "launch"]),
    ("a worker without a database", ["worker"]),
    ("a worker without its study", ["worker"]),
    ("other settings for a study with trials", ["run", "create", "worker", "launch"]),
    ("a database holding other tables", ["run", "create", "launch"]),
])
def test_a_refused_command_creates_nothing(case: str, commands: list[str], tmp_path: Path,
                                           write_study: Callable[..., Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = write_study()
    options: list[str] = []
    if case == "a storage URL of no database":
        options = ["--storage", "nosuch://x"]
    elif case == "a worker without its study":
        study_with_a_trial(path)
        options = ["--study-name", "other", "--set", f"study.artifacts={tmp_path / 'other'}"]
    elif case == "other settings for a study with trials":  # the artifacts folder is fixed with the study
        study_with_a_trial(path)
        options = ["--set", f"study.artifacts={tmp_path / 'elsewhere'}"]
    elif case == "a database holding other tables":
        foreign_sqlite(tmp_path / "study.db")
    capsys.readouterr()
    before = listing(tmp_path)
    for command in commands:
        assert main([*COMMANDS[command], str(path), *options]) == 2, command
        err = capsys.readouterr().err
        assert err.startswith("aiq-search: error: ") and err.count("\n") == 1, err
        assert listing(tmp_path) == before, (command, err)
    if case == "a database holding other tables":
        assert sqlite_tables(tmp_path / "study.db") == ["invoices", "items", "orders", "users"]


def test_a_database_holding_other_tables_is_refused_naming_a_few_unless_shared(
        tmp_path: Path, write_study: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    database = tmp_path / "study.db"
    foreign_sqlite(database)
    path = write_study()
    assert main(["run", str(path), "--no-progress"]) == 2
    assert capsys.readouterr().err == (
        f"aiq-search: error: sqlite:///{database} holds tables that are not Optuna's (invoices, items, orders and "
        "1 more); give the study a database of its own, or pass --shared-database (shared_database=True) to add "
        "Optuna's tables to it\n")
    assert main(["create", str(path), "--shared-database"]) == 0
    assert {"users", "studies", "trials"} <= set(sqlite_tables(database))
    capsys.readouterr()
    assert main(["create", str(path)]) == 2  # Optuna's tables are its own; the others are still not
    assert "not Optuna's (invoices, items, orders and 1 more)" in capsys.readouterr().err


def test_a_postgresql_database_holding_other_tables_is_refused(
        postgres_url: str, write_study: Callable[..., Path], capsys: pytest.CaptureFixture[str]) -> None:
    url = make_url(postgres_url)
    with psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False),
                         autocommit=True) as connection:
        connection.execute("CREATE TABLE customers (id integer)")
    path = write_study(study={"storage": postgres_url})
    assert main(["create", str(path)]) == 2
    assert "holds tables that are not Optuna's (customers); " in capsys.readouterr().err
    with psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False)) as connection:
        tables = [r[0] for r in connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    assert tables == ["customers"]


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
def test_no_worker_of_launch_has_the_storage_password_on_its_command_line(
        postgres_url: str, write_study: Callable[..., Path]) -> None:
    password = f"pw{secrets.token_hex(8)}"  # the test server trusts its clients: any password connects
    url = make_url(postgres_url).set(password=password).render_as_string(hide_password=False)
    path = write_study(study={"n_trials": 1}, training={"max_epochs": 1})
    launcher = subprocess.Popen(cli("launch", str(path), "--workers", "2", "--storage", url),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[int, bytes] = {}
    while launcher.poll() is None:
        for child in _children(launcher.pid):
            try:
                seen[child] = Path(f"/proc/{child}/cmdline").read_bytes() or seen.get(child, b"")
            except OSError:
                pass
        time.sleep(0.05)
    out, err = launcher.communicate()
    assert launcher.returncode == 0, err
    workers = [cmdline for cmdline in seen.values() if b"\0worker\0" in cmdline]
    assert len(workers) == 2, seen
    assert not [cmdline for cmdline in workers if password.encode() in cmdline]
    assert password not in out + err
    assert optuna.load_study(study_name="tiny", storage=postgres_url).get_trials(states=(TrialState.COMPLETE,))


@pytest.mark.slow
def test_an_outage_longer_than_the_timeout_is_one_line_per_worker_under_launch(
        own_postgres: OwnPostgres, write_study: Callable[..., Path]) -> None:
    url = own_postgres.url
    path = write_study(study={"n_trials": 6, "storage": url, "heartbeat_interval": 2, "grace_period": 8,
                              "outage_timeout": 4.0}, training={"max_epochs": 30, "patience": 30})
    launcher = subprocess.Popen(cli("launch", str(path), "--workers", "2"), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while [t.state for t in _trials(url)].count(TrialState.RUNNING) < 2:  # both workers training
            assert time.monotonic() < deadline and launcher.poll() is None, launcher.communicate()
            time.sleep(0.2)
        own_postgres.stop()
        out, err = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 2, (out, err)
    lines = err.splitlines()
    assert all(line.startswith(("[worker 0] ", "[worker 1] ")) for line in lines), err
    for index in (0, 1):
        gave_up = [line for line in lines if line.startswith(f"[worker {index}] ") and "unreachable for more" in line]
        assert len(gave_up) == 1 and gave_up[0].startswith(f"[worker {index}] error: storage "), err
    assert "unreachable" not in out and "Traceback" not in err


def _trials(url: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name="tiny", storage=url).get_trials()
    except KeyError:  # not created yet
        return []
