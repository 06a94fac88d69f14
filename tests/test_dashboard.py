"""The dashboard: a real server lists the study, and every study carries an intact aIQ Pareto figure."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from optuna_dashboard import save_plotly_graph_object
from optuna_dashboard._custom_plot_data import get_plotly_graph_objects

from aiq_search.cli import _build_parser, main
from aiq_search.dashboard import PARETO_FIGURE_ID, publish_figures
from aiq_search.plots import pareto_figure
from aiq_search.results import pareto_front
from aiq_search.study import run_study
from aiq_search.studyfile import load_study_file


def _stored_figure(study: optuna.Study) -> dict:
    system_attrs = study._storage.get_study_system_attrs(study._study_id)
    return json.loads(get_plotly_graph_objects(system_attrs)[PARETO_FIGURE_ID])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
            except (urllib.error.URLError, ConnectionError):
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


def test_dashboard_binds_localhost_unless_told_otherwise() -> None:
    assert _build_parser().parse_args(["dashboard", "--storage", "sqlite:///x.db"]).host == "127.0.0.1"


def test_dashboard_needs_one_storage(tmp_path: Path, capsys) -> None:
    assert main(["dashboard"]) == 2
    assert "give a study file or --storage URL" in capsys.readouterr().err
    assert main(["dashboard", "--storage", f"sqlite:///{tmp_path / 'missing.db'}"]) == 2
    assert "no SQLite study database" in capsys.readouterr().err
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.parametrize("mode", ["aiq", "pareto"])
def test_published_figure_shows_every_complete_trial_and_names_objectives(recorded_study, mode: str) -> None:
    study = recorded_study(8, mode=mode)
    assert publish_figures(study)
    figure = _stored_figure(study)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    trials_trace, front_trace = figure["data"]
    assert sorted(row[0] for row in trials_trace["customdata"]) == [t.number for t in complete]
    assert [row[0] for row in front_trace["customdata"]] == [t.number for t in pareto_front(complete)]
    assert study.metric_names == (["aIQ"] if mode == "aiq" else ["accuracy", "n_params"])


def test_published_figure_keeps_up_with_new_trials_and_skips_when_current(recorded_study) -> None:
    study = recorded_study(4)
    assert publish_figures(study)
    before = _stored_figure(study)
    assert publish_figures(study)  # nothing new: the stored figure is current, nothing is rewritten
    assert _stored_figure(study) == before
    newest = [t for t in study.trials if t.state == TrialState.COMPLETE][-1]
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.COMPLETE, values=newest.values, params=newest.params,
        distributions=newest.distributions, user_attrs=newest.user_attrs))
    assert publish_figures(study)
    numbers = sorted(row[0] for row in _stored_figure(study)["data"][0]["customdata"])
    assert numbers[-1] == len(study.trials) - 1 and len(numbers) == len(before["data"][0]["customdata"]) + 1


@pytest.mark.parametrize("moment", ["between its chunks", "after its last chunk"])
def test_a_rival_writer_cannot_leave_a_broken_or_older_figure(recorded_study, monkeypatch, moment: str) -> None:
    """Another worker writes an older figure in the middle of this one's write (the chunks interleave) or
    just after it (an older figure on top of a newer one): what stays must be intact and current."""
    study = recorded_study(30)
    older = pareto_figure([t for t in study.trials if t.state == TrialState.COMPLETE][-5:])  # differs from byte 1
    older.update_layout(meta={"aiq_search_revision": 5})
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        study.set_metric_names(["aIQ"])  # named already, so every write below is a chunk of the figure
    storage = study._storage
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
    assert publish_figures(study)
    assert calls["rival"] == 1
    complete = [t.number for t in study.trials if t.state == TrialState.COMPLETE]
    assert sorted(row[0] for row in _stored_figure(study)["data"][0]["customdata"]) == complete


@pytest.mark.slow
def test_a_study_run_keeps_its_figure_current(write_study) -> None:
    """The study service publishes after every finished trial: after a real run the figure shows them all."""
    config = load_study_file(write_study(study={"n_trials": 3}))
    run_study(config, progress_bar=False)
    study = optuna.load_study(study_name=config.study.name, storage=config.study.storage)
    complete = [t.number for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3
    assert sorted(row[0] for row in _stored_figure(study)["data"][0]["customdata"]) == complete
    assert study.metric_names == ["aIQ"]
