"""The HTML report: every COMPLETE trial and the Pareto front are in it, and it needs no network."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import plotly.offline
import pytest
from optuna.trial import TrialState

from aiq_search import plots
from aiq_search.cli import main
from aiq_search.errors import StorageError


def _figures_in(page: str) -> list[dict[str, Any]]:
    """The data and layout of every ``Plotly.newPlot`` call in the page, as the browser would get them."""
    decoder = json.JSONDecoder()
    figures = []
    for match in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*', page):
        data, end = decoder.raw_decode(page, match.end())
        layout, _ = decoder.raw_decode(page, re.match(r",\s*", page[end:]).end() + end)
        figures.append({"data": data, "layout": layout})
    return figures


def _numbers(trace: dict[str, Any]) -> list[int]:
    return [row[0] for row in trace["customdata"]]


def _brute_force_front(trials: list) -> set[int]:
    """Non-dominated on (accuracy ↑, parameters ↓), by comparing every pair."""

    def dominates(a, b) -> bool:
        acc_a, acc_b = a.user_attrs["accuracy"], b.user_attrs["accuracy"]
        par_a, par_b = a.user_attrs["n_params"], b.user_attrs["n_params"]
        return acc_a >= acc_b and par_a <= par_b and (acc_a > acc_b or par_a < par_b)

    return {t.number for t in trials if not any(dominates(o, t) for o in trials)}


@pytest.mark.parametrize("mode", ["aiq", "pareto"])
def test_report_holds_every_complete_trial_and_the_front(recorded_study, tmp_path: Path, mode: str) -> None:
    study = recorded_study(25, mode=mode)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 25 and len(study.trials) == 27  # a pruned and a failed one are there too

    page = plots.write_report(study, tmp_path / "report.html").read_text(encoding="utf-8")
    pareto, efficiency, layers, history = _figures_in(page)

    trials_trace, front_trace = pareto["data"]
    assert sorted(_numbers(trials_trace)) == [t.number for t in complete]
    front = _brute_force_front(complete)
    assert set(_numbers(front_trace)) == front and len(_numbers(front_trace)) == len(front)
    assert front_trace["x"] == sorted(front_trace["x"])  # joined from small to large
    assert pareto["layout"]["xaxis"]["type"] == "log"
    assert trials_trace["marker"]["color"] == [t.user_attrs["aiq"] for t in complete]
    best = max(complete, key=lambda t: t.user_attrs["aiq"])
    most_accurate = max(complete, key=lambda t: t.user_attrs["accuracy"])
    labels = " ".join(a["text"] for a in pareto["layout"]["annotations"])
    assert f"best aIQ #{best.number}" in labels and f"most accurate #{most_accurate.number}" in labels
    widths = "-".join(map(str, complete[0].user_attrs["architecture"]["widths"]))
    assert trials_trace["customdata"][0][5] == f"lenet300 {widths}"  # the architecture, on hover

    assert sorted(_numbers(efficiency["data"][0])) == [t.number for t in complete]
    top5 = sorted(complete, key=lambda t: -t.user_attrs["aiq"])[:5]
    assert [trace["customdata"][0][0] for trace in layers["data"]] == [t.number for t in top5]
    assert layers["data"][0]["y"] == list(top5[0].user_attrs["layer_efficiencies"].values())
    running, best_so_far = [], 0.0
    for trial in complete:
        best_so_far = max(best_so_far, trial.user_attrs["aiq"])
        running.append(best_so_far)
    assert history["data"][1]["y"] == running


def test_report_embeds_plotly_and_loads_nothing_from_the_network(recorded_study, tmp_path: Path) -> None:
    page = plots.write_report(recorded_study(3), tmp_path / "report.html").read_text(encoding="utf-8")
    assert plotly.offline.get_plotlyjs() in page
    assert page.count(plotly.offline.get_plotlyjs()) == 1  # once, not once per figure
    assert not re.search(r"<script[^>]*\bsrc\s*=", page)
    assert not re.search(r"<link[^>]*\bhref\s*=\s*[\"']?https?:", page)


def test_plot_command_writes_the_report(recorded_study, tmp_path: Path) -> None:
    study = recorded_study(4, name="cli-plot")
    out = tmp_path / "reports" / "cli.html"
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    assert main(["plot", "cli-plot", "--storage", storage, "--out", str(out)]) == 0
    assert len(_figures_in(out.read_text(encoding="utf-8"))) == 4
    assert study.study_name in out.read_text(encoding="utf-8")


def test_a_study_without_complete_trials_is_a_clear_error(recorded_study, tmp_path: Path) -> None:
    study = recorded_study(0)
    with pytest.raises(StorageError, match="no COMPLETE trial yet.*1 fail, 1 pruned"):
        plots.write_report(study, tmp_path / "report.html")
    assert not (tmp_path / "report.html").exists()


def test_a_study_aiq_search_did_not_make_is_refused(recorded_study, tmp_path: Path, capsys) -> None:
    study = recorded_study(2)
    study.set_user_attr("aiq_search", None)
    with pytest.raises(StorageError, match="not created by aiq-search"):
        plots.write_report(study, tmp_path / "report.html")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    assert main(["plot", "nope", "--storage", storage, "--out", str(tmp_path / "r.html")]) == 2
    assert "no study named 'nope'" in capsys.readouterr().err
