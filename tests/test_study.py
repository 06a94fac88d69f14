"""The study service on SQLite in one process: the CLI end to end, what each trial records, resuming,
failures, pareto mode, the grid sampler, and the one-line errors."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import torch
from optuna.artifacts import FileSystemArtifactStore, download_artifact
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from safetensors.torch import load_file

from aiq_search.cli import main
from aiq_search.data import load_dataset
from aiq_search.errors import AiqSearchError, ConfigError, StorageError
from aiq_search.families import build_model
from aiq_search.readers import study_status
from aiq_search.studyfile import load_study_file
from aiq_search.training import evaluate
from aiq_search.worker import run_study

STUDIES = Path(__file__).resolve().parent.parent / "studies"


def load(path: Path) -> optuna.Study:
    config = load_study_file(path)
    return optuna.load_study(study_name=config.study.name, storage=config.study.storage)


def complete(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(states=(TrialState.COMPLETE,))


def test_quickstart_end_to_end_via_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped quickstart file as a user runs it (relative storage and artifacts land in the cwd)."""
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(STUDIES / "quickstart.toml"), "--n-trials", "3", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "quickstart: 3 complete" in out and "best: trial" in out
    assert (tmp_path / "runs" / "quickstart.db").is_file()
    study = optuna.load_study(study_name="quickstart", storage="sqlite:///runs/quickstart.db")
    assert len(complete(study)) == 3
    assert study.metric_names == ["aIQ"]
    settings = study.user_attrs["aiq_search"]
    config = settings["config"]
    assert config["study"]["mode"] == "aiq" and config["data"]["dataset"] == "digits"
    assert config["search"]["family"] == "lenet5" and config["study"]["eval_split"] == "validation"
    assert config["metrics"] == {"beta": 2.0, "alpha": 1.0, "layers": None}
    assert settings["artifacts"] == str(tmp_path / "artifacts" / "quickstart")
    assert config["study"]["n_trials"] == 3
    assert settings["data"]["input"]["shape"] == [1, 8, 8] and len(settings["data"]["input"]["mean"]) == 1
    for trial in complete(study):
        assert trial.value == pytest.approx(trial.user_attrs["aiq"])
        assert trial.intermediate_values  # reported each epoch, for the pruner
    assert main(["status", str(STUDIES / "quickstart.toml")]) == 0
    status = capsys.readouterr().out
    assert "quickstart (aiq mode): 3 complete" in status and "top 3 by aIQ" in status


def test_trial_records_and_weights_need_no_retraining(write_study: Callable[..., Path],
                                                      check_recorded: Callable[[FrozenTrial], None]) -> None:
    path = write_study()
    summary = run_study(load_study_file(path), progress_bar=False)
    assert summary.finished and summary.counts == {"COMPLETE": 3} and summary.ran == 3
    study = load(path)
    data = load_dataset("digits")
    store = FileSystemArtifactStore(study.user_attrs["aiq_search"]["artifacts"])
    for trial in complete(study):
        check_recorded(trial)
        weights = path.parent / f"weights-{trial.number}.safetensors"
        download_artifact(artifact_store=store, artifact_id=trial.user_attrs["weights_artifact_id"],
                          file_path=str(weights))
        model = build_model(trial.user_attrs["architecture"])
        model.load_state_dict(load_file(str(weights)))
        with torch.no_grad():
            accuracy, report = evaluate(model, data.val_x, data.val_y)
        assert accuracy == pytest.approx(trial.user_attrs["val_accuracy"])
        assert report.network == pytest.approx(trial.user_attrs["network_efficiency"])


def test_rerun_resumes_without_repeating_work(write_study: Callable[..., Path]) -> None:
    path = write_study()
    run_study(load_study_file(path), progress_bar=False)
    before = {t.number: (t.value, t.params) for t in complete(load(path))}
    again = run_study(load_study_file(path), progress_bar=False)
    assert again.ran == 0 and len(complete(load(path))) == 3
    more = run_study(load_study_file(path).with_overrides(n_trials=5), progress_bar=False)
    assert more.ran == 2
    after = {t.number: (t.value, t.params) for t in complete(load(path))}
    assert len(after) == 5 and all(after[n] == before[n] for n in before)


def test_terminal_progress_shows_trial_epoch_and_best_aiq(write_study: Callable[..., Path]) -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=150)
    run_study(load_study_file(write_study(study={"n_trials": 2})), console=console)
    shown = screen.getvalue()
    # the live bar, while trial 1 trains: its epoch, the study's trials by state, best aIQ, time left
    assert re.search(r"trial 1 · epoch 3/3 · 0 pruned, 0 failed, 1 running · best aIQ 0\.\d{4} · about 0:\d\d left",
                     shown), shown
    assert "waiting" not in shown
    assert "trial 0 complete: aIQ" in shown and "trial 1 complete: aIQ" in shown


