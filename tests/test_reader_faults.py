"""The readers (status, plot, dashboard) on studies as real users bring them: names that would become paths
outside the output folder, a write-protected SQLite file, a database role that may only SELECT, failed
trials, an 80-column terminal. Each ends in the lines it promises (one line and exit 2 where it refuses),
never a traceback, and writes nothing outside its folder."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import psycopg
import pytest
from conftest import serving
from optuna.trial import TrialState, create_trial
from sqlalchemy.engine import make_url

from aiq_search.cli import main
from aiq_search.readers import PARETO_FIGURE_ID, open_dashboard, stored_figure
from aiq_search.study import STALE_REASON, open_storage


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def _one_line(err: str) -> str:
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


# ------------------------------------------------------------------------------- names that become paths


@pytest.mark.parametrize("name", ["../../x", "ABS", "..", "a/b"])
def test_plot_keeps_a_study_named_like_a_path_inside_reports(recorded_study, tmp_path: Path, monkeypatch,
                                                              capsys, name: str) -> None:
    name = str(tmp_path / "abs") if name == "ABS" else name
    recorded_study(3, name=name)
    work = tmp_path / "work" / "a"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    before = _files(tmp_path)
    assert main(["plot", name, "--storage", f"sqlite:///{tmp_path / 'study.db'}"]) == 0
    out, err = capsys.readouterr()
    written = _files(tmp_path) - before
    assert err == "" and out.count("\n") == 1
    (report,) = written
    assert report.parent == work / "reports" and Path(out.strip()).resolve() == report
    assert report.suffix == ".html" and not report.name.startswith(".")


# ------------------------------------------------------------------------------- a write-protected SQLite file

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture
def protected_study(recorded_study, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A study in WAL mode (as aiq-search writes them), mode 0444 in a 0555 folder, and a folder the reader
    may write; readers run as ``nobody``, since root writes through any mode bits."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a reader as nobody")
    imports = subprocess.run([*NOBODY, sys.executable, "-c", "import aiq_search.cli, optuna"], capture_output=True,
                             text=True, timeout=120, cwd="/", check=False)
    if imports.returncode != 0:  # e.g. CI's environment in a 0700 temporary folder
        pytest.skip(f"user nobody cannot import aiq_search with {sys.executable} (its environment is not "
                    f"readable by other users): {imports.stderr.strip().splitlines()[-1:]}")
    recorded_study(5, name="shared")
    top = Path(tempfile.mkdtemp(prefix="aiq-ro-"))  # /tmp: tmp_path's parents are closed to nobody
    folder, home = top / "shared", top / "home"
    folder.mkdir()
    home.mkdir()
    with sqlite3.connect(tmp_path / "study.db") as source, sqlite3.connect(folder / "study.db") as copy:
        source.backup(copy)
        copy.execute("PRAGMA journal_mode=WAL")
    source.close()
    copy.close()
    (folder / "study.db").chmod(0o444)
    for path, mode in ((folder, 0o555), (top, 0o755)):
        path.chmod(mode)
    shutil.chown(home, "nobody", "nogroup")
    try:
        yield folder / "study.db", home
    finally:
        folder.chmod(0o755)
        shutil.rmtree(top)


def _as_nobody(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NOBODY, sys.executable, *args], capture_output=True, text=True, timeout=120,
                          cwd=home, env={**os.environ, "HOME": str(home), "COLUMNS": "100"}, check=False)


def test_readers_read_a_write_protected_study(protected_study: tuple[Path, Path]) -> None:
    db, home = protected_study
    url = f"sqlite:///{db}"
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    denied = subprocess.run([*NOBODY, "touch", str(db.parent / "probe")], capture_output=True, check=False)
    assert denied.returncode != 0  # nobody really cannot write there

    done = _as_nobody(home, "-m", "aiq_search.cli", "status", "shared", "--storage", url, "--json")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    (status,) = json.loads(done.stdout)
    assert status["counts"] == {"COMPLETE": 5, "PRUNED": 1, "FAIL": 1} and len(status["best"]) == 5

    done = _as_nobody(home, "-m", "aiq_search.cli", "plot", "shared", "--storage", url)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.splitlines() == ["reports/shared.html"] and (home / "reports" / "shared.html").is_file()

    script = ("from aiq_search.readers import open_dashboard; "
              f"server = open_dashboard({url!r}, port=0); print(server.studies, server.read_only); "
              "server.server_close()")
    done = _as_nobody(home, "-c", script)  # on 127.0.0.1, yet read-only: nobody may not write the file
    assert done.returncode == 0 and done.stdout.splitlines() == ["['shared'] True"] and done.stderr == ""

    assert sorted(p.name for p in db.parent.iterdir()) == ["study.db"]  # no -wal, -shm or journal
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest


# ------------------------------------------------------------------------------- a SELECT-only database role


@pytest.fixture
def select_only_url(recorded_study, tmp_path: Path, postgres_url: str) -> Iterator[str]:
    """A study copied into a fresh PostgreSQL database (figures never published: stale for the dashboard),
    and the URL of a role that may only SELECT there; the role is dropped afterwards."""
    recorded_study(6, name="pg-shared")
    optuna.copy_study(from_study_name="pg-shared", from_storage=f"sqlite:///{tmp_path / 'study.db'}",
                      to_storage=open_storage(postgres_url))
    role = f"aiq_reader_{uuid.uuid4().hex[:8]}"
    admin_url = make_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False)
    database = make_url(postgres_url).database
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"')
        admin.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
        admin.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
    try:
        yield make_url(postgres_url).set(username=role).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP OWNED BY "{role}"')
        root = make_url(admin_url).set(database="postgres").render_as_string(hide_password=False)
        with psycopg.connect(root, autocommit=True) as admin:
            admin.execute(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
            admin.execute(f'DROP ROLE "{role}"')


def _get(url: str) -> int:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as response:
        response.read()
        return response.status


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_a_dashboard_runs_on_a_select_only_role(select_only_url: str, postgres_url: str, host: str,
                                                capfd) -> None:
    server = open_dashboard(select_only_url, host=host, port=0)
    err = capfd.readouterr().err
    try:
        assert server.studies == ["pg-shared"] and server.read_only is (host == "0.0.0.0")
        if server.read_only:
            assert err == ""  # wrote nothing, so nothing was refused
        else:
            assert "not refreshed" in _one_line(err) and "permission denied" in err
        with serving(server) as root:
            for path in ("/api/studies", "/api/studies/1", "/dashboard"):
                assert _get(root + path) == 200, path
    finally:
        server.get_app().engine.dispose()  # the guard's engine: close the role's connections
    assert stored_figure(open_storage(postgres_url, create=False), "pg-shared", PARETO_FIGURE_ID) is None
    assert "Traceback" not in capfd.readouterr().err


# ------------------------------------------------------------------------------- failed trials, narrow terminals


def test_status_says_why_each_trial_failed(recorded_study, tmp_path: Path, capsys, monkeypatch) -> None:
    study = recorded_study(4, name="fails")
    study.add_trial(create_trial(state=TrialState.FAIL))  # its worker died: no reason recorded
    url = f"sqlite:///{tmp_path / 'study.db'}"
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["status", "fails", "--storage", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2:] == ["#5 failed: loss diverged", f"#6 failed: {STALE_REASON}"]
    assert main(["status", "fails", "--storage", url, "--json"]) == 0
    (status,) = json.loads(capsys.readouterr().out)
    assert [(row["number"], row["fail_reason"]) for row in status["failed"]] == [
        (5, "loss diverged"), (6, STALE_REASON)]


def test_status_fits_80_columns(recorded_study, tmp_path: Path, capsys, monkeypatch) -> None:
    study = recorded_study(6, name="narrow")
    long = {"family": "lenet300", "widths": [300, 300, 300], "note": "x" * 120}
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.99, user_attrs={
        **study.best_trial.user_attrs, "aiq": 0.99, "summary": "lenet300 " + "-".join(["300"] * 40),
        "architecture": long}))
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["status", "narrow", "--storage", f"sqlite:///{tmp_path / 'study.db'}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(len(line) <= 80 for line in lines), [len(line) for line in lines]
    # (rich before 13.3 pads the table's edge with one space: lines are compared stripped)
    header = next(line for line in lines if line.split()[:2] == ["#", "aIQ"])
    assert header.split() == ["#", "aIQ", "acc.", "params", "eff.", "architecture"]
    rows = [line.strip() for line in lines if line.strip()[:1].isdigit()]
    assert len(rows) == 5  # one line a trial
    assert rows[0].startswith("8 ") and rows[0].endswith("…") and "0.9900" in rows[0]
    assert all("…" not in line.split("lenet300")[0] for line in rows)  # numbers are never cut


def test_status_names_the_dead_layers_that_zeroed_a_trial(recorded_study, tmp_path: Path, capsys) -> None:
    study = recorded_study(3, name="dead")
    attrs = {**study.best_trial.user_attrs, "aiq": 0.0, "network_efficiency": 0.0,
             "layer_efficiencies": {"fc1": 0.4, "fc2": 0.0, "fc3": 0.3}}
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.0, user_attrs=attrs))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert main(["status", "dead", "--storage", url]) == 0
    assert "#5: aIQ 0, dead layers (efficiency 0): fc2 (2 of 3)" in capsys.readouterr().out.splitlines()
    assert main(["status", "dead", "--storage", url, "--json"]) == 0
    (status,) = json.loads(capsys.readouterr().out)
    assert [(row["number"], row["dead_layers"]) for row in status["dead"]] == [(5, ["fc2 (2 of 3)"])]


def test_status_shows_the_warnings_recorded_with_the_best_trials(recorded_study, tmp_path: Path, capsys) -> None:
    study = recorded_study(3, name="doubtful")
    warning = "training accuracy 0.990 but validation accuracy 0.300 (in eval mode): check BatchNorm"
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.999, user_attrs={
        **study.best_trial.user_attrs, "aiq": 0.999, "warnings": [warning]}))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert main(["status", "doubtful", "--storage", url]) == 0
    assert f"#5 warning: {warning}" in " ".join(capsys.readouterr().out.split())  # wrapped to the terminal
    assert main(["status", "doubtful", "--storage", url, "--json"]) == 0
    (status,) = json.loads(capsys.readouterr().out)
    assert status["best"][0]["number"] == 5 and status["best"][0]["warnings"] == [warning]
