"""Export → load → evaluate: real studies, raw inputs through PyTorch and onnxruntime, and bad input.

Two kinds of study: the quickstart cut to 3 trained trials (slow), and one COMPLETE trial of an untrained
LeNet-300 whose numbers are measured for real on digits (no training: fast), for what export and evaluate
must refuse. Every refusal is one line on stderr and exit status 2.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState, create_trial
from safetensors.torch import save_file

from aiq_search import export, training
from aiq_search.cli import main
from aiq_search.data import load_dataset
from aiq_search.errors import AiqSearchError, ConfigError, StorageError
from aiq_search.export import RawInputModel, write_manifest
from aiq_search.families import build_model, count_parameters
from aiq_search.metrics import aiq
from aiq_search.study import by_aiq, complete_trials, open_study, pareto_front
from aiq_search.studyfile import StudyFile, load_study_file
from aiq_search.worker import run_study

QUICKSTART = Path(__file__).resolve().parents[1] / "studies" / "quickstart.toml"


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("aiq-search: error: ") and err.count("\n") == 1, err
    return err


# --------------------------------------------------------------------------- a study of one untrained trial


def _untrained_study(root: Path, name: str, *, artifact_id: str | None = None) -> tuple[optuna.Study, str]:
    """A study as aiq_search.study._create records it, holding one COMPLETE trial of an untrained LeNet-300 (8 units)
    whose accuracy, efficiencies and aIQ are measured for real on digits; ``artifact_id`` replaces the id of
    its stored weights."""
    data = load_dataset("digits")
    spec = {"family": "lenet300", "input_shape": list(data.input_shape), "num_classes": data.num_classes,
            "widths": [8], "batch_norm": False, "dropout": 0.0}
    model = build_model(spec, seed=0).eval()
    accuracy, report = training.evaluate(model, data.val_x, data.val_y)
    test_accuracy, _ = training.evaluate(model, data.test_x, data.test_y)
    store = root / "artifacts"
    store.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(root / "weights.safetensors"))
    with (root / "weights.safetensors").open("rb") as f:
        FileSystemArtifactStore(store).write(f"{name}-weights", f)
    storage = f"sqlite:///{root / 'study.db'}"
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    study.set_user_attr("aiq_search", {
        "config": {"data": {"dataset": "digits", "val_size": 0.1, "label_noise": 0.0},
                   "study": {"seed": 0, "mode": "aiq", "eval_split": "validation"}, "search": {"family": "lenet300"},
                   "metrics": {"beta": 2.0, "alpha": 1.0, "layers": None}},
        "data": {"data_dir": None,
                 "input": {"shape": list(data.input_shape), "dtype": "float32", "range": list(data.value_range),
                           "mean": list(data.mean), "std": list(data.std)}},
        "artifacts": str(store)})
    score = aiq(report.network, accuracy, 2.0)
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=score, user_attrs={
        "aiq": score, "accuracy": accuracy, "val_accuracy": accuracy, "test_accuracy": test_accuracy,
        "n_params": count_parameters(model), "network_efficiency": report.network,
        "layer_efficiencies": report.layer_efficiencies, "epochs": 0, "train_seconds": 0.0, "device": "cpu",
        "architecture": spec, "weights_artifact_id": artifact_id or f"{name}-weights"}))
    return study, storage


@pytest.fixture(scope="module")
def untrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[optuna.Study, str, Path]:
    """The untrained study and its one trial exported: (study, storage URL, trial folder)."""
    root = tmp_path_factory.mktemp("untrained")
    study, storage = _untrained_study(root, "untrained")
    (folder,) = export.export_trials(study, root / "out")
    return study, storage, folder


@pytest.fixture
def copy_of(untrained, tmp_path: Path) -> Path:
    """A copy of the untrained trial's export, for a test to damage."""
    return Path(shutil.copytree(untrained[2], tmp_path / "trial"))


def test_an_export_holds_its_input_format_and_a_manifest_of_its_files(untrained) -> None:
    _, _, folder = untrained
    assert sorted(p.name for p in folder.iterdir()) == ["architecture.json", "input.json", "manifest.json",
                                                         "metrics.json", "model.onnx", "weights.safetensors"]
    data = load_dataset("digits")
    assert json.loads((folder / "input.json").read_text()) == {
        "layout": "NCHW", "shape": [1, 8, 8], "dtype": "float32", "range": [0.0, 16.0],
        "mean": list(data.mean), "std": list(data.std)}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (manifest["format"], manifest["version"]) == ("aiq-search export", 1)
    assert set(manifest["files"]) == {p.name for p in folder.iterdir()} - {"manifest.json"}
    assert manifest["files"]["weights.safetensors"]["bytes"] == (folder / "weights.safetensors").stat().st_size


