"""`aiq-search compare`: the reproduction report from tiny real studies (digits, 2x2 grids, 2 epochs), its
numbers checked against the studies' storage, rebuilt from the committed summaries alone; and the pieces
(TPE replay, pairing, epochs of a history) on their own."""

from __future__ import annotations

import json
import math
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from aiq_search.cli import main
from aiq_search.reproduction import compare
from aiq_search.reproduction._findings import first_reaching, paired, trial_epochs
from aiq_search.reproduction._replay import expected_random_trials, replay_tpe
from aiq_search.reproduction._summaries import grid_size, shape_key
from aiq_search.studyfile import load_study_file
from aiq_search.worker import run_study

STUDY = """
[study]
name = "{name}"
storage = "sqlite:///runs/{name}.db"
artifacts = "artifacts/{name}"
eval_split = "test"
sampler = "{sampler}"
pruner = "none"
seed = {seed}
n_trials = {n_trials}

[data]
dataset = "digits"
label_noise = {noise}

[search]
family = "lenet300"
n_layers = 2
width_0 = {w0}
width_1 = [4, 16]
batch_norm = {bn}
dropout = {dropout}

[training]
optimizer = "adam"
lr = 0.01
batch_size = 64
max_epochs = {epochs}
patience = 5
threads = 1
"""

STUDIES = {  # name: (sampler, seed, n_trials, label noise, width_0, batch norm, dropout, max_epochs)
    "grid": ("grid", 0, 4, 0.0, "[4, 16]", "false", 0.0, 2),
    "dropout": ("grid", 0, 4, 0.0, "[4, 16]", "false", 0.3, 2),
    "bn": ("grid", 0, 2, 0.0, "[16]", "true", 0.0, 2),
    "noisy": ("grid", 0, 4, 0.5, "[4, 16]", "false", 0.0, 2),
    "tpe": ("tpe", 3, 3, 0.0, "[4, 16]", "false", 0.0, 2),
    "long": ("grid", 0, 2, 0.0, "[4]", "false", 0.0, 3),
}


def _complete(config_path: Path) -> list[optuna.trial.FrozenTrial]:
    config = load_study_file(config_path)
    study = optuna.load_study(study_name=config.study.name, storage=config.study.storage)
    return [t for t in study.get_trials() if t.state == TrialState.COMPLETE]


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five tiny finished studies in one folder: a 2x2 grid, its dropout and batch-norm variants, the grid
    at label noise 0.5, and a 3-trial TPE study on the grid's space."""
    root = tmp_path_factory.mktemp("paper")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        (root / "studies").mkdir()
        for name, (sampler, seed, n, noise, w0, bn, dropout, epochs) in STUDIES.items():
            path = root / "studies" / f"{name}.toml"
            path.write_text(STUDY.format(name=name, sampler=sampler, seed=seed, n_trials=n, noise=noise, w0=w0,
                                         bn=bn, dropout=dropout, epochs=epochs), encoding="utf-8")
            run_study(load_study_file(path), progress_bar=False)
    return root


