"""``aiq-search launch --ray``: a study's workers on a Ray cluster (or a local Ray instance).

Ray only places the workers and starts them again: each worker is a Ray actor (`ray_worker.WorkerHost`)
reserving ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs (a fraction shares a GPU), running the loop
of ``aiq-search worker`` (`aiq_search.worker._loop.run_study` with ``create=False``) in its own process on the
study's shared storage, and Optuna still decides which trials run. When a worker's process, its actor or
its node dies, Ray runs it again, up to ``max_restarts`` times, and the trial it was running is failed by
heartbeat and retried, as any dead worker's is. The launcher creates the study first, shows where it stands
while the workers run, and on Ctrl-C stops them as the local launcher does (one SIGINT each: their running
trials end FAIL "interrupted"), waiting until they have; a second Ctrl-C, or `STOP_GRACE_S` later, kills
them (their trials end FAIL by heartbeat).

Every node needs aiq-search installed and what the study reads: the data set (or ``download = true``),
the credentials of its storage (``PGPASSWORD``, ``~/.pgpass``) and of S3 artifacts (AWS variables or files),
taken from the environment the node's ``ray start`` ran in.
"""
from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from sqlalchemy.engine import make_url

from aiq_search.errors import AiqSearchError, ConfigError
from aiq_search.launch._local import STOP_GRACE_S
from aiq_search.launch._ray_worker import WorkerDied, WorkerHost
from aiq_search.readers import StudyStatus, TrialRow, best_rows, study_status
from aiq_search.study import count_states, create_study, is_s3, open_study, resolve_location
from aiq_search.studyfile import StudyFile

__all__ = ["DEFAULT_MAX_RESTARTS", "RAY_INSTALL_HINT", "RayLaunchSummary", "WorkerOutcome", "import_ray",
           "launch_on_ray", "worker_config"]

RAY_INSTALL_HINT = "pip install 'aiq-search[ray]'"
DEFAULT_MAX_RESTARTS = 3
# How long stopped workers get to record their trials' end before they are killed.
# Seconds to wait for a Ray cluster's address to accept a connection.
CONNECT_TIMEOUT_S = 10
# How often the launcher reads the study for its progress line.
POLL_S = 2.0
# Ray starts its worker processes at niceness 15 (its own daemons first); a worker here is a whole training
# process, as `aiq-search worker` is, so it runs at normal priority, as Ray's job supervisor does (without
# this, trials ran 27% slower than local workers on a busy machine).
WORKER_RUNTIME_ENV = {"env_vars": {"RAY_worker_niceness": "0"}}


def import_ray() -> ModuleType:
    """Ray, or a one-line error saying how to install it (it is an optional extra)."""
    # Ray folds "similar" log lines of all workers into one by default: the one line per trial would be lost
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        import ray
    except ImportError:
        raise ConfigError(f"launching on Ray needs Ray, which is not installed: {RAY_INSTALL_HINT}") from None
    return ray


