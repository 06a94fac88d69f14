"""A probe of failures in the user's code and settings (issues 21 and 22): each ends in one line naming the
problem (exit 2, no traceback), creates nothing it should not, and never loses a COMPLETE trial."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from aiq_search.cli import main
from aiq_search.studyfile import load_study_file

USER_CODE = '''
from collections import OrderedDict
import numpy as np
from torch import nn
from aiq_search import Choice, Family
from aiq_search.data import RawData

class Mlp(Family):
    space = {"width": Choice.int(4, 8)}
    def build(self, spec):
        c, h, w = spec["input_shape"]
        return nn.Sequential(OrderedDict([("flatten", nn.Flatten()), ("fc1", nn.Linear(c * h * w, spec["width"])),
                                          ("act", nn.ReLU()), ("classifier", nn.Linear(spec["width"], 10))]))

class Raises(Mlp):
    def build(self, spec):
        raise RuntimeError("no such block")

class NotModule(Mlp):
    def build(self, spec):
        return "a network"

class Huge(Mlp):
    def build(self, spec):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 100_000), nn.Linear(100_000, 10_000), nn.Linear(10_000, 10))

class Forward(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 4)
        self.classifier = nn.Linear(4, 10)
    def forward(self, x):
        raise ValueError("shapes do not match")

class BadForward(Mlp):
    def build(self, spec):
        return Forward()

class EvalOneClass(nn.Module):
    """Learns in training mode; in eval mode answers class 0 whatever it is shown (as BatchNorm gone wrong)."""
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 16)
        self.classifier = nn.Linear(16, 10)
    def forward(self, x):
        out = self.classifier(nn.functional.relu(self.fc1(x.flatten(1))))
        return out if self.training else out * 0 + nn.functional.one_hot(out.new_zeros(len(x)).long(), 10)

class OneClassInEval(Mlp):
    def build(self, spec):
        return EvalOneClass()

class Wide(Mlp):
    space = {"width": Choice.int(4096, 8192)}

mlp, raises, not_module, huge, bad_forward, one_class_in_eval, wide = (
    Mlp(), Raises(), NotModule(), Huge(), BadForward(), OneClassInEval(), Wide())

def one_class():
    return RawData(np.random.default_rng(0).random((100, 8, 8)), np.zeros(100, dtype=np.int64))

def loader_raises():
    raise OSError("the share is gone")
'''

IMPORT_FAILURES = {"raises": 'raise RuntimeError("no GPU here")\n', "syntax": "def f(:\n",
                   "exits": "import sys\nsys.exit(3)\n"}


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh module of the user's families and loaders, importable (a unique name: nothing cached)."""
    name = f"user_{uuid.uuid4().hex[:8]}"
    code = tmp_path / "code"
    code.mkdir()
    (code / f"{name}.py").write_text(textwrap.dedent(USER_CODE), encoding="utf-8")
    for kind, text in IMPORT_FAILURES.items():
        (code / f"{name}_{kind}.py").write_text(text, encoding="utf-8")
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # the tracebacks' log files
    (tmp_path / "tmp").mkdir()
    return name


def _study(write_study: Callable[..., Path], family: str, **sections: dict[str, object]) -> Path:
    search = {"family": family, "n_layers": None, "width": None, "batch_norm": None, "dropout": None}
    return write_study(search={**search, **sections.pop("search", {})},
                       training={"max_epochs": 1, **sections.pop("training", {})}, **sections)


def _lines(capfd: pytest.CaptureFixture[str]) -> list[str]:
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    return (out + err).splitlines()


def _created(tmp_path: Path) -> set[str]:
    return {p.name for p in tmp_path.iterdir()} - {"code", "tmp", "tiny.toml", "spec.json"}


