"""Workers on Ray: `launch --ray` on a local Ray cluster of two simulated nodes, on the PostgreSQL test
server: the study's exact count with a worker process and a Ray actor killed mid-trial, Ctrl-C, and what
is refused."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import pytest
from optuna.artifacts import download_artifact
from optuna.trial import FrozenTrial, TrialState
from safetensors.torch import load_file

from aiq_search.errors import ConfigError
from aiq_search.families import build_model
from aiq_search.launch import check_cluster, progress_line, worker_config
from aiq_search.readers import TrialRow
from aiq_search.study import STALE_REASON, fail_reason, open_artifact_store, study_settings
from aiq_search.studyfile import load_study_file

if TYPE_CHECKING:
    import psutil

WORKERS = 4
# a killed actor's worker process sees within ray_worker.PARENT_CHECK_S (1 s) that its actor is gone; a trial
# it ends before then is recorded COMPLETE, so the two-node test kills only trials with more than this left
KILL_MARGIN_S = 3.0


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "aiq_search.cli", *args]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A Ray cluster of two nodes on this machine (two CPUs each, no Ray dashboard); yields its address."""
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'aiq-search[ray]')")
    from ray.cluster_utils import Cluster

    small = {"num_cpus": 2, "object_store_memory": 80 * 2**20}
    cluster = Cluster(initialize_head=True, head_node_args={**small, "include_dashboard": False})
    try:
        cluster.add_node(**small)
        cluster.wait_for_nodes()
        yield cluster.address
    finally:
        cluster.shutdown()


def _load(path: Path) -> optuna.Study:
    config = load_study_file(path)
    return optuna.load_study(study_name=config.study.name, storage=config.study.storage)


def _wait_for(path: Path, launcher: subprocess.Popen[str], ready: Callable[[list[FrozenTrial]], bool],
              what: str) -> list[FrozenTrial]:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert launcher.poll() is None, launcher.communicate()
        time.sleep(0.3)
        try:
            trials = _load(path).get_trials()
        except KeyError:  # the launcher has not created the study yet
            continue
        if ready(trials):
            return trials
    pytest.fail(f"timed out waiting for {what}")


def _worker_processes() -> list[psutil.Process]:
    """The aiq-search worker processes that Ray's worker actors started (one per busy actor)."""
    import psutil

    return [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"]
            and p.info["cmdline"][1:3] == ["-m", "aiq_search.launch._ray_worker"]]


def _count(trials: list[FrozenTrial], state: TrialState) -> int:
    return sum(t.state == state for t in trials)


class _TrainingLeft:
    """The least training a running trial has left, from its own pace: each poll sees how many epochs each
    running trial has reported (one intermediate value an epoch), and the pace between its first and latest
    sighting gives its seconds an epoch (0 left until every running trial has been seen a few epochs on).
    A trial's own pace, not the length of trials finished before: trials of different sizes start together,
    and none has finished while the first four run."""

    def __init__(self, max_epochs: int) -> None:
        self.max_epochs = max_epochs
        self.first: dict[int, tuple[float, int]] = {}

    def __call__(self, trials: list[FrozenTrial]) -> float:
        now = time.monotonic()
        left = []
        for trial in (t for t in trials if t.state == TrialState.RUNNING):
            epochs = len(trial.intermediate_values)
            seen_at, seen_epochs = self.first.setdefault(trial.number, (now, epochs))
            if epochs - seen_epochs < 3:
                return 0.0
            left.append((self.max_epochs - epochs) * (now - seen_at) / (epochs - seen_epochs))
        return min(left, default=0.0)


# ----------------------------------------------------------------------------- on a cluster


