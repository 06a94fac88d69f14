"""Export → load → evaluate on a real (tiny) quickstart study, ONNX, and the inputs export refuses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest
import torch

from aiq_search import export
from aiq_search.cli import main
from aiq_search.data import load_dataset
from aiq_search.errors import AiqSearchError, ConfigError, StorageError
from aiq_search.results import by_aiq, complete_trials, open_study, pareto_front
from aiq_search.study import run_study
from aiq_search.studyfile import StudyFile, load_study_file

QUICKSTART = Path(__file__).resolve().parents[1] / "studies" / "quickstart.toml"


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> tuple[optuna.Study, str]:
    """The quickstart study cut to 3 trials of at most 2 epochs, stored in a temporary folder."""
    root = tmp_path_factory.mktemp("quickstart")
    raw = load_study_file(QUICKSTART).model_dump()
    raw["study"].update(n_trials=3, storage=f"sqlite:///{root / 'study.db'}", artifacts=str(root / "artifacts"))
    raw["training"].update(max_epochs=2, device="cpu")
    config = StudyFile.model_validate(raw)
    run_study(config, progress_bar=False)
    return open_study(config.study.storage, config.study.name), config.study.storage


@pytest.fixture(scope="module")
def exported(quickstart, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The top 2 trials, exported through the command line."""
    study, storage = quickstart
    out = tmp_path_factory.mktemp("exported") / "out"
    assert main(["export", study.study_name, "--storage", storage, "--top", "2", "--out", str(out)]) == 0
    return sorted(out.iterdir())


@pytest.mark.slow
def test_export_writes_the_trials_own_weights_and_numbers(quickstart, exported: list[Path]) -> None:
    study, _ = quickstart
    top = by_aiq(complete_trials(study))[:2]
    assert [p.name for p in exported] == sorted(f"trial-{t.number:04d}" for t in top)
    settings = study.user_attrs["aiq_search"]
    for trial in top:
        folder = exported[0].parent / f"trial-{trial.number:04d}"
        artifact = Path(settings["artifacts"]) / trial.user_attrs["weights_artifact_id"]
        assert (folder / "weights.safetensors").read_bytes() == artifact.read_bytes()  # not retrained
        assert json.loads((folder / "architecture.json").read_text()) == trial.user_attrs["architecture"]
        metrics = json.loads((folder / "metrics.json").read_text())
        for key in ("accuracy", "test_accuracy", "layer_efficiencies", "network_efficiency", "aiq", "n_params"):
            assert metrics[key] == trial.user_attrs[key]
        assert (metrics["study"], metrics["trial"], metrics["dataset"]) == (study.study_name, trial.number, "digits")
        assert metrics["beta"] == settings["beta"]


@pytest.mark.slow
def test_load_and_evaluate_reproduce_the_recorded_numbers(exported: list[Path], capsys) -> None:
    for folder in exported:
        model = export.load(folder)
        assert isinstance(model, torch.nn.Module) and not model.training
        result = export.evaluate(folder)
        assert result["equal"], result["compared"]
        assert {"accuracy", "test_accuracy", "network_efficiency", "aiq", "n_params"} <= set(result["compared"])
        assert any(name.startswith("efficiency ") for name in result["compared"])
    assert main(["evaluate", str(exported[0])]) == 0
    assert "all equal" in capsys.readouterr().out


@pytest.mark.slow
def test_evaluate_notices_numbers_the_model_does_not_have(exported: list[Path], tmp_path: Path) -> None:
    folder = tmp_path / "tampered"
    shutil.copytree(exported[0], folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["accuracy"] = min(1.0, metrics["accuracy"] + 0.01)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    result = export.evaluate(folder)
    assert not result["equal"]
    assert result["compared"]["accuracy"][0] != result["compared"]["accuracy"][1]
    assert main(["evaluate", str(folder)]) == 1


@pytest.mark.slow
def test_onnx_model_computes_what_the_torch_model_computes(exported: list[Path]) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    folder = exported[0]
    proto = onnx.load(str(folder / "model.onnx"))
    onnx.checker.check_model(proto)
    x = load_dataset("digits").split("test")[0][:7]  # a batch size the export never saw
    expected = export.load(folder)(x).detach().numpy()
    (got,) = ReferenceEvaluator(proto).run(None, {"input": x.numpy()})
    assert got.shape == expected.shape == (7, 10)
    assert abs(got - expected).max() < 1e-4


@pytest.mark.slow
def test_pareto_and_best_select_the_front_and_the_best(quickstart) -> None:
    study, _ = quickstart
    trials = complete_trials(study)
    assert export.select_trials(study, "pareto") == pareto_front(trials)
    assert export.select_trials(study, "best") == by_aiq(trials)[:1]
    assert export.select_trials(study, "top", 10) == by_aiq(trials)


@pytest.mark.slow
def test_a_non_empty_folder_needs_force(quickstart, tmp_path: Path, capsys) -> None:
    study, storage = quickstart
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ["export", study.study_name, "--storage", storage, "--out", str(out)]
    assert main(args) == 2
    assert "is not empty" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    best = by_aiq(complete_trials(study))[0]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", f"trial-{best.number:04d}"]
    assert main([*args, "--force"]) == 0  # replaces its own folder again
    assert export.evaluate(out / f"trial-{best.number:04d}")["equal"]


@pytest.mark.slow
def test_missing_artifacts_are_a_clear_error_and_leave_no_folder(quickstart, tmp_path: Path) -> None:
    study, _ = quickstart
    with pytest.raises(StorageError, match="not on this machine"):
        export.export_trials(study, tmp_path / "a", artifacts=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StorageError, match="are not in"):
        export.export_trials(study, tmp_path / "b", artifacts=tmp_path / "empty")
    assert list((tmp_path / "b").iterdir()) == []


def test_a_study_without_complete_trials_is_a_clear_error(recorded_study, tmp_path: Path, capsys) -> None:
    recorded_study(0, name="empty")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    assert main(["export", "empty", "--storage", storage, "--out", str(tmp_path / "out")]) == 2
    assert "has no COMPLETE trial yet" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bad_selections_and_folders_are_refused(recorded_study, tmp_path: Path) -> None:
    study = recorded_study(2)
    with pytest.raises(ConfigError, match="K >= 1"):
        export.export_trials(study, tmp_path / "out", which="top", k=0)
    with pytest.raises(ConfigError, match="which must be one of"):
        export.export_trials(study, tmp_path / "out", which="worst")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="not a folder"):
        export.export_trials(study, tmp_path / "file")
    with pytest.raises(AiqSearchError, match="no architecture.json"):
        export.load(tmp_path)
    with pytest.raises(AiqSearchError, match="no metrics.json"):
        export.evaluate(tmp_path)