def test_timeout_stops_starting_trials(write_study: Callable[..., Path]) -> None:
    summary = run_study(load_study_file(write_study(study={"n_trials": 500, "timeout": 0.5})), progress_bar=False)
    assert 1 <= summary.ran < 500 and not summary.finished
    assert summary.counts == {"COMPLETE": summary.ran}


def test_pareto_mode_records_aiq_too(write_study: Callable[..., Path],
                                     check_recorded: Callable[[FrozenTrial], None]) -> None:
    path = write_study(study={"mode": "pareto", "sampler": "nsga2", "n_trials": 2})
    run_study(load_study_file(path), progress_bar=False)
    study = load(path)
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    assert study.metric_names == ["accuracy", "n_params"]
    for trial in complete(study):
        check_recorded(trial)
        assert trial.values == [trial.user_attrs["accuracy"], trial.user_attrs["n_params"]]
        assert not trial.intermediate_values  # Optuna keeps none for multi-objective trials


def test_diverging_trials_fail_with_their_reason_and_the_study_goes_on(write_study: Callable[..., Path]) -> None:
    path = write_study(training={"optimizer": "sgd", "lr": 1e30, "momentum": 0.0})
    with pytest.raises(AiqSearchError, match="10 trials in a row failed in this worker; the last: "
                                             "DivergenceError: training diverged"):
        run_study(load_study_file(path), progress_bar=False)
    trials = load(path).get_trials()
    assert len(trials) == 10  # the first failure did not stop the study; ten in a row did
    assert all(t.state == TrialState.FAIL and "diverged" in t.user_attrs["fail_reason"] for t in trials)


