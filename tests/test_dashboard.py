"""The dashboard: a real server lists the study, every study carries an intact aIQ Pareto figure, a shared
dashboard is read-only, and a storage outage is a 503 and a log line rather than a traceback."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import optuna
import psycopg
import pytest
import sqlalchemy
import sqlalchemy.exc
from conftest import serving
from optuna.trial import TrialState
from optuna_dashboard import save_plotly_graph_object
from sqlalchemy.engine import make_url

from aiq_search.cli import build_parser, main
from aiq_search.errors import StorageError
from aiq_search.readers import (
    FIGURE_VERSION,
    LAYER_FIGURE_ID,
    OUTAGE_REASON,
    PARETO_FIGURE_ID,
    DashboardGuard,
    bind,
    open_dashboard,
    pareto_figure,
    publish_figures,
    stored_figure,
)
from aiq_search.study import open_storage, pareto_front
from aiq_search.studyfile import load_study_file
from aiq_search.worker import run_study


def _storage(tmp_path: Path) -> optuna.storages.BaseStorage:
    """The storage of `recorded_study`'s studies."""
    return open_storage(f"sqlite:///{tmp_path / 'study.db'}", create=False)


def _stored_figure(study: optuna.Study, storage: optuna.storages.BaseStorage) -> dict:
    figure = stored_figure(storage, study.study_name)
    assert figure is not None
    return figure


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, data=body,
                                     headers={"Content-Type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.slow
def test_dashboard_command_serves_the_study_and_its_figure(recorded_study, tmp_path: Path) -> None:
    study = recorded_study(6, name="served")
    assert study.metric_names is None
    port = _free_port()
    command = [sys.executable, "-m", "aiq_search.cli", "dashboard",
               "--storage", f"sqlite:///{tmp_path / 'study.db'}", "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as response:
                    listed = json.load(response)["study_summaries"]
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):  # bound, still opening the storage
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "the dashboard did not answer within 60 s"
                time.sleep(0.2)
        assert [s["study_name"] for s in listed] == ["served"]
        study_id = listed[0]["study_id"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{study_id}", timeout=10) as response:
            detail = json.load(response)
        figures = {f["id"]: json.loads(f["graph_object"]) for f in detail["plotly_graph_objects"]}
        complete = sorted(row[0] for row in figures[PARETO_FIGURE_ID]["data"][0]["customdata"])
        assert complete == [t.number for t in study.trials if t.state == TrialState.COMPLETE]
        assert detail["objective_names"] == ["aIQ"]
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert optuna.load_study(study_name="served", storage=f"sqlite:///{tmp_path / 'study.db'}").metric_names == ["aIQ"]


def test_dashboard_needs_one_storage(tmp_path: Path, capsys) -> None:
    assert main(["dashboard"]) == 2
    assert "give a study file, or --storage URL" in capsys.readouterr().err
    assert main(["dashboard", "--storage", f"sqlite:///{tmp_path / 'missing.db'}"]) == 2
    assert "no SQLite study database" in capsys.readouterr().err
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.parametrize("mode", ["aiq", "pareto"])
def test_published_figure_shows_every_complete_trial_and_names_objectives(recorded_study, tmp_path: Path,
                                                                           mode: str) -> None:
    study, storage = recorded_study(8, mode=mode), _storage(tmp_path)
    assert stored_figure(storage, study.study_name) is None
    assert publish_figures(study, storage)
    figure = _stored_figure(study, storage)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    trials_trace, front_trace = figure["data"][:2]
    assert sorted(row[0] for row in trials_trace["customdata"]) == [t.number for t in complete]
    assert [row[0] for row in front_trace["customdata"]] == [t.number for t in pareto_front(complete)]
    assert study.metric_names == (["aIQ"] if mode == "aiq" else ["accuracy", "n_params"])


def test_published_figure_keeps_up_with_new_trials_and_skips_when_current(recorded_study, tmp_path: Path) -> None:
    study, storage = recorded_study(4), _storage(tmp_path)
    assert publish_figures(study, storage)
    before = _stored_figure(study, storage)
    assert publish_figures(study, storage)  # nothing new: the stored figure is current, nothing is rewritten
    assert _stored_figure(study, storage) == before
    newest = [t for t in study.trials if t.state == TrialState.COMPLETE][-1]
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.COMPLETE, values=newest.values, params=newest.params,
        distributions=newest.distributions, user_attrs=newest.user_attrs))
    assert publish_figures(study, storage)
    numbers = sorted(row[0] for row in _stored_figure(study, storage)["data"][0]["customdata"])
    assert numbers[-1] == len(study.trials) - 1 and len(numbers) == len(before["data"][0]["customdata"]) + 1