def _absolute_sqlite(url: str) -> str:
    """An SQLite URL with an absolute file, so a worker started in another folder opens the same one."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return url
    return parsed.set(database=str(Path(parsed.database).expanduser().resolve())).render_as_string(
        hide_password=False)


def worker_config(config: StudyFile, *, cpus_per_worker: float, gpus_per_worker: float) -> StudyFile:
    """The study file as each Ray worker runs it: relative paths made absolute (workers do not start in this
    folder), the device Ray hands the task (``cuda``: the GPU it reserved, or the CPU) and one torch thread
    per reserved CPU unless the file sets ``threads``."""
    device = config.training.device
    if gpus_per_worker > 0:
        device = "cuda"  # Ray sets CUDA_VISIBLE_DEVICES to the GPU it reserved for the task
    elif device.startswith("cuda"):
        raise ConfigError(f"the study file trains on {device}: give each worker a GPU: gpus_per_worker "
                          "(--gpus-per-worker) 1, or a fraction such as 0.5 to share one")
    else:
        device = "cpu"
    threads = config.training.threads or max(1, int(cpus_per_worker))
    config = config.with_overrides(device=device, threads=threads, storage=_absolute_sqlite(config.study.storage))
    data_dir = config.data.data_dir and str(Path(config.data.data_dir).expanduser().resolve())
    return config.model_copy(update={
        "study": config.study.model_copy(update={"artifacts": resolve_location(config.study.artifacts)}),
        "data": config.data.model_copy(update={"data_dir": data_dir}),
    })


def check_cluster(config: StudyFile, *, nodes: int, client: bool, resources: dict[str, float], workers: int,
                  cpus_per_worker: float, gpus_per_worker: float) -> list[str]:
    """Refuse what cannot work on this cluster (an SQLite study on several hosts); return notes on what may
    not (a local artifacts folder on several nodes, too few resources for every worker at once)."""
    if make_url(config.study.storage).get_backend_name() == "sqlite" and (nodes > 1 or client):
        where = "a Ray client (ray://) connection" if client else f"a Ray cluster of {nodes} nodes"
        raise ConfigError(f"an SQLite study works on one host only, not on {where}; give a PostgreSQL storage "
                          "every node reaches (--storage postgresql+psycopg://user@db-host/db)")
    notes = []
    if nodes > 1 and not is_s3(config.study.artifacts):
        notes.append(f"note: the artifacts folder {config.study.artifacts} must be one shared folder at that path "
                     "on every node (e.g. NFS); s3://bucket/prefix needs none")
    fits = [resources.get("CPU", 0.0) / cpus_per_worker]
    if gpus_per_worker > 0:
        fits.append(resources.get("GPU", 0.0) / gpus_per_worker)
    room = int(min(fits) + 1e-9)
    if room < workers:
        notes.append(f"note: the cluster has room for {room} of the {workers} workers now "
                     f"({resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs); the others wait "
                     "for room")
    return notes


@dataclass(frozen=True)
class WorkerOutcome:
    """How one Ray worker ended: ``finished`` (with the trials it ran), ``cancelled`` (stopped by Ctrl-C),
    ``killed`` (had not stopped in time) or ``failed``."""

    index: int
    state: str
    detail: str
    ran: int = 0


@dataclass(frozen=True)
class RayLaunchSummary:
    """How the Ray workers ended and where the study stands."""

    nodes: int
    workers: list[WorkerOutcome]
    interrupted: bool
    seconds: float
    status: StudyStatus

    @property
    def returncode(self) -> int:
        """130 after Ctrl-C, 1 when a worker failed, else 0."""
        if self.interrupted:
            return 130
        return 1 if any(w.state == "failed" for w in self.workers) else 0


def progress_line(counts: dict[str, int], n_trials: int, best: TrialRow | None, workers_left: int,
                  workers: int) -> str:
    """The launcher's line: trials by state against the target, the best aIQ, the workers still going."""
    states = ", ".join(f"{counts[s]} {s.lower()}" for s in ("COMPLETE", "RUNNING", "WAITING", "PRUNED", "FAIL")
                       if counts.get(s)) or "no trials yet"
    best_text = f"best aIQ {best.aiq:.4f} (trial {best.number})" if best is not None else "best aIQ –"
    return f"{states} (target {n_trials} complete) · {best_text} · {workers_left}/{workers} workers"


def _connect(ray: ModuleType, address: str | None) -> bool:
    """Connect to the cluster at ``address`` (None: Ray's default); True when this call did, so the launcher
    disconnects (and stops a local instance it started) when it is done."""
    if ray.is_initialized():
        return False
    _check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        cause = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise AiqSearchError(f"cannot connect to the Ray cluster at {address or 'this machine'}: "
                             f"{cause}") from None
    return True


def _check_reachable(address: str | None) -> None:
    """A cluster address nothing answers at is one line now (Ray would retry for minutes)."""
    host, _, port = (address or "").removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # None or "auto": Ray finds the cluster itself and says at once when there is none
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise AiqSearchError(f"cannot connect to the Ray cluster at {address}: {exc.strerror or exc}") from None


def _watch(ray: ModuleType, refs: list[Any], study: Any, n_trials: int, say: Callable[[str], None],
           poll_s: float) -> None:
    """Wait for the workers, saying where the study stands whenever it changes."""
    pending, last = list(refs), ""
    while True:
        trials = study.get_trials(deepcopy=False)
        best = best_rows(trials, 1)
        line = progress_line(dict(count_states(trials)), n_trials, best[0] if best else None, len(pending), len(refs))
        if line != last:
            say(line)
            last = line
        if not pending:
            return
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=poll_s)


def _stop(ray: ModuleType, hosts: list[Any], refs: list[Any], say: Callable[[str], None]) -> set[int]:
    """One SIGINT to each worker process (its running trial ends FAIL "interrupted") and wait for them; kill
    them on a second Ctrl-C or after `STOP_GRACE_S` (their trials end FAIL by heartbeat). Returns the indexes
    of those killed."""
    say(f"stopping {len(refs)} workers (Ctrl-C again to kill them)")
    for host in hosts:
        host.stop.remote()
    try:
        _, pending = ray.wait(refs, num_returns=len(refs), timeout=STOP_GRACE_S)
    except KeyboardInterrupt:
        pending = refs
    killed = {i for i, ref in enumerate(refs) if ref in pending}
    for i in killed:
        ray.kill(hosts[i], no_restart=True)
    if pending:
        ray.wait(pending, num_returns=len(pending), timeout=30)
    return killed