@pytest.mark.parametrize(("family", "data", "metrics", "message"), [
    ("{m}:raises", "digits", None, "RuntimeError: no such block at {m}.py:17 in build; traceback: "),
    ("{m}:not_module", "digits", None, "built a str, not a torch.nn.Module"),
    ("{m}:huge", "digits", None, "more than the family's limit of 200,000,000"),
    ("{m}:mlp", "digits", ["fc9"], "no module named 'fc9' in the model"),
    ("{m}:mlp", "{m}:one_class", None, "its training labels hold only class 0; a classifier needs at least 2"),
    ("{m}:mlp", "{m}:loader_raises", None, "its loader failed: OSError: the share is gone at {m}.py:"),
    ("{m}_raises:mlp", "digits", None, "importing {m}_raises failed (RuntimeError: no GPU here at {m}_raises.py:1"),
    ("{m}_syntax:mlp", "digits", None, "importing {m}_syntax failed (SyntaxError: invalid syntax ("),
    ("{m}_exits:mlp", "digits", None, "importing {m}_exits failed (it called sys.exit(3) at {m}_exits.py:2"),
    ("{m}:mlp", "{m}_exits:load", None, "cannot import {m}_exits: it called sys.exit(3)"),
    ("{m}:mlp", "{m}_syntax:load", None, "cannot import {m}_syntax: SyntaxError: invalid syntax"),
])
def test_code_the_study_cannot_run_without_is_one_line(user: str, write_study: Callable[..., Path], tmp_path: Path,
                                                         capfd: pytest.CaptureFixture[str], family: str, data: str,
                                                         metrics: list[str] | None, message: str) -> None:
    """Refused before anything is created: no storage, no artifacts, no trial spent."""
    path = _study(write_study, family.format(m=user), data={"dataset": data.format(m=user)},
                  **({"metrics": {"layers": metrics}} if metrics else {}))
    assert main(["run", str(path), "--no-progress"]) == 2
    [line] = _lines(capfd)
    assert line.startswith("aiq-search: error: ") and message.format(m=user) in line, line
    assert _created(tmp_path) == set()
    if "traceback: " in line:  # the full traceback is in the file the line names
        log = Path(line.split("traceback: ")[1].split(";")[0]).read_text()
        assert log.startswith("Traceback") and log.splitlines()[-1].rpartition(".")[2] in line


def test_traceback_option_prints_it(user: str, write_study: Callable[..., Path],
                                    capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(_study(write_study, f"{user}:raises")), "--no-progress", "--traceback"]) == 2
    err = capfd.readouterr().err
    assert "Traceback (most recent call last)" in err and err.rstrip().splitlines()[-1].startswith("aiq-search: error:")


@pytest.mark.parametrize(("field", "message"), [
    ("study.storage='sqlite:///:memory:'", "field 'study.storage': an in-memory SQLite database"),
    ("study.heartbeat_interval=100000000000", "field 'study.heartbeat_interval': Input should be less than"),
    ("study.grace_period=100000000000", "field 'study.grace_period': Input should be less than"),
])
def test_settings_that_break_a_thread_are_refused(write_study: Callable[..., Path], tmp_path: Path,
                                                  capfd: pytest.CaptureFixture[str], field: str, message: str) -> None:
    assert main(["run", str(write_study()), "--no-progress", "--set", field]) == 2
    [line] = _lines(capfd)
    assert message in line and _created(tmp_path) == set()


def test_trials_failing_in_the_users_code_are_a_line_each(user: str, write_study: Callable[..., Path],
                                                          capfd: pytest.CaptureFixture[str]) -> None:
    """A forward pass that raises fails every trial while training: one line each, without Optuna's warning
    and traceback, then the worker stops after its streak saying what to fix."""
    assert main(["run", str(_study(write_study, f"{user}:bad_forward", study={"n_trials": 20})),
                 "--no-progress"]) == 2
    lines = _lines(capfd)
    assert len(lines) == 11
    assert all(f"ValueError: shapes do not match at {user}.py:" in line and " in forward; traceback: " in line
               for line in lines)
    assert lines[0].startswith("trial 0 fail: ") and lines[-1].startswith(
        "aiq-search: error: 10 trials in a row failed in this worker; the last: ValueError: shapes do not match")
    assert "(trial 9); the worker stops: fix what it names" in lines[-1]