def test_a_figure_drawn_by_an_older_aiq_search_is_replaced(recorded_study, tmp_path: Path) -> None:
    study, storage = recorded_study(5), _storage(tmp_path)
    old = pareto_figure([t for t in study.trials if t.state == TrialState.COMPLETE])
    old.update_layout(meta={"aiq_search_revision": 5})  # as complete, but without this look's version
    save_plotly_graph_object(study, old, graph_object_id=PARETO_FIGURE_ID)
    assert publish_figures(study, storage)
    assert _stored_figure(study, storage)["layout"]["meta"] == {"aiq_search_revision": 5,
                                                                "aiq_search_figure": FIGURE_VERSION}


@pytest.mark.parametrize("moment", ["between its chunks", "after its last chunk"])
def test_a_rival_writer_cannot_leave_a_broken_or_older_figure(recorded_study, tmp_path: Path, monkeypatch,
                                                              moment: str) -> None:
    """Another worker writes an older figure in the middle of this one's write (the chunks interleave) or
    just after it (an older figure on top of a newer one): what stays must be intact and current."""
    name = recorded_study(30).study_name
    storage = _storage(tmp_path)
    study = optuna.load_study(study_name=name, storage=storage)  # its writes go through `storage`
    older = pareto_figure([t for t in study.trials if t.state == TrialState.COMPLETE][-5:])  # differs from byte 1
    older.update_layout(meta={"aiq_search_revision": 5, "aiq_search_figure": FIGURE_VERSION})
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        study.set_metric_names(["aIQ"])  # named already, so every write below is a chunk of the figure
    real_set, real_get = storage.set_study_system_attr, storage.get_study_system_attrs
    calls = {"set": 0, "get": 0, "rival": 0}

    def rival_writes() -> None:
        calls["rival"] += 1
        monkeypatch.setattr(storage, "set_study_system_attr", real_set)  # the rival writes only once
        monkeypatch.setattr(storage, "get_study_system_attrs", real_get)
        save_plotly_graph_object(study, older, graph_object_id=PARETO_FIGURE_ID)

    def set_attr(study_id: int, key: str, value: str) -> None:
        calls["set"] += 1
        if moment == "between its chunks" and calls["set"] == 2:
            rival_writes()
        real_set(study_id, key, value)

    def get_attrs(study_id: int) -> dict:
        calls["get"] += 1
        if moment == "after its last chunk" and calls["get"] == 3:  # 1: check, 2: inside the write, 3: check
            rival_writes()
        return real_get(study_id)

    monkeypatch.setattr(storage, "set_study_system_attr", set_attr)
    monkeypatch.setattr(storage, "get_study_system_attrs", get_attrs)
    assert publish_figures(study, storage)
    assert calls["rival"] == 1
    complete = [t.number for t in study.trials if t.state == TrialState.COMPLETE]
    assert sorted(row[0] for row in _stored_figure(study, storage)["data"][0]["customdata"]) == complete


