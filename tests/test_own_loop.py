"""Your own training loop: a user's Optuna objective (plain PyTorch or Lightning) scored and recorded through
aiq_search.integration._own_loop, so status, plot, the dashboard figure and export work on its study as on any other.

The examples run as a user runs them (a script in a subprocess, in an empty folder); the readers then run
through the CLI's entry point."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from aiq_search.cli import main
from aiq_search.errors import AiqSearchError, ConfigError, DataError
from aiq_search.export import export_trials, verify_export
from aiq_search.families import build_model
from aiq_search.integration import AiqTrial, load_study_data, prepare_study
from aiq_search.metrics import MetricsConfig
from aiq_search.readers import publish_figures
from aiq_search.study import study_settings

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "own_loop"
SCORED = {"aiq", "accuracy", "val_accuracy", "test_accuracy", "network_efficiency", "layer_efficiencies",
          "epochs", "train_seconds", "device", "weights_artifact_id"}
NEEDS_LIGHTNING = pytest.mark.skipif(importlib.util.find_spec("lightning") is None,
                                     reason="Lightning is not installed (pip install 'aiq-search[lightning]')")
LENET = {"family": "lenet300", "input_shape": [1, 8, 8], "num_classes": 10, "widths": [16], "batch_norm": False,
         "dropout": 0.0}


@pytest.fixture
def example_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example's folder importable in this process too (export rebuilds its family's models here), and on
    PYTHONPATH, as the example says to put it (which is what lets export and evaluate import it)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(EXAMPLE), os.environ.get("PYTHONPATH", "")]))


def _study(tmp_path: Path, name: str = "own", directions: tuple[str, ...] = ("maximize",),
           pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    return optuna.create_study(study_name=name, storage=f"sqlite:///{tmp_path / 'own.db'}",
                               directions=list(directions), pruner=pruner)


def _run_example(script: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout's aiq_search; the script's folder comes first
    return subprocess.run([sys.executable, str(EXAMPLE / script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def _check_readers(study_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """status, plot, the dashboard figure, export and evaluate on a study an example made."""
    storage = f"sqlite:///{tmp_path / 'own-loop.db'}"
    rdb = optuna.storages.RDBStorage(storage)
    study = optuna.load_study(study_name=study_name, storage=rdb)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete and {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    for trial in trials:  # every trial recorded its architecture before training, pruned ones too
        assert trial.user_attrs["architecture"]["family"] == "mlp_family:mlp"
        assert trial.user_attrs["n_params"] > 0
    for trial in complete:
        assert SCORED <= trial.user_attrs.keys() and trial.value == trial.user_attrs["aiq"]
    assert study.metric_names == ["aIQ"]

    assert main(["status", "--storage", storage]) == 0
    status = capsys.readouterr().out
    assert len(complete) == 4  # the target counts COMPLETE trials; pruned ones come on top
    assert f"{study_name} (aiq mode): 4 complete" in status and "target 4 complete" in status

    report = tmp_path / "report.html"
    assert main(["plot", study_name, "--storage", storage, "--out", str(report)]) == 0
    assert "mlp_family:mlp" in report.read_text(encoding="utf-8")
    assert publish_figures(study, rdb)

    out = tmp_path / "exported" / study_name
    assert main(["export", study_name, "--storage", storage, "--out", str(out)]) == 0
    (folder,) = out.iterdir()
    best = max(complete, key=lambda t: (t.user_attrs["aiq"], -t.number))
    assert folder.name == f"trial-{best.number:04d}"
    assert json.loads((folder / "architecture.json").read_text(encoding="utf-8")) == best.user_attrs["architecture"]
    capsys.readouterr()
    assert main(["evaluate", str(folder)]) == 0, capsys.readouterr().out
    assert capsys.readouterr().out.rstrip().endswith("all equal")


@pytest.mark.slow
def test_plain_pytorch_example_end_to_end(tmp_path: Path, example_path: None,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    ran = _run_example("train_torch.py", tmp_path, "--n-trials", "4", "--epochs", "3")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("own-loop-torch: best aIQ")
    _check_readers("own-loop-torch", tmp_path, capsys)


@pytest.mark.slow
@NEEDS_LIGHTNING
def test_lightning_example_end_to_end(tmp_path: Path, example_path: None,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    ran = _run_example("train_lightning.py", tmp_path, "--n-trials", "4", "--epochs", "3")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("own-loop-lightning: best aIQ")
    _check_readers("own-loop-lightning", tmp_path, capsys)


# ------------------------------------------------------------------------------------------ prepare_study


def test_prepared_settings_read_like_a_study_files(tmp_path: Path) -> None:
    study = _study(tmp_path)
    settings = prepare_study(study, artifacts=tmp_path / "artifacts", dataset="digits", eval_split="test",
                             metrics=MetricsConfig(beta=3.0), family="lenet300", n_trials=7)
    assert (settings.mode, settings.eval_split, settings.beta, settings.dataset, settings.n_trials) == (
        "aiq", "test", 3.0, "digits", 7)
    assert settings.config["search"]["family"] == "lenet300"
    assert settings.artifacts == str((tmp_path / "artifacts").resolve())
    data = load_study_data(study)
    assert settings.data["input"] == {"shape": [1, 8, 8], "dtype": "float32", "range": list(data.value_range),
                                      "mean": list(data.mean), "std": list(data.std)}
    assert study.metric_names == ["aIQ"]

    pareto = _study(tmp_path, "pareto", ("maximize", "minimize"))
    assert prepare_study(pareto, artifacts=tmp_path / "artifacts", dataset="digits").mode == "pareto"
    assert pareto.metric_names == ["accuracy", "n_params"]


def test_prepare_study_refuses_what_readers_could_not_use(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"has directions \['minimize'\]; aiq-search studies maximize aIQ"):
        prepare_study(_study(tmp_path, "loss", ("minimize",)), artifacts=tmp_path, dataset="digits")
    study = _study(tmp_path)
    with pytest.raises(ConfigError, match="digits is a data set aiq-search loads: its input shape"):
        prepare_study(study, artifacts=tmp_path, dataset="digits", input_shape=[1, 8, 8])
    with pytest.raises(ConfigError, match="'my-data' is not one aiq-search loads .*: give its input_shape"):
        prepare_study(study, artifacts=tmp_path, dataset="my-data")
    with pytest.raises(ConfigError, match="input format: std must be positive"):
        prepare_study(study, artifacts=tmp_path, dataset="my-data", input_shape=[1, 4, 4], value_range=[0, 1],
                      mean=[0.5], std=[0.0])
    with pytest.raises(ConfigError, match="unknown architecture family 'nope'"):
        prepare_study(study, artifacts=tmp_path, dataset="digits", family="nope")
    with pytest.raises(ConfigError, match="eval_split must be 'validation' or 'test'"):
        prepare_study(study, artifacts=tmp_path, dataset="digits", eval_split="train")
    assert study.user_attrs == {}  # nothing recorded by a refused call


def test_a_study_with_trials_keeps_its_settings(tmp_path: Path) -> None:
    study = _study(tmp_path)
    prepare_study(study, artifacts=tmp_path / "a", dataset="digits", n_trials=2)
    study.optimize(lambda trial: 0.5, n_trials=1)
    prepare_study(study, artifacts=tmp_path / "a", dataset="digits", n_trials=5)  # the target may change
    assert study_settings(study).n_trials == 5
    with pytest.raises(ConfigError, match="other settings: metrics.beta, study.eval_split differ"):
        prepare_study(study, artifacts=tmp_path / "a", dataset="digits", eval_split="test",
                      metrics=MetricsConfig(beta=1.0))
    with pytest.raises(ConfigError, match="other settings: data.input, data.val_size differ"):
        prepare_study(study, artifacts=tmp_path / "a", dataset="digits", val_size=0.2)

    foreign = _study(tmp_path, "foreign")
    foreign.optimize(lambda trial: 0.5, n_trials=1)
    with pytest.raises(ConfigError, match="already has 1 trial\\(s\\) that aiq-search did not record"):
        prepare_study(foreign, artifacts=tmp_path / "a", dataset="digits")


def test_an_unprepared_study_is_refused_by_the_trial(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = study.ask()
    with pytest.raises(AiqSearchError, match="'aiq_search' study attribute is missing"):
        AiqTrial(trial, build_model(LENET))


# ------------------------------------------------------------------------------------------ AiqTrial


def _measure(aiq: AiqTrial, x: torch.Tensor, y: torch.Tensor) -> tuple[float, object]:
    aiq.model.eval()
    with aiq.probe() as probe, torch.no_grad():
        accuracy = int((aiq.model(x).argmax(1) == y).sum()) / len(y)
    return accuracy, probe.report()


def test_an_untrained_trial_records_what_the_built_in_objective_records(tmp_path: Path) -> None:
    study = _study(tmp_path)
    prepare_study(study, artifacts=tmp_path / "artifacts", dataset="digits",
                  metrics=MetricsConfig(layers=("fc1",)))
    data = load_study_data(study)
    trial = study.ask()
    with AiqTrial(trial, build_model(LENET, seed=0)) as aiq:
        accuracy, efficiency = _measure(aiq, data.val_x, data.val_y)
        score = aiq.report(1, accuracy, efficiency)
        value = aiq.finish(accuracy, efficiency, test_accuracy=0.25)
    study.tell(trial, value)
    (frozen,) = study.trials
    attrs = frozen.user_attrs
    assert value == score == attrs["aiq"] == MetricsConfig().aiq(efficiency.network, accuracy)
    assert frozen.intermediate_values == {1: score}
    assert list(attrs["layer_efficiencies"]) == ["fc1"]
    assert (attrs["accuracy"], attrs["val_accuracy"], attrs["test_accuracy"]) == (accuracy, accuracy, 0.25)
    assert attrs["architecture"] == build_model(LENET).spec and attrs["n_params"] == 64 * 16 + 16 + 16 * 10 + 10
    assert attrs["epochs"] == 1 and attrs["device"] == "cpu"
    assert (tmp_path / "artifacts" / attrs["weights_artifact_id"]).is_file()


def test_architectures_are_checked_against_the_model(tmp_path: Path) -> None:
    study = _study(tmp_path)
    prepare_study(study, artifacts=tmp_path / "artifacts", dataset="digits")
    model = build_model(LENET)
    with pytest.raises(ConfigError, match="does not fit its lenet300 architecture spec: classifier.weight, "
                                          "fc1.bias, fc1.weight differ"):
        AiqTrial(study.ask(), model, architecture={**LENET, "widths": [17]})
    with pytest.raises(ConfigError, match="lenet300 spec: missing keys \\['dropout'\\]"):
        AiqTrial(study.ask(), model, architecture={k: v for k, v in LENET.items() if k != "dropout"})

    free = study.ask()
    AiqTrial(free, torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)),
             architecture={"kind": "linear", "inputs": 64})
    plain = study.ask()
    AiqTrial(plain, torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)))
    assert study.trials[free.number].user_attrs["architecture"] == {"kind": "linear", "inputs": 64}
    assert study.trials[plain.number].user_attrs["architecture"] == {"model": "torch.nn.modules.container.Sequential"}


def test_a_failing_trial_records_why_and_finish_asks_for_what_is_missing(tmp_path: Path) -> None:
    study = _study(tmp_path)
    prepare_study(study, artifacts=tmp_path / "artifacts", dataset="digits", eval_split="test")
    data = load_study_data(study)

    def objective(trial: optuna.Trial) -> float:
        with AiqTrial(trial, build_model(LENET)) as aiq:
            accuracy, efficiency = _measure(aiq, data.test_x, data.test_y)
            return aiq.finish(accuracy, efficiency, epochs=0)

    study.optimize(objective, n_trials=1, catch=(ConfigError,))
    (failed,) = study.trials
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["fail_reason"] == ("ConfigError: finish needs the validation accuracy too "
                                                "(val_accuracy=...)")


def test_the_pruner_hears_each_reported_aiq(tmp_path: Path) -> None:
    study = _study(tmp_path, pruner=optuna.pruners.ThresholdPruner(lower=1.0))  # prunes any aIQ below 1
    prepare_study(study, artifacts=tmp_path / "artifacts", dataset="digits")
    data = load_study_data(study)

    def objective(trial: optuna.Trial) -> float:
        with AiqTrial(trial, build_model(LENET)) as aiq:
            aiq.report(1, *_measure(aiq, data.val_x, data.val_y))
            raise AssertionError("not pruned")

    study.optimize(objective, n_trials=1)
    (pruned,) = study.trials
    assert pruned.state == TrialState.PRUNED and list(pruned.intermediate_values) == [1]
    assert "fail_reason" not in pruned.user_attrs and pruned.user_attrs["architecture"]["family"] == "lenet300"


def test_pareto_trials_return_accuracy_and_parameters_and_are_never_reported(tmp_path: Path) -> None:
    study = _study(tmp_path, directions=("maximize", "minimize"))
    prepare_study(study, artifacts=tmp_path / "artifacts", dataset="digits")
    data = load_study_data(study)
    trial = study.ask()
    with AiqTrial(trial, build_model(LENET)) as aiq:
        accuracy, efficiency = _measure(aiq, data.val_x, data.val_y)
        aiq.report(1, accuracy, efficiency)  # Optuna keeps no intermediate values of multi-objective trials
        value = aiq.finish(accuracy, efficiency, test_accuracy=0.5)
    study.tell(trial, value)
    assert value == (accuracy, float(aiq.n_params)) and study.trials[0].intermediate_values == {}


@pytest.mark.slow  # exports to ONNX
def test_own_data_sets_export_but_cannot_be_evaluated_by_aiq_search(tmp_path: Path) -> None:
    study = _study(tmp_path)
    prepare_study(study, artifacts=tmp_path / "artifacts", dataset="my-digits", input_shape=[1, 8, 8],
                  value_range=[0, 16], mean=[4.9], std=[6.0])
    with pytest.raises(DataError, match="records the data set 'my-digits', which aiq-search does not load"):
        load_study_data(study)
    x, y = torch.randn(50, 1, 8, 8, generator=torch.Generator().manual_seed(0)), torch.arange(50) % 10
    for architecture in (None, {"kind": "a network of my own"}):
        trial = study.ask()
        model = build_model(LENET, seed=0)
        with AiqTrial(trial, model, architecture=architecture) as aiq:
            accuracy, efficiency = _measure(aiq, x, y)
            study.tell(trial, aiq.finish(accuracy, efficiency, test_accuracy=accuracy, epochs=0))
    (folder,) = export_trials(study, tmp_path / "out", which="top", k=1)  # the family spec: both trials tie
    assert json.loads((folder / "input.json").read_text(encoding="utf-8"))["mean"] == [4.9]
    with pytest.raises(DataError, match="unknown data set 'my-digits'"):
        verify_export(folder)
    free = study.trials[1]
    with pytest.raises(AiqSearchError, match="trial 1 cannot be exported: its recorded architecture: .*not a "
                                             "family's spec"):
        export_trials(study, tmp_path / "out-free", which="top", k=2)
    assert free.user_attrs["architecture"] == {"kind": "a network of my own"}


# ------------------------------------------------------------------------------------------ Lightning


def _fit(aiq: AiqTrial, data, *, epochs: int):
    """Train the trial's network with the Lightning example's module, scored by an AiqCallback."""
    import lightning
    from train_lightning import Classifier, loader

    from aiq_search.integration import AiqCallback

    callback = AiqCallback(aiq)
    trainer = lightning.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, callbacks=[callback], logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Classifier(aiq.model, 0.01), loader(data.train_x, data.train_y, train=True),
                loader(data.val_x, data.val_y))
    return callback, trainer


@pytest.mark.slow
@NEEDS_LIGHTNING
def test_lightning_callback_prunes_in_the_validation_loop(tmp_path: Path, example_path: None) -> None:
    study = _study(tmp_path, pruner=optuna.pruners.ThresholdPruner(lower=1.0))
    prepare_study(study, artifacts=tmp_path / "artifacts", dataset="digits")
    data = load_study_data(study)

    def objective(trial: optuna.Trial) -> float:
        with AiqTrial(trial, build_model(LENET, seed=0)) as aiq:
            _fit(aiq, data, epochs=3)
            raise AssertionError("not pruned")

    study.optimize(objective, n_trials=1)
    (pruned,) = study.trials
    assert pruned.state == TrialState.PRUNED and list(pruned.intermediate_values) == [1]
    assert "fail_reason" not in pruned.user_attrs


@pytest.mark.slow
@NEEDS_LIGHTNING
def test_lightning_callback_measures_what_aiq_search_measures(tmp_path: Path, example_path: None) -> None:
    from train_lightning import loader

    from aiq_search.training import evaluate as measure

    study = _study(tmp_path)
    prepare_study(study, artifacts=tmp_path / "artifacts", dataset="digits", metrics=MetricsConfig(alpha=2.0))
    data = load_study_data(study)
    trial = study.ask()
    aiq = AiqTrial(trial, build_model(LENET, seed=0))
    callback, trainer = _fit(aiq, data, epochs=1)
    accuracy, efficiency = measure(aiq.model, data.val_x, data.val_y, metrics=aiq.metrics)
    assert callback.scores["validation"] == (accuracy, efficiency)
    with pytest.raises(ConfigError, match=r"no test pass since the network last trained: run trainer.test\(...\) "
                                          r"with this callback before finish\(\), or give test_accuracy="):
        callback.finish()
    trainer.test(trainer.lightning_module, loader(data.test_x, data.test_y), verbose=False)
    value = callback.finish()
    study.tell(trial, value)
    (done,) = study.trials
    assert value == done.user_attrs["aiq"] == aiq.metrics.aiq(efficiency.network, accuracy)
    assert done.user_attrs["test_accuracy"] == measure(aiq.model, data.test_x, data.test_y)[0]
    assert done.intermediate_values == {1: value}