def _outcome(ray: ModuleType, index: int, ref: Any, killed: bool) -> WorkerOutcome:
    from ray.exceptions import GetTimeoutError, RayActorError, RayError, RayTaskError

    if killed:
        return WorkerOutcome(index, "killed", "killed while stopping; its running trial ends FAIL by heartbeat")
    try:
        outcome: dict[str, Any] = ray.get(ref, timeout=0)
    except GetTimeoutError:
        return WorkerOutcome(index, "failed", "did not stop")
    except RayActorError:
        return WorkerOutcome(index, "failed", "its Ray actor died (process or node lost) more often than Ray "
                                              "restarts it (--max-restarts)")
    except RayTaskError as exc:  # the worker process was killed more often than Ray runs it again, or a bug
        cause = exc.cause
        text = str(cause) if isinstance(cause, WorkerDied) else f"{type(cause).__name__}: {cause}"
        return WorkerOutcome(index, "failed", (text.strip().splitlines() or [text])[0])
    except RayError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return WorkerOutcome(index, "failed", f"{type(exc).__name__}: {lines[0] if lines else ''}")
    return WorkerOutcome(index, outcome["state"], outcome["detail"], outcome["ran"])


def launch_on_ray(config: StudyFile, *, workers: int, address: str | None = None, cpus_per_worker: float = 1.0,
                  gpus_per_worker: float = 0.0, max_restarts: int = DEFAULT_MAX_RESTARTS,
                  shared_database: bool = False, on_progress: Callable[[str], None] | None = None,
                  poll_s: float = POLL_S) -> RayLaunchSummary:
    """Run ``workers`` aiq-search workers as Ray actors on the study of ``config`` until it is done (or Ctrl-C).

    ``address`` is a cluster's (``auto``, ``host:port``, ``ray://host:10001``), or None for Ray's default
    (``$RAY_ADDRESS``, the cluster ``ray start`` started on this machine, else a new local instance); a
    process already connected to Ray keeps its connection. ``on_progress`` receives one line whenever
    the study's trials by state, its best aIQ or the number of workers still going change.
    ``shared_database``: see `aiq_search.study.check_database`. The study file reaches the workers as a
    task argument and their processes on standard input, so its storage password is on no command line.
    """
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    if not cpus_per_worker > 0 or gpus_per_worker < 0 or max_restarts < 0:
        raise ConfigError("cpus_per_worker must be > 0, gpus_per_worker and max_restarts >= 0")
    ray = import_ray()
    remote = worker_config(config, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker)
    say = on_progress or (lambda line: None)
    started = time.monotonic()
    connected = _connect(ray, address)
    try:
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        for note in check_cluster(remote, nodes=nodes, client=str(address or "").startswith("ray://"),
                                  resources=ray.cluster_resources(), workers=workers,
                                  cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker):
            say(note)
        # data, artifacts and storage checked once, before any worker
        create_study(_launcher_config(remote), shared_database=shared_database)
        study = open_study(remote.study.storage, remote.study.name)
        host = ray.remote(WorkerHost).options(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker,
                                              max_restarts=max_restarts, max_task_retries=max_restarts,
                                              max_concurrency=2, runtime_env=WORKER_RUNTIME_ENV)
        hosts = [host.remote() for _ in range(workers)]
        raw = remote.model_dump()
        refs = [h.run.options(retry_exceptions=[WorkerDied]).remote(raw, i) for i, h in enumerate(hosts)]
        say(f"{workers} workers on a Ray cluster of {nodes} node{'s' if nodes != 1 else ''}, each with "
            f"{cpus_per_worker:g} CPUs and {gpus_per_worker:g} GPUs")
        interrupted, killed = False, set()
        try:
            _watch(ray, refs, study, remote.study.n_trials, say, poll_s)
        except KeyboardInterrupt:
            interrupted = True
            killed = _stop(ray, hosts, refs, say)
        outcomes = [_outcome(ray, i, ref, i in killed) for i, ref in enumerate(refs)]
        for h in hosts:  # their resources are free for the next job now, not when this driver disconnects
            ray.kill(h, no_restart=True)
        status = study_status(remote.study.storage, remote.study.name)[0]
        return RayLaunchSummary(nodes, outcomes, interrupted, time.monotonic() - started, status)
    finally:
        if connected:
            ray.shutdown()


def _launcher_config(config: StudyFile) -> StudyFile:
    """The workers' file as this process checks it when creating the study: on the CPU when the workers train
    on GPUs this machine lacks (the launcher only loads the data)."""
    import torch

    if config.training.device == "cuda" and not torch.cuda.is_available():
        return config.with_overrides(device="cpu")
    return config
