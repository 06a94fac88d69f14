"""The command line as an Optuna user expects it: every reader names a study the same ways, overrides need
no file edits, status lists the best trials (also as JSON), known architectures can be queued, and the
readers start without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from aiq_search.cli import main
from aiq_search.studyfile import load_study_file


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("aiq-search: error: ") and err.count("\n") == 1, err
    return err


def test_status_names_a_study_every_way(recorded_study, tmp_path: Path, write_study: Callable[..., Path],
                                        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the table's width, as in a wide terminal
    recorded_study(6, name="tiny")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    ways = [["status", str(write_study())], ["status", "tiny", "--storage", url],
            ["status", "--storage", url, "--study-name", "tiny"], ["status", "--storage", url]]
    for command in ways:
        assert main(command) == 0, command
        out = capsys.readouterr().out
        assert "tiny (aiq mode): 6 complete, 1 fail, 1 pruned, target 6 complete" in out, command
        assert "lenet300 " in out and "architecture" in out  # the best trials, described
    assert main(["status", "nope"]) == 2
    assert "'nope' is no study file; name a study file, or a study with --storage URL" in _one_line_error(capsys)


def test_status_json_lists_the_best_trials_with_their_architecture(recorded_study, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    study = recorded_study(6, name="tiny")
    assert main(["status", "tiny", "--storage", f"sqlite:///{tmp_path / 'study.db'}", "--json", "--top", "2"]) == 0
    [status] = json.loads(capsys.readouterr().out)
    assert status["name"] == "tiny" and status["counts"] == {"COMPLETE": 6, "PRUNED": 1, "FAIL": 1}
    best = max((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: t.user_attrs["aiq"])
    top = status["best"][0]
    assert len(status["best"]) == 2 and top["number"] == best.number and top["aiq"] == best.user_attrs["aiq"]
    assert top["architecture"] == best.user_attrs["summary"] and top["params"] == best.params


def test_overrides_need_no_file_edits(write_study: Callable[..., Path]) -> None:
    config = load_study_file(write_study()).with_overrides(
        {"training.lr": 0.02, "search.width": {"low": 4, "high": 8}, "data.val_size": 0.2}, study_name="tiny-2")
    assert (config.training.lr, config.data.val_size, config.study.name) == (0.02, 0.2, "tiny-2")
    assert config.search.space()["width"].high == 8


@pytest.mark.parametrize(("option", "message"), [
    ("training.lr", "expected SECTION.KEY=VALUE"),
    ("lr=0.1", "'lr' is not section.key"),
    ("training.lr=-1", "field 'training.lr': Input should be greater than 0"),
    ("search.width={low = 0, high = 8}", "field 'search.width': width: low must be >= 1"),
])
def test_bad_overrides_are_one_line(write_study: Callable[..., Path], option: str, message: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["create", str(write_study()), "--set", option]) == 2
    assert message in _one_line_error(capsys)


def test_enqueue_queues_a_known_architecture(write_study: Callable[..., Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = write_study(search={"n_layers": {"low": 1, "high": 2}, "width": {"low": 4, "high": 64}})
    assert main(["create", str(path)]) == 0
    spec = {"family": "lenet300", "input_shape": [1, 8, 8], "num_classes": 10, "widths": [32, 16],
            "batch_norm": False, "dropout": 0.0}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    capsys.readouterr()
    assert main(["enqueue", str(path), "--spec", str(tmp_path / "spec.json")]) == 0
    assert 'queued {"n_layers": 2, "width_0": 32, "width_1": 16, "batch_norm": false}' in capsys.readouterr().out
    study = optuna.load_study(study_name="tiny", storage=load_study_file(path).study.storage)
    [waiting] = study.get_trials(states=(TrialState.WAITING,))
    assert waiting.system_attrs["fixed_params"] == {"n_layers": 2, "width_0": 32, "width_1": 16, "batch_norm": False}
    for change, message in [({"widths": [128]}, "the spec's width_0 = 128 lies outside the study's search space"),
                            ({"dropout": 0.5}, "the spec's dropout = 0.5, but the study fixes it to 0.0"),
                            ({"input_shape": [1, 28, 28]}, "the spec takes inputs [1, 28, 28]; the study's data"),
                            ({"family": "lenet5"}, "missing keys")]:
        (tmp_path / "spec.json").write_text(json.dumps({**spec, **change}))
        assert main(["enqueue", str(path), "--spec", str(tmp_path / "spec.json")]) == 2
        assert message in _one_line_error(capsys)


def test_readers_start_without_torch(recorded_study, tmp_path: Path, write_study: Callable[..., Path]) -> None:
    recorded_study(3, name="tiny")
    code = ("import sys; from aiq_search.cli import main; code = main(sys.argv[1:]); "
            "assert 'torch' not in sys.modules and 'sklearn' not in sys.modules, 'imported'; sys.exit(code)")
    for command in (["status", str(write_study())], ["plot", str(write_study()), "--out", str(tmp_path / "r.html")]):
        result = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
