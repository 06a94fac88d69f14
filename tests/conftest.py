"""Fixtures shared by several test files."""

from __future__ import annotations

import itertools
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import psycopg
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial
from sqlalchemy.engine import URL, make_url

from aiq_search.metrics import aiq, network_efficiency


@pytest.fixture
def recorded_study(tmp_path: Path) -> Callable[..., optuna.Study]:
    """Make an SQLite study whose trials carry the attributes aiq_search.study._create records (CONTRACTS.md).

    For tests of code that only reads those records (plots, dashboard): accuracies and layer efficiencies
    are drawn at random, parameter counts are those of the drawn LeNet-300 widths on 8×8 digits, and
    network efficiency and aIQ are computed from them by aiq_search.metrics._efficiency. A pruned and a failed trial
    sit among the complete ones, as in a real study.
    """

    def make(n_complete: int = 12, *, mode: str = "aiq", name: str = "recorded", seed: int = 0) -> optuna.Study:
        rng = random.Random(seed)
        beta = 2.0
        directions = ["maximize"] if mode == "aiq" else ["maximize", "minimize"]
        study = optuna.create_study(
            study_name=name, storage=f"sqlite:///{tmp_path / 'study.db'}", directions=directions
        )
        config = {"study": {"name": name, "mode": mode, "eval_split": "validation", "n_trials": n_complete},
                  "data": {"dataset": "digits"}, "search": {"family": "lenet300"},
                  "metrics": {"beta": beta, "alpha": 1.0, "layers": None}}
        study.set_user_attr("aiq_search", {"config": config, "data": {"data_dir": None},
                                           "artifacts": str(tmp_path / "artifacts")})
        pruned, failed = min(3, n_complete), min(7, n_complete + 1)
        for number in range(n_complete + 2):
            widths = [rng.randint(1, 300) for _ in range(rng.randint(1, 3))]
            params = {"n_layers": len(widths), **{f"width_{i}": w for i, w in enumerate(widths)}}
            distributions = {"n_layers": IntDistribution(1, 3),
                             **{f"width_{i}": IntDistribution(1, 2048, log=True) for i in range(len(widths))}}
            if number == pruned:
                study.add_trial(create_trial(state=TrialState.PRUNED, params=params, distributions=distributions))
                continue
            if number == failed:
                study.add_trial(create_trial(state=TrialState.FAIL, params=params, distributions=distributions,
                                             user_attrs={"fail_reason": "loss diverged"}))
                continue
            sizes = [64, *widths, 10]
            n_params = sum(a * b + b for a, b in itertools.pairwise(sizes))
            layers = {f"hidden.{i}": rng.uniform(0.05, 0.95) for i in range(len(widths))}
            accuracy = rng.uniform(0.5, 0.99)
            network = network_efficiency(layers)
            score = aiq(network, accuracy, beta)
            study.add_trial(
                create_trial(
                    state=TrialState.COMPLETE,
                    values=[score] if mode == "aiq" else [accuracy, n_params],
                    params={**params, "dropout": 0.0},
                    distributions={**distributions, "dropout": FloatDistribution(0.0, 0.7)},
                    user_attrs={
                        "aiq": score, "accuracy": accuracy, "val_accuracy": accuracy,
                        "test_accuracy": rng.uniform(0.5, 0.99), "n_params": n_params,
                        "network_efficiency": network, "layer_efficiencies": layers, "epochs": 3,
                        "train_seconds": 0.5, "device": "cpu",
                        "architecture": {"family": "lenet300", "input_shape": [1, 8, 8], "num_classes": 10,
                                         "widths": widths, "batch_norm": False, "dropout": 0.0},
                        "summary": "lenet300 " + "-".join(str(w) for w in widths),
                    },
                )
            )
        return study

    return make


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's 8×8 digits as DataSplits (offline, fast): the default data set for training tests."""
    from aiq_search.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The shared MNIST folder, ../shared/data next to the repository; tests needing it skip without it."""
    path = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    if not (path / "mnist" / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"MNIST is not under {path}/mnist/MNIST/raw")
    return path


# --------------------------------------------------------------------------- PostgreSQL (study service tests)

POSTGRES_SERVER_URL = "postgresql+psycopg://root@127.0.0.1:5432/postgres"


def _postgres_reachable(url: URL) -> str | None:
    """None when the server answers, else why not."""
    try:
        with psycopg.connect(_libpq(url), connect_timeout=5):
            return None
    except psycopg.OperationalError as exc:
        return str(exc).strip().splitlines()[0]


def _libpq(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_server() -> URL:
    """The PostgreSQL server the study tests use ($AIQ_TEST_POSTGRES_URL, else root on 127.0.0.1:5432).

    Started with pg_ctlcluster when it is down; the tests skip only when no server can be reached then."""
    url = make_url(os.environ.get("AIQ_TEST_POSTGRES_URL", POSTGRES_SERVER_URL))
    reason = _postgres_reachable(url)
    if reason is not None and shutil.which("pg_ctlcluster") and Path("/etc/postgresql").is_dir():
        for version in sorted(p.name for p in Path("/etc/postgresql").iterdir()):
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                           capture_output=True, timeout=60, check=False)
        for _ in range(30):
            reason = _postgres_reachable(url)
            if reason is None:
                break
            time.sleep(1)
    if reason is not None:
        pytest.skip(f"no PostgreSQL server at {url.render_as_string(hide_password=True)}: {reason}")
    return url


@pytest.fixture
def postgres_url(postgres_server: URL) -> Iterator[str]:
    """A fresh, uniquely named database on the test server for one test (dropped afterwards), as a
    SQLAlchemy URL for psycopg 3."""
    name = f"aiq_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(postgres_server), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.set(drivername="postgresql+psycopg", database=name).render_as_string(
            hide_password=False)
    finally:
        with psycopg.connect(_libpq(postgres_server), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------- tiny study files (study service tests)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


TINY_STUDY: dict[str, dict[str, object]] = {
    "study": {"name": "tiny", "sampler": "random", "pruner": "none", "seed": 0, "n_trials": 3},
    "data": {"dataset": "digits"},
    "search": {"family": "lenet300", "n_layers": 1, "width": {"low": 4, "high": 16}, "batch_norm": [False],
               "dropout": 0.0},
    "training": {"optimizer": "adam", "lr": 0.01, "batch_size": 64, "max_epochs": 3, "patience": 3,
                 "device": "cpu", "threads": 1},
}


@pytest.fixture
def write_study(tmp_path: Path) -> Callable[..., Path]:
    """Write a tiny digits study file (a few seconds per study) with its SQLite storage and artifacts in
    tmp_path; keyword tables update its sections (a value of None removes the key)."""

    def write(filename: str = "tiny.toml", **sections: dict[str, object]) -> Path:
        tables = {name: dict(table) for name, table in TINY_STUDY.items()}
        tables["study"].update(storage=f"sqlite:///{tmp_path / 'study.db'}", artifacts=str(tmp_path / "artifacts"))
        for name, updates in sections.items():
            table = tables.setdefault(name, {})
            table.update(updates)
            for key in [k for k, v in table.items() if v is None]:
                del table[key]
        text = "".join(f"[{name}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in table.items()) + "\n"
                       for name, table in tables.items())
        path = tmp_path / filename
        path.write_text(text, encoding="utf-8")
        return path

    return write


TRIAL_ATTRS = {"aiq", "accuracy", "val_accuracy", "test_accuracy", "n_params", "network_efficiency",
               "layer_efficiencies", "epochs", "train_seconds", "device", "architecture", "summary",
               "weights_artifact_id", "history"}


@pytest.fixture
def check_recorded() -> Callable[[optuna.trial.FrozenTrial], None]:
    """Check that a COMPLETE trial of a tiny study carries every attribute of CONTRACTS.md, consistently."""
    from aiq_search.families import build_model, count_parameters

    def check(trial: optuna.trial.FrozenTrial, beta: float = 2.0) -> None:
        attrs = trial.user_attrs
        assert trial.state == TrialState.COMPLETE
        assert TRIAL_ATTRS <= set(attrs), TRIAL_ATTRS - set(attrs)
        assert attrs["aiq"] == pytest.approx(aiq(attrs["network_efficiency"], attrs["accuracy"], beta))
        assert 0.0 <= attrs["accuracy"] <= 1.0 and 0.0 <= attrs["test_accuracy"] <= 1.0
        assert set(attrs["layer_efficiencies"]) == {"fc1"}  # one hidden layer; the classifier is not probed
        assert attrs["architecture"]["family"] == "lenet300"
        assert attrs["n_params"] == count_parameters(build_model(attrs["architecture"]))
        trained = "repeat_of" not in attrs  # a repeat of a finished network is answered from its record
        assert attrs["epochs"] >= 1 and (attrs["train_seconds"] > 0) == trained and attrs["device"] == "cpu"
        assert "fail_reason" not in attrs
        assert [e["epoch"] for e in attrs["history"]] == list(range(1, attrs["epochs"] + 1))

    return check


# --------------------------------------------------------------------------- a PostgreSQL server to restart


class OwnPostgres:
    """A PostgreSQL cluster of one test's own (initdb in a temporary folder, a free port on 127.0.0.1, trust
    authentication), which the test may restart, stop and start; ``url`` is its ``postgres`` database."""

    def __init__(self, bin_dir: Path, folder: Path, port: int) -> None:
        self.bin_dir = bin_dir
        self.folder = folder
        self.data = folder / "data"
        self.port = port
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

    def _run(self, *command: str) -> None:
        """Run a PostgreSQL program as its owner (PostgreSQL refuses to run as root)."""
        argv = [str(self.bin_dir / command[0]), *command[1:]]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=True, capture_output=True, timeout=120)

    def _ctl(self, action: str, *options: str) -> None:
        self._run("pg_ctl", action, "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w", *options)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")
        self.start()

    def start(self) -> None:
        self._ctl("start", "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("stop", "-m", mode)

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    """A PostgreSQL server of this test's own, to restart or stop while workers use it (never the shared
    server); skips when PostgreSQL's server programs (initdb, pg_ctl) are not installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        pytest.skip("PostgreSQL's initdb is not installed (looked in /usr/lib/postgresql/*/bin)")
    folder = Path(tempfile.mkdtemp(prefix="aiq-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    server = OwnPostgres(found[-1].parent, folder, _free_port())
    try:
        server.init()
        yield server
    finally:
        try:
            server.stop("immediate")
        except subprocess.CalledProcessError:  # already stopped
            pass
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def serving(server: Any) -> Iterator[str]:
    """Serve a WSGI server (``serve_forever``) in a thread; yields its root URL on 127.0.0.1."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