def test_a_trial_failed_as_dead_by_another_worker_does_not_stop_this_one(
        write_study: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker whose heartbeats stopped reaching the storage (a long outage) finds its trial failed by
    another worker when it reports back: it goes on with the next trial instead of crashing."""
    import aiq_search.worker._objective as study_module

    path = write_study(study={"n_trials": 2})
    config = load_study_file(path)
    real_train = study_module.train
    calls: list[int] = []

    def train_after_being_declared_dead(*args: object, **kwargs: object) -> object:
        if not calls:  # as another worker's heartbeat check would, while this trial trains
            others = optuna.storages.RDBStorage(config.study.storage)
            study_id = others.get_study_id_from_name("tiny")
            for trial in optuna.load_study(study_name="tiny", storage=others).get_trials(states=(TrialState.RUNNING,)):
                trial_id = others.get_trial_id_from_study_id_trial_number(study_id, trial.number)
                others.set_trial_state_values(trial_id, TrialState.FAIL)
        calls.append(1)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(study_module, "train", train_after_being_declared_dead)
    summary = run_study(config, progress_bar=False)
    assert summary.counts == {"FAIL": 1, "COMPLETE": 2} and summary.ran == 3
    assert [t.state for t in load(path).get_trials()] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]


def test_grid_sampler_stops_when_every_combination_is_tried(write_study: Callable[..., Path]) -> None:
    path = write_study(study={"sampler": "grid", "n_trials": 5}, search={"width": [4, 8]})
    summary = run_study(load_study_file(path), progress_bar=False)
    widths = sorted(t.user_attrs["architecture"]["widths"][0] for t in complete(load(path)))
    assert widths == [4, 8] and not summary.finished
    assert sorted(t.params["width_0"] for t in complete(load(path))) == [0, 1]  # positions in the list


def test_resuming_in_another_mode_is_refused(write_study: Callable[..., Path]) -> None:
    path = write_study(study={"n_trials": 1})
    run_study(load_study_file(path), progress_bar=False)
    pareto = write_study("pareto.toml", study={"mode": "pareto", "n_trials": 1})
    with pytest.raises(ConfigError, match="has 1 objective.*the file asks for pareto mode"):
        run_study(load_study_file(pareto), progress_bar=False)


def test_create_runs_no_trial_and_workers_join(write_study: Callable[..., Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = write_study(study={"n_trials": 1})
    assert main(["create", str(path)]) == 0
    assert "ready in sqlite:///" in capsys.readouterr().out
    study = load(path)
    assert not study.trials and study.user_attrs["aiq_search"]["config"]["data"]["dataset"] == "digits"
    assert main(["worker", str(path), "--no-progress"]) == 0
    assert len(complete(load(path))) == 1
    assert main(["create", str(path)]) == 0  # again: the finished trial stays
    assert len(complete(load(path))) == 1


def test_worker_needs_an_existing_study(write_study: Callable[..., Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = write_study()
    assert main(["worker", str(path)]) == 2
    assert capsys.readouterr().err == f"aiq-search: error: no SQLite study database at {tmp_path / 'study.db'}\n"
    run_study(load_study_file(path).with_overrides(n_trials=1), progress_bar=False)
    other = write_study("other.toml", study={"name": "other"})
    with pytest.raises(StorageError, match="no study named 'other'.*create it with 'aiq-search create'"):
        run_study(load_study_file(other), create=False, progress_bar=False)


BAD = [
    {"study": {"n_trials": "3"}},
    {"search": {"width": 0}},
    {"search": {"family": "vgg"}},
    {"data": {"dataset": "imagenet"}},
    {"study": {"sampler": "anneal"}},
    {"study": {"pruner": "always"}},
    {"training": {"learning_rate": 0.1}},
]


def test_bad_study_files_exit_2_and_leave_the_study_untouched(write_study: Callable[..., Path],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    good = write_study(study={"n_trials": 2})
    assert main(["run", str(good), "--no-progress"]) == 0
    before = [(t.number, t.state, t.values, t.user_attrs) for t in load(good).get_trials()]
    capsys.readouterr()
    for sections in BAD:
        bad = write_study("bad.toml", **sections)
        readers = [["status", str(bad)]] if "study" in sections else []  # readers read only [study]
        for command in (["run", str(bad)], ["worker", str(bad)], ["launch", str(bad), "--workers", "2"], *readers):
            assert main(command) == 2, (command, sections)
            err = capsys.readouterr().err
            assert err.startswith(f"aiq-search: error: {bad}: field '") and err.count("\n") == 1, err
    assert [(t.number, t.state, t.values, t.user_attrs) for t in load(good).get_trials()] == before


def test_unreachable_storage_is_one_clear_line(write_study: Callable[..., Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql+psycopg://someone:s3cret@127.0.0.1:1/nowhere"
    assert main(["run", str(write_study()), "--storage", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aiq-search: error: cannot open the storage "
                          "postgresql+psycopg://someone:***@127.0.0.1:1/nowhere: ")
    assert "s3cret" not in err and "Traceback" not in err and err.count("\n") == 1
    assert main(["status", "--storage", "mysql+nosuchdriver://h/db"]) == 2
    assert capsys.readouterr().err.startswith("aiq-search: error: cannot open the storage mysql+nosuchdriver://h/db")


def test_status_lists_every_study_in_a_storage(write_study: Callable[..., Path], tmp_path: Path) -> None:
    run_study(load_study_file(write_study(study={"name": "one", "n_trials": 1})), progress_bar=False)
    run_study(load_study_file(write_study("two.toml", study={"name": "two", "n_trials": 2})), progress_bar=False)
    statuses = study_status(f"sqlite:///{tmp_path / 'study.db'}", top=1)
    assert [(s.name, s.counts, s.n_trials, len(s.best)) for s in statuses] == [
        ("one", {"COMPLETE": 1}, 1, 1), ("two", {"COMPLETE": 2}, 2, 1)]
    best = statuses[1].best[0]
    assert best.aiq == max(t.user_attrs["aiq"] for t in complete(optuna.load_study(
        study_name="two", storage=f"sqlite:///{tmp_path / 'study.db'}")))


def test_a_study_with_trials_refuses_a_changed_file(write_study: Callable[..., Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = write_study(study={"n_trials": 1})
    assert main(["run", str(path), "--no-progress"]) == 0
    before = [(t.number, t.state, t.user_attrs) for t in load(path).get_trials()]
    capsys.readouterr()
    write_study(data={"val_size": 0.2}, training={"lr": 0.02})
    assert main(["run", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aiq-search: error: study 'tiny' already has trials made with other settings: "
                          "data.val_size, training.lr differ from what it recorded; give the study a new name")
    assert err.count("\n") == 1
    assert [(t.number, t.state, t.user_attrs) for t in load(path).get_trials()] == before
    assert load(path).user_attrs["aiq_search"]["config"]["data"]["val_size"] == 0.1  # not overwritten
    write_study(study={"n_trials": 2}, training={"threads": 2})  # what may change between runs
    assert main(["run", str(path), "--no-progress", "--device", "cpu"]) == 0
    assert len(complete(load(path))) == 2
