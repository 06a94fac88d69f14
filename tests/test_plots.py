"""The HTML report: every COMPLETE trial and the Pareto front are in it, the best trials are tabled, it
needs no network, and making it imports neither torch nor scikit-learn."""

from __future__ import annotations

import html
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import plotly.offline
import pytest
from optuna.trial import TrialState

from aiq_search import readers
from aiq_search.cli import main
from aiq_search.errors import StorageError
from aiq_search.study import describe_trial


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

    page = readers.write_report(study, tmp_path / "report.html").read_text(encoding="utf-8")
    pareto, efficiency, layers, history = _figures_in(page)

    trials_trace, front_trace, *marked = pareto["data"]
    assert sorted(_numbers(trials_trace)) == [t.number for t in complete]
    front = _brute_force_front(complete)
    assert set(_numbers(front_trace)) == front and len(_numbers(front_trace)) == len(front)
    assert front_trace["x"] == sorted(front_trace["x"])  # joined from small to large
    assert pareto["layout"]["xaxis"]["type"] == "log"
    assert trials_trace["marker"]["color"] == [t.user_attrs["aiq"] for t in complete]
    best = max(complete, key=lambda t: t.user_attrs["aiq"])
    most_accurate = max(complete, key=lambda t: t.user_attrs["accuracy"])
    assert best.number != most_accurate.number
    assert [(trace["name"].split(" (")[0], _numbers(trace)) for trace in marked] == [
        (f"best aIQ #{best.number}", [best.number]), (f"most accurate #{most_accurate.number}", [most_accurate.number])]
    assert [trace["marker"]["symbol"] for trace in marked] == ["star", "diamond"]  # not drawn like other points
    assert "need not lie on the front" in pareto["layout"]["annotations"][0]["text"]
    axis, counts = pareto["layout"]["xaxis"], [t.user_attrs["n_params"] for t in complete]
    low, high = (10**end for end in axis["range"])
    assert low < min(counts) and max(counts) < high
    assert len(axis["tickvals"]) >= 4 and all(low <= v <= high for v in axis["tickvals"])
    assert axis["ticktext"] == [readers.count_label(v) for v in axis["tickvals"]]
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
    page = readers.write_report(recorded_study(3), tmp_path / "report.html").read_text(encoding="utf-8")
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
        readers.write_report(study, tmp_path / "report.html")
    assert not (tmp_path / "report.html").exists()


def test_a_study_aiq_search_did_not_make_is_refused(recorded_study, tmp_path: Path, capsys) -> None:
    study = recorded_study(2)
    study.set_user_attr("aiq_search", None)
    with pytest.raises(StorageError, match="not created by this version of aiq-search"):
        readers.write_report(study, tmp_path / "report.html")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    assert main(["plot", "nope", "--storage", storage, "--out", str(tmp_path / "r.html")]) == 2
    assert "no study named 'nope'" in capsys.readouterr().err


def test_the_parameter_axis_is_labelled_in_full_round_numbers() -> None:
    labels = [readers.count_label(n) for n in (500, 1_000, 2_500, 10_000, 200_000, 1_000_000, 1_500_000)]
    assert labels == ["500", "1k", "2.5k", "10k", "200k", "1M", "1.5M"]
    assert readers.count_ticks(2_500, 200_000) == [5_000, 10_000, 20_000, 50_000, 100_000, 200_000]
    assert readers.count_ticks(800, 12_000) == [1_000, 2_000, 5_000, 10_000]
    assert readers.count_ticks(1_200, 4_000) == [1_500, 2_000, 3_000, 4_000]  # narrow: denser steps
    for low in (1_010, 47, 123_456):  # narrower than any step (the figure's range spans at least ×1.56)
        ticks = readers.count_ticks(low, low * 1.5625)
        assert len(ticks) >= 2 and all(low <= v <= low * 1.5625 for v in ticks), (low, ticks)
        assert all(len(f"{v:g}".strip("0").replace(".", "")) <= 2 for v in ticks)


def test_the_report_tables_the_top_trials_by_aiq(recorded_study, tmp_path: Path) -> None:
    study = recorded_study(14)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    page = readers.write_report(study, tmp_path / "report.html", top=6).read_text(encoding="utf-8")
    assert "Top 6 of 14 complete trials by aIQ" in page
    table = page[page.index("<thead><tr><th class=num>rank"):]
    rows = [[html.unescape(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr>(<td.*?)</tr>", table[:table.index("</table>")])]
    expected = sorted(complete, key=lambda t: -t.user_attrs["aiq"])[:6]
    front = {t.number for t in complete if not any(
        o.user_attrs["accuracy"] >= t.user_attrs["accuracy"] and o.user_attrs["n_params"] <= t.user_attrs["n_params"]
        and o is not t and (o.user_attrs["accuracy"], o.user_attrs["n_params"]) != (t.user_attrs["accuracy"],
                                                                                  t.user_attrs["n_params"])
        for o in complete)}
    assert [row[1] for row in rows] == [f"#{t.number}" for t in expected]
    for row, trial in zip(rows, expected, strict=True):
        attrs = trial.user_attrs
        assert row[2] == f"{attrs['aiq']:.4f}" and row[3] == f"{attrs['accuracy']:.4f}"
        assert row[5] == f"{attrs['n_params']:,}" and math.isclose(float(row[6]), attrs["network_efficiency"],
                                                                    abs_tol=5e-5)
        assert row[7] == ("yes" if trial.number in front else "")
        assert row[8] == describe_trial(trial)


def test_making_the_report_imports_neither_torch_nor_scikit_learn(recorded_study, tmp_path: Path) -> None:
    """``aiq-search plot`` starts in about a second: torch and scikit-learn would take several."""
    recorded_study(3, name="light")
    script = ("import sys; from aiq_search.cli import main; import aiq_search.readers._dashboard; "
              f"assert main(['plot', 'light', '--storage', 'sqlite:///{tmp_path / 'study.db'}', "
              f"'--out', '{tmp_path / 'r.html'}']) == 0; "
              "print(sorted(m for m in ('torch', 'sklearn', 'scipy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=os.environ.copy(), check=True)
    assert done.stdout.splitlines()[-1] == "[]"
    assert (tmp_path / "r.html").is_file()