@pytest.mark.parametrize(("spec", "message"), [
    ([1, 2], "the spec is a JSON array; a spec is a JSON object"),
    (3, "the spec is a JSON number; a spec is a JSON object"),
    ("[" * 100_000 + "]" * 100_000, "the JSON is nested too deeply to be a spec"),
    ({"family": "lenet300", "input_shape": [1, 8, 8], "num_classes": 3, "widths": [8], "batch_norm": False,
      "dropout": 0.0}, "the spec has 3 classes; the study's data have 10"),
])
def test_enqueue_refuses_what_is_not_a_spec_of_the_study(write_study: Callable[..., Path], tmp_path: Path,
                                                         capfd: pytest.CaptureFixture[str], spec: object,
                                                         message: str) -> None:
    path = write_study()
    assert main(["create", str(path)]) == 0
    (tmp_path / "spec.json").write_text(spec if isinstance(spec, str) else json.dumps(spec))
    capfd.readouterr()
    assert main(["enqueue", str(path), "--spec", str(tmp_path / "spec.json")]) == 2
    [line] = _lines(capfd)
    assert message in line
    study = optuna.load_study(study_name="tiny", storage=load_study_file(path).study.storage)
    assert study.get_trials() == []


@pytest.mark.slow
def test_a_meaningless_result_is_said(user: str, write_study: Callable[..., Path],
                                      capfd: pytest.CaptureFixture[str]) -> None:
    """Issue 22: a network that learns in training mode but answers one class in eval mode."""
    path = _study(write_study, f"{user}:one_class_in_eval", study={"n_trials": 1},
                  training={"max_epochs": 2, "lr": 0.05})
    assert main(["run", str(path), "--no-progress"]) == 0
    lines = _lines(capfd)
    warning = next(line for line in lines if line.startswith("trial 0 warning: "))
    assert "training accuracy 0." in warning and "but validation accuracy 0.09" in warning
    assert "predicts one class for every validation input" in warning
    [trial] = optuna.load_study(study_name="tiny", storage=load_study_file(path).study.storage).get_trials()
    assert trial.user_attrs["predicted_classes"] == 1 and trial.user_attrs["train_accuracy"] > 0.5
    assert len(trial.user_attrs["warnings"]) == 2


def _limited(limit: int) -> Callable[[], None]:
    """A child whose files cannot grow past ``limit`` bytes (RLIMIT_FSIZE; SIGXFSZ ignored, so writes fail
    with EFBIG): a disk that is full for real, without root or a small file system."""
    def limit_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_files


@pytest.mark.slow
@pytest.mark.parametrize(("family", "limit", "message"), [
    ("mlp", 60_000, "the study storage sqlite:///"),  # the database's WAL cannot grow: the first write fails
    ("wide", 1_000_000, "the trial's weights could not be saved"),  # >= 1 MB of weights; the WAL fits
])
def test_a_full_disk_stops_the_worker_in_one_line(user: str, write_study: Callable[..., Path], tmp_path: Path,
                                                  family: str, limit: int, message: str) -> None:
    path = _study(write_study, f"{user}:{family}", study={"n_trials": 1})
    assert main(["run", str(path), "--no-progress"]) == 0
    command = [sys.executable, "-c", "from aiq_search.cli import entry_point; entry_point()", "run", str(path),
               "--no-progress", "--n-trials", "3"]
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "code"), "TMPDIR": str(tmp_path / "tmp")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, preexec_fn=_limited(limit), env=env)
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr, done.stderr[-3000:]
    assert message in done.stderr.splitlines()[-1] and "finished trials are kept" in done.stderr
    assert len(done.stderr.splitlines()) == 1
    study = optuna.load_study(study_name="tiny", storage=load_study_file(path).study.storage)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) >= 1