@pytest.mark.slow
@pytest.mark.postgres
def test_workers_on_two_nodes_end_with_exactly_n_trials_though_two_are_killed(
        ray_cluster: str, write_study: Callable[..., Path], postgres_url: str,
        check_recorded: Callable[[FrozenTrial], None], tmp_path: Path) -> None:
    """Four workers on two nodes; mid-trial, one worker process is killed and one Ray actor's process (as
    when its node is lost). Ray runs both workers again, their trials end FAIL by heartbeat and are retried,
    and the study ends with exactly n_trials COMPLETE trials, each with its weights in the artifact store.

    The killed actor's worker process notices within `ray_worker.PARENT_CHECK_S` that its actor is gone and
    a trial that ends in that second is recorded COMPLETE (seen once, when the kill came as the first wave of
    trials was ending), so the kill waits until every running trial has seconds of training left."""
    max_epochs = 300  # seconds a trial: a wide window to kill in
    path = write_study(study={"n_trials": 8, "storage": postgres_url, "heartbeat_interval": 1, "grace_period": 3},
                       training={"max_epochs": max_epochs, "patience": max_epochs})
    training_left = _TrainingLeft(max_epochs)
    launcher = subprocess.Popen(cli("launch", str(path), "--workers", str(WORKERS), "--ray", ray_cluster),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # every worker is in a trial (each runs one at a time), each with seconds left: kill two mid-trial
        before = _wait_for(path, launcher, lambda t: _count(t, TrialState.RUNNING) == WORKERS
                           and training_left(t) > KILL_MARGIN_S, "every worker busy with seconds of its trial left")
        workers = _worker_processes()
        assert len(workers) == WORKERS
        worker, other = workers[:2]
        actor = other.parent()  # the Ray actor holding another worker
        assert " ".join(actor.cmdline()).startswith("ray::WorkerHost")
        worker.kill()
        actor.kill()
        other.wait(timeout=10)  # a worker ends with its actor: Ray's restart leaves no second one behind
        out, err = launcher.communicate(timeout=400)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 0, out + err
    assert f"[ray] {WORKERS} workers on a Ray cluster of 2 nodes, each with 1 CPUs and 0 GPUs" in out
    last = re.search(r"^\[ray\] 8 complete, (\d+) fail \(target 8 complete\) · best aIQ 0\.\d{4} \(trial \d+\) · "
                     rf"0/{WORKERS} workers$", out, re.MULTILINE)
    assert last, out  # where the study stood, to the end
    assert "note: the artifacts folder" in out  # a local folder on several nodes must be shared
    for index in range(WORKERS):  # the killed ones too: Ray ran them again
        assert f"ray worker {index}: finished, ran " in out
    assert "finished after " in out and "on a Ray cluster of 2 nodes" in out

    study = _load(path)
    after = study.get_trials()
    by_number = {t.number: t for t in after}
    finished_before = {t.number: t.values for t in before if t.state == TrialState.COMPLETE}
    assert all(by_number[n].values == v for n, v in finished_before.items())  # nothing finished was lost
    failed = [t for t in after if t.state == TrialState.FAIL]
    assert int(last.group(1)) == len(failed)
    dead = [t for t in failed if fail_reason(t) == STALE_REASON]  # failed by heartbeat
    assert len(dead) == 2
    # any other FAIL gave itself up: two workers started a trial for the study's last place at once
    assert all((fail_reason(t) or "").startswith("not needed: ") for t in failed if t not in dead), failed
    for trial in dead:
        (retry,) = [t for t in after if t.system_attrs.get("failed_trial") == trial.number]
        assert retry.state == TrialState.COMPLETE and retry.params == trial.params
    assert not [t for t in after if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    done = [t for t in after if t.state == TrialState.COMPLETE]
    assert len(done) == 8
    store = open_artifact_store(study_settings(study).artifacts)
    for trial in done:  # every trial's weights are there and are that trial's network's
        check_recorded(trial)
        file = tmp_path / f"weights-{trial.number}.safetensors"
        download_artifact(artifact_store=store, artifact_id=trial.user_attrs["weights_artifact_id"],
                          file_path=str(file))
        build_model(trial.user_attrs["architecture"]).load_state_dict(load_file(str(file)))


@pytest.mark.slow
@pytest.mark.postgres
def test_ctrl_c_cancels_the_workers_and_their_trials_end_interrupted(
        ray_cluster: str, write_study: Callable[..., Path], postgres_url: str) -> None:
    path = write_study(study={"n_trials": 40, "storage": postgres_url},
                       training={"max_epochs": 400, "patience": 400})
    launcher = subprocess.Popen(cli("launch", str(path), "--workers", "2", "--ray", ray_cluster),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(path, launcher, lambda t: _count(t, TrialState.RUNNING) == 2, "both workers in a trial")
        launcher.send_signal(signal.SIGINT)
        out, err = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 130, out + err
    assert "[ray] stopping 2 workers" in out and "interrupted after " in out
    assert "ray worker 0: cancelled, stopped; its running trial ended FAIL (interrupted)" in out
    assert "ray worker 1: cancelled, stopped" in out
    trials = _load(path).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    interrupted = [t for t in trials if t.state == TrialState.FAIL]
    assert len(interrupted) == 2 and all(fail_reason(t).startswith("interrupted") for t in interrupted)
    assert _worker_processes() == []  # stopped, not left running


def test_sqlite_is_refused_on_several_nodes(ray_cluster: str, write_study: Callable[..., Path],
                                            tmp_path: Path) -> None:
    path = write_study()
    result = subprocess.run(cli("launch", str(path), "--workers", "2", "--ray", ray_cluster),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("aiq-search: error: ")]
    assert errors == [("aiq-search: error: an SQLite study works on one host only, not on a Ray cluster of 2 "
                       "nodes; give a PostgreSQL storage every node reaches (--storage "
                       "postgresql+psycopg://user@db-host/db)")]
    assert not (tmp_path / "study.db").exists()  # refused before the study was created


# ----------------------------------------------------------------------------- without a cluster


def test_without_ray_launch_says_how_to_install_it(write_study: Callable[..., Path]) -> None:
    path = write_study()
    hide_ray = ("import sys; sys.modules['ray'] = None; from aiq_search.cli import main; "
                f"sys.exit(main(['launch', {str(path)!r}, '--workers', '2', '--ray']))")
    result = subprocess.run([sys.executable, "-c", hide_ray], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 2
    assert result.stderr == ("aiq-search: error: launching on Ray needs Ray, which is not installed: "
                             "pip install 'aiq-search[ray]'\n")


def test_an_address_nothing_answers_at_is_one_line(write_study: Callable[..., Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'aiq-search[ray]')")
    from aiq_search.cli import main

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = write_study()
    assert main(["launch", str(path), "--workers", "2", "--ray", f"127.0.0.1:{port}"]) == 2
    assert capsys.readouterr().err == (f"aiq-search: error: cannot connect to the Ray cluster at 127.0.0.1:{port}: "
                                       "Connection refused\n")
    assert not (path.parent / "study.db").exists()


def test_ray_options_need_ray_and_devices_need_local_workers(write_study: Callable[..., Path],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from aiq_search.cli import main

    path = str(write_study())
    assert main(["launch", path, "--workers", "2", "--gpus-per-worker", "0.5"]) == 2
    assert capsys.readouterr().err == "aiq-search: error: --gpus-per-worker only apply with --ray\n"
    assert main(["launch", path, "--workers", "2", "--devices", "cuda:0", "--ray"]) == 2
    assert "--devices is for local workers" in capsys.readouterr().err


def test_worker_config_makes_paths_absolute_and_takes_the_reserved_device(
        write_study: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_study(study={"storage": "sqlite:///runs/x.db", "artifacts": "weights"},
                       data={"data_dir": "data"}, training={"threads": None, "device": "auto"})
    config = load_study_file(path)
    on_gpu = worker_config(config, cpus_per_worker=2.5, gpus_per_worker=0.5)
    assert on_gpu.study.storage == f"sqlite:///{tmp_path / 'runs' / 'x.db'}"
    assert on_gpu.study.artifacts == str(tmp_path / "weights")
    assert on_gpu.data.data_dir == str(tmp_path / "data")
    assert (on_gpu.training.device, on_gpu.training.threads) == ("cuda", 2)
    assert on_gpu.search == config.search and on_gpu.training.lr == config.training.lr
    on_cpu = worker_config(config, cpus_per_worker=0.5, gpus_per_worker=0)
    assert (on_cpu.training.device, on_cpu.training.threads) == ("cpu", 1)
    s3 = write_study("s3.toml", study={"artifacts": "s3://bucket/prefix"}, training={"device": "cuda:1"})
    with pytest.raises(ConfigError, match="trains on cuda:1: give each worker a GPU"):
        worker_config(load_study_file(s3), cpus_per_worker=1, gpus_per_worker=0)
    assert worker_config(load_study_file(s3), cpus_per_worker=1, gpus_per_worker=1).study.artifacts == \
        "s3://bucket/prefix"


def test_cluster_checks_refuse_sqlite_across_hosts_and_note_what_may_not_fit(
        write_study: Callable[..., Path]) -> None:
    sqlite = load_study_file(write_study())
    room = {"CPU": 4.0, "GPU": 1.0}
    assert check_cluster(sqlite, nodes=1, client=False, resources=room, workers=4, cpus_per_worker=1,
                         gpus_per_worker=0) == []
    with pytest.raises(ConfigError, match="not on a Ray client"):
        check_cluster(sqlite, nodes=1, client=True, resources=room, workers=1, cpus_per_worker=1,
                      gpus_per_worker=0)
    shared = load_study_file(write_study("pg.toml", study={"storage": "postgresql+psycopg://db-host/aiq",
                                                           "artifacts": "s3://bucket/x"}))
    notes = check_cluster(shared, nodes=3, client=False, resources=room, workers=4, cpus_per_worker=1,
                          gpus_per_worker=0.5)
    assert notes == [("note: the cluster has room for 2 of the 4 workers now (4 CPUs, 1 GPUs); the others "
                      "wait for room")]


def test_progress_line_counts_states_and_names_the_best() -> None:
    best = TrialRow(7, "COMPLETE", 0.61234, 0.9, 0.89, 500, 0.4, 3, "lenet300 8", {})
    assert progress_line({"COMPLETE": 3, "RUNNING": 2, "FAIL": 1}, 8, best, 2, 4) == (
        "3 complete, 2 running, 1 fail (target 8 complete) · best aIQ 0.6123 (trial 7) · 2/4 workers")
    assert progress_line({}, 8, None, 4, 4) == "no trials yet (target 8 complete) · best aIQ – · 4/4 workers"
