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

import optuna
import plotly.offline
import pytest
from optuna.trial import TrialState, create_trial

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


def _mobilenet_like_study(n_layers: int = 53, n_trials: int = 6) -> optuna.Study:
    """An own-loop-like study of a 53-layer network whose trials all have a dead layer (aIQ 0), as a user's
    MobileNetV3 gives: long module names, every score 0."""
    study = optuna.create_study(study_name="mobilenet", direction="maximize")
    config = {"study": {"name": "mobilenet", "mode": "aiq", "eval_split": "validation", "n_trials": n_trials},
              "data": {"dataset": "digits"}, "search": {"family": None},
              "metrics": {"beta": 2.0, "alpha": 1.0, "layers": None}}
    study.set_user_attr("aiq_search", {"config": config, "data": {"data_dir": None}, "artifacts": "artifacts"})
    names = [f"features.{i // 3}.block.{i % 3}.{('expand', 'depthwise', 'project')[i % 3]}.conv"
             for i in range(n_layers)]
    for number in range(n_trials):
        layers = {name: (0.0 if i in (number, 40) else 0.05 + 0.9 * ((i * 7 + number) % 10) / 10)
                  for i, name in enumerate(names)}
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.0, user_attrs={
            "aiq": 0.0, "accuracy": 0.1 * (number + 1), "test_accuracy": 0.1, "val_accuracy": 0.1,
            "n_params": 1_000_000 + number, "network_efficiency": 0.0, "layer_efficiencies": layers,
            "epochs": 1, "architecture": {"model": "torchvision.models.MobileNetV3"}}))
    return study


def test_many_layers_get_a_per_layer_figure_whose_labels_and_legend_do_not_collide(tmp_path: Path) -> None:
    study = _mobilenet_like_study()
    page = readers.write_report(study, tmp_path / "report.html").read_text(encoding="utf-8")
    layers = _figures_in(page)[2]
    *trials, dead = layers["data"]
    assert len(trials) == 5 and all(t["type"] == "scatter" and t["mode"] == "lines+markers" for t in trials)
    longest = max(len(name) for name in study.trials[0].user_attrs["layer_efficiencies"])
    layout = layers["layout"]
    assert layout["xaxis"]["tickangle"] == -45 and layout["margin"]["b"] >= 6 * longest * 0.75
    assert layout["legend"]["orientation"] == "h" and layout["legend"]["y"] >= 1  # above the plot, not on labels
    assert dead["name"] == "dead layer (efficiency 0)" and dead["marker"]["symbol"] == "x"
    top5 = sorted(study.trials, key=lambda t: (-t.user_attrs["aiq"], t.number))[:5]
    expected = [(t.number, name) for t in top5 for name, v in t.user_attrs["layer_efficiencies"].items() if v == 0]
    assert list(zip(_numbers(dead), dead["x"], strict=True)) == expected and set(dead["y"]) == {0}


def test_fractions_keep_their_axes_within_0_and_1_when_every_score_is_0(tmp_path: Path) -> None:
    page = readers.write_report(_mobilenet_like_study(), tmp_path / "report.html").read_text(encoding="utf-8")
    pareto, efficiency, layers, history = _figures_in(page)
    ranges = [pareto["layout"]["yaxis"]["range"], efficiency["layout"]["xaxis"]["range"],
              efficiency["layout"]["yaxis"]["range"], history["layout"]["yaxis"]["range"],
              layers["layout"]["yaxis"]["range"]]
    assert all(-0.05 <= low < high <= 1.05 for low, high in ranges), ranges
    assert efficiency["layout"]["yaxis"]["range"] == [-0.02, 1.02]  # all 0: the whole range, not ±0.5
    marker = pareto["data"][0]["marker"]
    assert (marker["cmin"], marker["cmax"]) == (0, 1)


def test_the_report_names_the_dead_layers_of_trials_whose_aiq_is_0(tmp_path: Path) -> None:
    page = readers.write_report(_mobilenet_like_study(n_trials=3), tmp_path / "report.html").read_text(
        encoding="utf-8")
    note = html.unescape(page[page.index('<div class="note">'):])
    assert "3 trials with aIQ 0" in note and "geometric mean" in note
    assert ("#0 (accuracy 0.1000, ? model torchvision.models.MobileNetV3): dead: features.0.block.0.expand.conv "
            "(1 of 53), features.13.block.1.depthwise.conv (41 of 53)") in note


def test_the_report_lists_the_warnings_of_its_top_trials(recorded_study, tmp_path: Path) -> None:
    study = recorded_study(3)
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.999, user_attrs={
        **study.best_trial.user_attrs, "aiq": 0.999, "warnings": ["predicts one class for every validation input"]}))
    page = readers.write_report(study, tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<li>#5: predicts one class for every validation input</li>" in page