def test_load_takes_raw_inputs_and_raw_false_gives_the_bare_network(untrained) -> None:
    folder = untrained[2]
    raw, normalized = load_dataset("digits", normalize=False), load_dataset("digits")
    model, bare = export.load_exported(folder), export.load_exported(folder, raw=False)
    assert isinstance(model, RawInputModel) and not model.training and not bare.training
    assert set(model.state_dict()) == {f"network.{k}" for k in bare.state_dict()}  # the statistics are no weights
    with torch.no_grad():  # the same bits as the training pipeline's normalization
        assert torch.equal(model(raw.test_x), bare(normalized.test_x))


def test_evaluate_measures_the_deployed_model_and_runs_the_onnx_file(untrained, capsys) -> None:
    folder = untrained[2]
    result = export.verify_export(folder)
    assert result.equal, result.compared
    onnx = result.onnx
    assert onnx.ok and onnx.differing_predictions == 0 and onnx.max_logit_difference <= onnx.tolerance
    assert result.compared["onnx test_accuracy"][0] == result.compared["onnx test_accuracy"][1]
    assert main(["evaluate", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "model.onnx in onnxruntime on raw test inputs: 0 predictions differ" in out and "all equal" in out


def test_evaluate_exits_1_when_a_number_differs(copy_of: Path, capsys) -> None:
    metrics = json.loads((copy_of / "metrics.json").read_text())
    metrics["test_accuracy"] = min(1.0, metrics["test_accuracy"] + 0.01)
    (copy_of / "metrics.json").write_text(json.dumps(metrics))
    write_manifest(copy_of)
    assert main(["evaluate", str(copy_of)]) == 1
    assert "DIFFERS" in capsys.readouterr().out


def test_evaluate_checks_the_normalization_the_model_is_deployed_with(copy_of: Path) -> None:
    fmt = json.loads((copy_of / "input.json").read_text())
    fmt["mean"] = [0.0]  # as if the export expected inputs already centred
    (copy_of / "input.json").write_text(json.dumps(fmt))
    write_manifest(copy_of)
    assert not export.verify_export(copy_of).equal


def _edit_json(name: str, edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        value = json.loads((folder / name).read_text())
        value = edit(value) or value
        (folder / name).write_text(json.dumps(value))
    return damage


def _write(name: str, content: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        (folder / name).write_bytes(content((folder / name).read_bytes()))
    return damage


def _other_weights(folder: Path) -> None:
    spec = {"family": "lenet300", "input_shape": [1, 8, 8], "num_classes": 10, "widths": [16],
            "batch_norm": False, "dropout": 0.0}
    save_file(build_model(spec).state_dict(), str(folder / "weights.safetensors"))


DAMAGE = {  # each resealed in a valid manifest: the files themselves are what is wrong
    "truncated weights": (_write("weights.safetensors", lambda b: b[: len(b) // 2]), "safetensors"),
    "random weights": (_write("weights.safetensors", lambda b: np.random.default_rng(0).bytes(len(b))),
                       "safetensors"),
    "oversized weights header": (_write("weights.safetensors", lambda b: (2**62).to_bytes(8, "little") + b[8:]),
                                 "safetensors"),
    "weights of another architecture": (_other_weights, "fc1.weight is [16, 64] in the weights, [8, 64]"),
    "unknown family": (_edit_json("architecture.json", lambda a: a.update(family="vgg")),
                       "unknown architecture family 'vgg'"),
    "architecture a list": (_edit_json("architecture.json", lambda a: [a]), "must be a JSON object, got list"),
    "channels unlike the weights": (_edit_json("architecture.json", lambda a: a.update(input_shape=[3, 8, 8])),
                                    "[8, 192] in the architecture"),
    "metrics missing a field": (_edit_json("metrics.json", lambda m: m.pop("aiq") and None), "aiq: Field required"),
    "metrics of the wrong type": (_edit_json("metrics.json", lambda m: m.update(accuracy="high")),
                                  "accuracy: Input should be a valid number"),
    "metrics data of the wrong type": (_edit_json("metrics.json", lambda m: m["data"].update(val_size="10%")),
                                       "data.val_size"),
    "an impossible val_size": (_edit_json("metrics.json", lambda m: m["data"].update(val_size=5.0)),
                               "val_size as a fraction"),
    "metrics not JSON": (_write("metrics.json", lambda b: b[:-3]), "is not valid JSON"),
    "input std not positive": (_edit_json("input.json", lambda f: f.update(std=[0.0])), "std must be positive"),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_evaluate_refuses_unusable_files_in_one_line(copy_of: Path, damage: str, capsys) -> None:
    change, message = DAMAGE[damage]
    change(copy_of)
    write_manifest(copy_of)
    assert main(["evaluate", str(copy_of)]) == 2
    assert message in _one_line_error(capsys)


def test_load_and_evaluate_refuse_what_is_not_a_complete_export(copy_of: Path, tmp_path: Path, capsys) -> None:
    (copy_of / "metrics.json").write_text((copy_of / "metrics.json").read_text() + " ")
    assert main(["evaluate", str(copy_of)]) == 2  # changed after the manifest was written
    assert "is not the file that was exported" in _one_line_error(capsys)
    (copy_of / "manifest.json").unlink()  # as an interrupted export leaves it
    with pytest.raises(AiqSearchError, match="not a complete export: it has no manifest.json"):
        export.load_exported(copy_of)
    (tmp_path / "plain").write_text("")
    for path, message in ((tmp_path / "plain", "is not a folder"), (tmp_path / "nowhere", "does not exist")):
        assert main(["evaluate", str(path)]) == 2
        assert message in _one_line_error(capsys)


# --------------------------------------------------------------------------- export's own refusals


def test_a_crafted_artifact_id_is_one_line_and_leaves_nothing(tmp_path: Path, capsys) -> None:
    _, storage = _untrained_study(tmp_path, "crafted", artifact_id="../../etc/passwd")
    out = tmp_path / "out"
    assert main(["export", "crafted", "--storage", storage, "--out", str(out)]) == 2
    assert "weights_artifact_id '../../etc/passwd' is not an artifact" in _one_line_error(capsys)
    assert not out.exists()  # refused before the output folder is made


def test_top_must_be_positive(untrained, capsys) -> None:
    _, storage, _ = untrained
    with pytest.raises(SystemExit) as exit_:
        main(["export", "untrained", "--storage", storage, "--top", "0"])
    assert exit_.value.code == 2 and "must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["under a file", "unwritable"])
def test_unwritable_out_paths_are_one_line(untrained, recorded_study, tmp_path: Path, where: str, capsys) -> None:
    _, storage, _ = untrained
    (tmp_path / "file").write_text("")
    base = tmp_path / "file" if where == "under a file" else Path("/proc")  # even root cannot write in /proc
    assert main(["export", "untrained", "--storage", storage, "--out", str(base / "out")]) == 2
    assert "cannot export into" in _one_line_error(capsys)
    recorded_study(3, name="plotted")
    plot_storage = f"sqlite:///{tmp_path / 'study.db'}"
    assert main(["plot", "plotted", "--storage", plot_storage, "--out", str(base / "report.html")]) == 2
    assert "cannot write the report" in _one_line_error(capsys)


def test_stale_partial_folders_are_removed(untrained, tmp_path: Path) -> None:
    study, _, _ = untrained
    out = tmp_path / "out"
    for name in (".trial-0007.partial", ".trial-0000.partial"):  # what killed exports leave behind
        (out / name).mkdir(parents=True)
        (out / name / "architecture.json").write_text("{}")
    (folder,) = export.export_trials(study, out)  # only stale partials: the folder counts as empty
    assert sorted(p.name for p in out.iterdir()) == [folder.name]
    (out / ".trial-0003.partial").mkdir()
    export.export_trials(study, out, force=True)
    assert sorted(p.name for p in out.iterdir()) == [folder.name]
    assert export.verify_export(folder).equal


def test_out_defaults_to_exports_study(untrained, tmp_path: Path, monkeypatch, capsys) -> None:
    _, storage, _ = untrained
    monkeypatch.chdir(tmp_path)
    assert main(["export", "untrained", "--storage", storage]) == 0
    assert (tmp_path / "exports" / "untrained" / "trial-0000" / "manifest.json").is_file()
    assert capsys.readouterr().out.strip() == str(Path("exports") / "untrained" / "trial-0000")


def test_export_and_evaluate_help_import_no_torch() -> None:
    code = ("import sys\nfrom aiq_search.cli import main\nfor command in ('export', 'evaluate'):\n"
            "    try:\n        main([command, '--help'])\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('torch', 'sklearn', 'optuna') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_study_without_complete_trials_is_a_clear_error(recorded_study, tmp_path: Path, capsys) -> None:
    recorded_study(0, name="empty")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    assert main(["export", "empty", "--storage", storage, "--out", str(tmp_path / "out")]) == 2
    assert "has no COMPLETE trial yet" in _one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_bad_selections_and_folders_are_refused(recorded_study, tmp_path: Path) -> None:
    study = recorded_study(2)
    with pytest.raises(ConfigError, match="k must be at least 1"):
        export.export_trials(study, tmp_path / "out", which="top", k=0)
    with pytest.raises(ConfigError, match="which must be one of"):
        export.export_trials(study, tmp_path / "out", which="worst")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="not a folder"):
        export.export_trials(study, tmp_path / "file")
    with pytest.raises(AiqSearchError, match="has no manifest.json"):
        export.load_exported(tmp_path)
    with pytest.raises(AiqSearchError, match="has no manifest.json"):
        export.verify_export(tmp_path)


# --------------------------------------------------------------------------- a trained study (slow)


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
    data = load_dataset("digits")
    assert settings["data"]["input"] == {"shape": [1, 8, 8], "dtype": "float32", "range": [0.0, 16.0],
                                 "mean": list(data.mean), "std": list(data.std)}
    for trial in top:
        folder = exported[0].parent / f"trial-{trial.number:04d}"
        artifact = Path(settings["artifacts"]) / trial.user_attrs["weights_artifact_id"]
        assert (folder / "weights.safetensors").read_bytes() == artifact.read_bytes()  # not retrained
        assert json.loads((folder / "architecture.json").read_text()) == trial.user_attrs["architecture"]
        assert json.loads((folder / "input.json").read_text()) == {"layout": "NCHW", **settings["data"]["input"]}
        metrics = json.loads((folder / "metrics.json").read_text())
        for key in ("accuracy", "test_accuracy", "layer_efficiencies", "network_efficiency", "aiq", "n_params"):
            assert metrics[key] == trial.user_attrs[key]
        assert (metrics["study"], metrics["trial"], metrics["dataset"]) == (study.study_name, trial.number, "digits")
        assert metrics["metrics"] == settings["config"]["metrics"]


@pytest.mark.slow
def test_raw_inputs_in_onnxruntime_reproduce_the_recorded_test_accuracy(quickstart, exported: list[Path]) -> None:
    ort = pytest.importorskip("onnxruntime")
    study, _ = quickstart
    raw = load_dataset("digits", normalize=False)
    x, y = raw.test_x.numpy(), raw.test_y.numpy()
    assert x.max() == 16.0 and np.array_equal(x, np.round(x))  # the data set's own pixels, untouched
    for folder in exported:
        trial = study.trials[json.loads((folder / "metrics.json").read_text())["trial"]]
        session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        (logits,) = session.run(None, {"input": x})
        assert int((logits.argmax(1) == y).sum()) / len(y) == trial.user_attrs["test_accuracy"]
        with torch.no_grad():
            assert int((export.load_exported(folder)(raw.test_x).argmax(1) == raw.test_y).sum()) / len(y) == \
                trial.user_attrs["test_accuracy"]
        (batch,) = session.run(None, {"input": x[:7]})  # a batch size the export never saw
        assert np.allclose(batch, logits[:7], atol=1e-5)


@pytest.mark.slow
def test_load_and_evaluate_reproduce_the_recorded_numbers(exported: list[Path], capsys) -> None:
    for folder in exported:
        result = export.verify_export(folder)
        assert result.equal, result.compared
        assert {"accuracy", "test_accuracy", "network_efficiency", "aiq", "n_params",
                "onnx test_accuracy"} <= set(result.compared)
        assert any(name.startswith("efficiency ") for name in result.compared)
    assert main(["evaluate", str(exported[0])]) == 0
    assert "all equal" in capsys.readouterr().out


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
    assert "is not empty" in _one_line_error(capsys)
    assert main([*args, "--force"]) == 0
    best = by_aiq(complete_trials(study))[0]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", f"trial-{best.number:04d}"]
    assert main([*args, "--force"]) == 0  # replaces its own folder again
    assert export.verify_export(out / f"trial-{best.number:04d}").equal


@pytest.mark.slow
def test_missing_artifacts_are_a_clear_error_and_leave_no_folder(quickstart, tmp_path: Path) -> None:
    study, _ = quickstart
    with pytest.raises(StorageError, match="not on this machine"):
        export.export_trials(study, tmp_path / "a", artifacts=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StorageError, match="are not in"):
        export.export_trials(study, tmp_path / "b", artifacts=tmp_path / "empty")
    assert not (tmp_path / "b").exists()  # refused before the output folder is made