@pytest.mark.slow
def test_a_study_run_keeps_its_figure_current(write_study) -> None:
    """The study service publishes after every finished trial: after a real run the figure shows them all."""
    config = load_study_file(write_study(study={"n_trials": 3}))
    run_study(config, progress_bar=False)
    storage = open_storage(config.study.storage, create=False)
    study = optuna.load_study(study_name=config.study.name, storage=storage)
    complete = [t.number for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3
    assert sorted(row[0] for row in _stored_figure(study, storage)["data"][0]["customdata"]) == complete
    assert study.metric_names == ["aIQ"]


# ----------------------------------------------------------------------------- the server, in a thread


def test_the_dashboard_serves_the_figure_as_stored(recorded_study, tmp_path: Path) -> None:
    """optuna-dashboard's own reader agrees with `stored_figure` (its format is read without its code)."""
    study = recorded_study(6)
    server = open_dashboard(f"sqlite:///{tmp_path / 'study.db'}", port=0)
    assert server.studies == [study.study_name]  # published at startup
    with serving(server) as root:
        status, body = _http("GET", f"{root}/api/studies")
        assert status == 200
        (summary,) = json.loads(body)["study_summaries"]
        status, body = _http("GET", f"{root}/api/studies/{summary['study_id']}")
        assert status == 200
        served = {f["id"]: json.loads(f["graph_object"]) for f in json.loads(body)["plotly_graph_objects"]}
    assert served[PARETO_FIGURE_ID] == _stored_figure(study, _storage(tmp_path))


def test_a_read_only_dashboard_refuses_changes_and_still_shows_everything(recorded_study, tmp_path: Path) -> None:
    study = recorded_study(4)
    server = open_dashboard(f"sqlite:///{tmp_path / 'study.db'}", port=0, allow_writes=False)
    assert server.read_only
    with serving(server) as root:
        for path in ("/dashboard", "/api/meta", "/api/studies", "/api/studies/1", "/csv/1"):
            assert _http("GET", root + path)[0] == 200, path
        assert _http("HEAD", f"{root}/api/studies")[0] == 200
        status, body = _http("DELETE", f"{root}/api/studies/1")
        assert status == 403 and "read-only" in json.loads(body)["reason"] and b"\n" not in body
        note = json.dumps({"version": 0, "body": "hello"}).encode()
        assert _http("PUT", f"{root}/api/studies/1/note", note)[0] == 403
        assert _http("POST", f"{root}/api/studies", json.dumps({"study_name": "x", "directions": ["minimize"]})
                     .encode())[0] == 403
    assert optuna.get_all_study_names(_storage(tmp_path)) == [study.study_name]


def test_a_local_dashboard_allows_changes(recorded_study, tmp_path: Path) -> None:
    recorded_study(2)
    server = open_dashboard(f"sqlite:///{tmp_path / 'study.db'}", port=0)  # 127.0.0.1: writes allowed
    assert not server.read_only
    with serving(server) as root:
        assert _http("DELETE", f"{root}/api/studies/1")[0] == 204
    assert optuna.get_all_study_names(_storage(tmp_path)) == []


def test_a_dashboard_reachable_from_other_machines_is_read_only_unless_allowed(recorded_study, tmp_path: Path) -> None:
    recorded_study(2)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    for allow_writes, read_only in ((None, True), (False, True), (True, False)):
        server = open_dashboard(url, host="0.0.0.0", port=0, allow_writes=allow_writes)
        assert server.read_only is read_only and not server.is_loopback
        with serving(server) as root:
            assert _http("GET", f"{root}/api/studies")[0] == 200
            assert _http("PUT", f"{root}/api/studies/1/note", b"{}")[0] == (403 if read_only else 400)


def test_dashboard_binds_localhost_unless_told_otherwise() -> None:
    args = build_parser().parse_args(["dashboard", "--storage", "sqlite:///x.db"])
    assert args.host == "127.0.0.1" and not args.allow_writes


def test_a_bad_or_busy_port_is_one_line(recorded_study, tmp_path: Path, capfd) -> None:
    recorded_study(1)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert main(["dashboard", "--storage", url, "--port", "99999"]) == 2
    out, err = capfd.readouterr()
    assert err == "aiq-search: error: port must be between 1 and 65535, got 99999\n" and out == ""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["dashboard", "--storage", url, "--port", str(port)]) == 2
    out, err = capfd.readouterr()
    assert err.startswith(f"aiq-search: error: cannot listen on 127.0.0.1:{port}: Address already in use")
    assert err.count("\n") == 1 and out == ""