@pytest.mark.slow
def test_report_holds_every_section_with_the_studies_numbers(studies: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(studies)
    files = sorted(f"studies/{name}.toml" for name in STUDIES)
    assert main(["compare", *files, "--out", "docs/reproduction.md", "--seeds", "3"]) == 0
    text = (studies / "docs/reproduction.md").read_text(encoding="utf-8")
    for heading in ("## Headline", "## What ran", "## Finding 1", "## Finding 2", "## Finding 3",
                    "## Search efficiency"):
        assert heading in text

    grid = _complete(studies / "studies/grid.toml")
    best = max(grid, key=lambda t: (t.user_attrs["aiq"], -t.number))
    top = max(grid, key=lambda t: (t.user_attrs["accuracy"], -t.number))
    gap = 100 * (top.user_attrs["accuracy"] - best.user_attrs["accuracy"])
    ratio = top.user_attrs["n_params"] / best.user_attrs["n_params"]
    assert f"| best aIQ | {best.user_attrs['summary']} | {best.user_attrs['n_params']:,} | " \
           f"{100 * best.user_attrs['accuracy']:.2f}% | {best.user_attrs['network_efficiency']:.4f} | " \
           f"{best.user_attrs['aiq']:.4f} |" in text
    relative = gap / top.user_attrs["accuracy"]
    assert f"{gap:.2f} points ({relative:.2f}%) less accurate, {ratio:,.1f}× fewer parameters (4 networks)" in text

    base = {t.user_attrs["summary"].split(",")[0]: t for t in grid}
    dropout = _complete(studies / "studies/dropout.toml")
    diffs = [t.user_attrs["network_efficiency"] - base[t.user_attrs["summary"].split(",")[0]].user_attrs[
        "network_efficiency"] for t in dropout]
    up = sum(d > 0 for d in diffs)
    mean = sum(diffs) / 4
    assert f"| 2. lenet300: dropout 0.3 raises efficiency | yes | up in {up} of 4 networks, mean {mean:+.4f} |" in text
    assert "| 2. lenet300: batch norm raises efficiency | yes | up in " in text and " of 2 networks" in text

    noisy = _complete(studies / "studies/noisy.toml")
    best_noisy = max(noisy, key=lambda t: (t.user_attrs["test_accuracy"], -t.number))
    assert f"| 3. lenet300: test accuracy with 0.5 of training labels random | not given | " \
           f"{100 * best_noisy.user_attrs['test_accuracy']:.2f}% (" in text
    for t in noisy:
        a = t.user_attrs
        assert f"| {a['summary'].split(',')[0]} | 0.5 | {100 * a['test_accuracy']:.2f}% | " \
               f"{a['network_efficiency']:.4f} | {a['aiq']:.4f} | {a['epochs']} |" in text

    tpe = sorted(_complete(studies / "studies/tpe.toml"), key=lambda t: t.number)
    target = 0.98 * best.user_attrs["aiq"]
    reached = first_reaching(list(_running_max([t.user_attrs["aiq"] for t in tpe])), target)
    assert f"| real study `studies/tpe.toml` | {reached if reached else 'not within 3'} |" in text
    assert "| `studies/grid.toml` | grid | 4 of 4 | 2 |" in text

    long = {t.user_attrs["summary"]: t for t in _complete(studies / "studies/long.toml")}
    assert "**Training length** (`studies/long.toml`): the same networks, up to 3 epochs:" in text
    for summary, t in long.items():
        b = base[summary.split(",")[0]]
        assert f"| {summary.split(',')[0]} | {b.user_attrs['epochs']} | {100 * b.user_attrs['accuracy']:.2f}% | " \
               f"{b.user_attrs['aiq']:.4f} | {t.user_attrs['epochs']} | {100 * t.user_attrs['accuracy']:.2f}% |" in text

    figures = sorted(p.name for p in (studies / "docs/reproduction").glob("*.svg"))
    assert figures == ["finding1-lenet300.svg", "finding2-pairs.svg", "finding3-accuracy-0.svg",
                       "finding3-efficiency-0.svg", "finding3-history-0.svg", "search-tpe-lenet300.svg"]
    for name in figures:
        assert ET.parse(studies / "docs/reproduction" / name).getroot().tag.endswith("svg")
        assert f"](reproduction/{name})" in text


@pytest.mark.slow
def test_report_rebuilds_from_the_committed_summaries_alone(studies: Path, monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    monkeypatch.chdir(studies)
    files = sorted(f"studies/{name}.toml" for name in STUDIES)
    first = compare(files, "docs/again.md", seeds=2)
    assert first.missing == []
    summary = json.loads((studies / "docs/again/grid.json").read_text(encoding="utf-8"))
    assert len(summary["trials"]) == 4 and summary["trials"][0]["history"][0]["epoch"] == 1

    copy = tmp_path / "copy"
    shutil.copytree(studies / "studies", copy / "studies")
    shutil.copytree(studies / "docs/again", copy / "docs/again")
    monkeypatch.chdir(copy)  # no runs/ here: every study is read from its summary
    again = compare(files, "docs/again.md", seeds=2)
    assert again.missing == []
    again_text = (studies / "docs/again.md").read_text(encoding="utf-8")
    assert (copy / "docs/again.md").read_text(encoding="utf-8") == again_text


def test_a_study_that_has_not_run_is_listed_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bn.toml"
    path.write_text(STUDY.format(name="bn", sampler="grid", seed=0, n_trials=2, noise=0.0, w0="[16]", bn="true",
                                 dropout=0.0, epochs=2), encoding="utf-8")
    result = compare([path], tmp_path / "report.md")
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert [file for file, _ in result.missing] == [path.as_posix()]
    assert "not run yet" in text and "No exhaustive grid has finished yet." in text


def _running_max(values: list[float]) -> list[float]:
    best, out = -math.inf, []
    for v in values:
        best = max(best, v)
        out.append(best)
    return out


def test_tpe_replay_finds_the_best_of_a_table_and_never_asks_outside_it() -> None:
    trials = [{"number": i, "params": {"width_0": a, "width_1": b}, "aiq": (a * b) / 64}
              for i, (a, b) in enumerate((a, b) for a in (1, 2, 4, 8) for b in (1, 2, 4, 8))]
    results = replay_tpe(trials, target=0.98, seeds=range(4), budget=32)
    assert [r.seed for r in results] == [0, 1, 2, 3]
    values = {t["aiq"] for t in trials}
    for r in results:  # which seeds find the best in 32 asks depends on the Optuna release's TPE
        assert len(r.curve) == 32 and r.curve == sorted(r.curve) and set(r.curve) <= values
        if r.reached_at is None:
            assert max(r.curve) < 0.98
        else:
            assert r.curve[r.reached_at - 1] == 1.0 and (r.reached_at == 1 or r.curve[r.reached_at - 2] < 0.98)
    assert sum(r.reached_at is not None for r in results) >= 2  # random draws alone: 1 - (15/16)^32 per seed
    assert replay_tpe(trials, target=0.98, seeds=[5], budget=32) == replay_tpe(trials, target=0.98, seeds=[5],
                                                                                 budget=32)
    assert expected_random_trials(16, 1) == 8.5
    assert first_reaching([0.1, 0.5, 0.9], 0.5) == 2 and first_reaching([0.1], 0.5) is None


def test_pairs_match_shapes_and_ignore_the_variant_switches() -> None:
    def trial(number: int, widths: list[int], bn: bool, eff: float) -> dict:
        spec = {"family": "lenet300", "input_shape": [1, 8, 8], "num_classes": 10, "widths": widths,
                "batch_norm": bn, "dropout": 0.0}
        return {"number": number, "architecture": spec, "network_efficiency": eff, "accuracy": 0.9, "aiq": 0.5}

    base = {"trials": [trial(0, [4, 4], False, 0.5), trial(1, [16, 4], False, 0.3)]}
    variant = {"trials": [trial(0, [16, 4], True, 0.4), trial(1, [8, 8], True, 0.9)]}
    pairing = paired(variant, base, "batch norm")
    assert [(b["number"], v["number"]) for b, v in pairing.pairs] == [(1, 0)]
    stats = pairing.stats("network_efficiency")
    assert stats["n"] == 1 and stats["up"] == 1 and stats["mean"] == pytest.approx(0.1)
    assert shape_key(base["trials"][1]["architecture"]) == shape_key(variant["trials"][0]["architecture"])
    assert grid_size({"family": "lenet300", "n_layers": 2, "width_0": [1, 2, 3], "width_1": [4, 5]}) == 6


def test_epochs_of_a_history() -> None:
    history = [{"epoch": e, "network_efficiency": eff, "train_accuracy": acc, "val_accuracy": val}
               for e, eff, acc, val in ((1, 0.5, 0.3, 0.4), (2, 0.3, 0.5, 0.6), (3, 0.35, 0.7, 0.55))]
    assert trial_epochs({"history": history, "epochs": 3}) == {"min_efficiency": 2, "best_train": 3,
                                                                "best_val": 2, "ran": 3}