def test_a_database_without_optuna_storage_is_refused_and_left_alone(tmp_path: Path, postgres_url: str,
                                                                      capsys) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER)")
    connection.close()
    for url in (f"sqlite:///{other}", postgres_url):
        assert main(["dashboard", "--storage", url, "--port", "0"]) == 2
        err = capsys.readouterr().err
        assert "holds no Optuna storage" in err and err.count("\n") == 1
    with sqlite3.connect(other) as connection:
        tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    connection.close()
    assert tables == ["invoices"]
    with psycopg.connect(_libpq(postgres_url)) as connection:
        assert connection.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)


# ----------------------------------------------------------------------------- storage outages (PostgreSQL)


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class _Database:
    """The test database's availability, switched as a server restart or outage would: connections cut,
    new ones refused, on this database only (the shared server keeps running)."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.name = parsed.database
        self.admin = _libpq(str(parsed.set(database="postgres").render_as_string(hide_password=False)))

    def _run(self, *statements: str) -> None:
        with psycopg.connect(self.admin, autocommit=True) as connection:
            for statement in statements:
                connection.execute(statement)

    def cut_connections(self) -> None:
        self._run(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{self.name}' "
                  "AND pid <> pg_backend_pid()")

    def go_down(self) -> None:
        self._run(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        self.cut_connections()

    def come_back(self) -> None:
        self._run(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')


@pytest.fixture
def postgres_study(recorded_study, tmp_path: Path, postgres_url: str) -> Iterator[tuple[str, _Database]]:
    """An aiq-search study in a PostgreSQL database of its own, and a switch for that database."""
    study = recorded_study(5)
    optuna.copy_study(from_study_name=study.study_name, from_storage=f"sqlite:///{tmp_path / 'study.db'}",
                      to_storage=postgres_url)
    database = _Database(postgres_url)
    try:
        yield postgres_url, database
    finally:
        database.come_back()


def test_a_database_outage_is_a_503_and_one_log_line_then_service_resumes(postgres_study, capfd) -> None:
    url, database = postgres_study
    server = open_dashboard(url, port=0, retry_s=2.0)
    with serving(server) as root:
        assert _http("GET", f"{root}/api/studies/1")[0] == 200
        database.cut_connections()  # a restart: the pooled connections are dead, the server is back
        assert _http("GET", f"{root}/api/studies/1")[0] == 200
        capfd.readouterr()

        database.go_down()
        for path in ("/api/studies", "/api/studies/1"):
            assert _http("GET", root + path) == (503, json.dumps({"reason": OUTAGE_REASON}).encode()), path
        for path in ("/dashboard", "/csv/1"):  # the page checks the schema version first
            assert _http("GET", root + path) == (503, OUTAGE_REASON.encode()), path
        assert _http("GET", f"{root}/favicon.ico")[0] == 200
        # one line from the dashboard for the outage, not one per request (the storage adds its own wait's)
        (line,) = [line for line in capfd.readouterr().err.splitlines() if "answering 503" in line]
        assert "out of reach, answering 503" in line and "not currently accepting connections" in line

        answer: list[int] = []
        waiting = threading.Thread(target=lambda: answer.append(_http("GET", f"{root}/api/studies/1")[0]))
        waiting.start()
        time.sleep(0.5)
        database.come_back()  # within the request's retry window: it is answered, not refused
        waiting.join(timeout=30)
        assert answer == [200]
    err = capfd.readouterr().err
    assert "the study storage is back" in err and "Traceback" not in err


def test_the_dashboard_waits_a_bounded_time_for_its_database_at_startup(postgres_study, capfd) -> None:
    url, database = postgres_study
    database.go_down()
    started = time.monotonic()
    with pytest.raises(StorageError, match="stayed out of reach for 1 s.*not currently accepting connections"):
        open_dashboard(url, port=0, startup_retry_s=1.0)
    assert time.monotonic() - started < 5
    threading.Timer(1.0, database.come_back).start()
    server = open_dashboard(url, port=0, startup_retry_s=30.0)
    server.server_close()
    assert server.studies == ["recorded"]
    err = capfd.readouterr().err
    assert err.count("out of reach (opening it for the dashboard), retrying") == 2 and "Traceback" not in err


def test_an_outage_that_starts_during_a_request_is_retried(postgres_study, capfd) -> None:
    """The database goes away while a view runs its query (so the pre-request check passed): the view's
    500 is not passed on; the request is retried once the database is back."""
    url, database = postgres_study
    engine = sqlalchemy.create_engine(url, pool_pre_ping=True)

    def view(environ: dict, start_response) -> list[bytes]:  # like optuna-dashboard's: a failed query is a 500
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql("SELECT pg_sleep(1)")
        except sqlalchemy.exc.OperationalError:
            start_response("500 Internal Server Error", [])
            return [b"internal server error"]
        start_response("200 OK", [])
        return [b"ok"]

    server = bind("127.0.0.1", 0)
    server.set_app(DashboardGuard(view, engine, read_only=True, retry_s=3.0))
    with serving(server) as root:
        threading.Timer(0.3, database.go_down).start()
        threading.Timer(1.5, database.come_back).start()
        assert _http("GET", f"{root}/api/anything") == (200, b"ok")
    engine.dispose()
    err = capfd.readouterr().err
    assert "out of reach, answering 503" in err and "the study storage is back" in err


def test_the_dashboard_shows_the_per_layer_efficiency_of_the_best_trials(recorded_study, tmp_path: Path) -> None:
    study = recorded_study(8)
    server = open_dashboard(f"sqlite:///{tmp_path / 'study.db'}", port=0)
    with serving(server) as root:
        status, body = _http("GET", f"{root}/api/studies/1")
    assert status == 200
    served = {f["id"]: json.loads(f["graph_object"]) for f in json.loads(body)["plotly_graph_objects"]}
    assert set(served) == {PARETO_FIGURE_ID, LAYER_FIGURE_ID}
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    top5 = sorted(complete, key=lambda t: (-t.user_attrs["aiq"], t.number))[:5]
    layers = served[LAYER_FIGURE_ID]["data"]
    assert [trace["customdata"][0][0] for trace in layers] == [t.number for t in top5]
    assert layers[0]["y"] == list(top5[0].user_attrs["layer_efficiencies"].values())


def test_the_dashboard_figures_fit_its_half_width_card(recorded_study, tmp_path: Path) -> None:
    """optuna-dashboard draws each figure in a 450 px card: a note and a 125 px top margin left the plot
    180 px; the legend beside the axis title covered it."""
    study = recorded_study(8)
    storage = _storage(tmp_path)
    assert publish_figures(study, storage)
    layouts = {figure_id: stored_figure(storage, study.study_name, figure_id)["layout"]
               for figure_id in (PARETO_FIGURE_ID, LAYER_FIGURE_ID)}
    for figure_id, layout in layouts.items():
        assert not layout.get("annotations") and layout["margin"]["t"] <= 90, figure_id
        assert len(layout["title"]["text"]) <= 40, figure_id
    legend = layouts[LAYER_FIGURE_ID]["legend"]
    assert legend["orientation"] == "h" and legend["y"] >= 1  # above the plot, clear of the layer labels
    legend = layouts[PARETO_FIGURE_ID]["legend"]
    assert (legend["x"], legend["xanchor"], legend["y"], legend["yanchor"]) == (0.99, "right", 0.01, "bottom")


def test_a_read_only_dashboard_writes_nothing_at_startup(recorded_study, tmp_path: Path) -> None:
    study = recorded_study(4)
    server = open_dashboard(f"sqlite:///{tmp_path / 'study.db'}", port=0, allow_writes=False)
    server.server_close()
    assert server.studies == [study.study_name] and server.read_only
    assert stored_figure(_storage(tmp_path), study.study_name) is None
    assert optuna.load_study(study_name=study.study_name, storage=_storage(tmp_path)).metric_names is None
