"""The study service: open storage, create or resume a study, and work on it until it has its trials.

A study's ``n_trials`` is the number of COMPLETE trials it ends with, however many workers share it: each
worker starts a trial only while COMPLETE + RUNNING trials are fewer than ``n_trials`` (or a retried trial
is WAITING), and waits while the last trials run elsewhere, since one of them may still fail and need
replacing. A trial that another worker started at the same instant checks its place in trial-number order:
it waits for the earlier trials, runs if one of them ends without completing, and gives itself up (FAIL,
with its reason) if they complete the study, so the count is never overshot.

Fault tolerance is Optuna's: heartbeats mark the trials of a killed worker FAIL after the grace period and
`RetryHeartbeatStaleTrialCallback` queues them again for any worker. A trial that raises ends FAIL with
``fail_reason`` recorded and the study goes on; KeyboardInterrupt is never swallowed.

What a trial records (user attrs, study attrs, artifact) is fixed in docs/CONTRACTS.md, "Trials in storage".
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, Trial, TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from safetensors.torch import save_file

from aiq_search.architectures import FAMILIES, build_model, count_parameters
from aiq_search.data import DataSplits, load_dataset
from aiq_search.errors import AiqSearchError, ConfigError, StorageError
from aiq_search.metrics import aiq
from aiq_search.results import SETTINGS_ATTR, by_aiq, open_study
from aiq_search.storage import buffered_backend, open_storage, redact
from aiq_search.studyfile import StudyFile
from aiq_search.training import EpochReport, TrainConfig, resolve_device, train

__all__ = [
    "RunSummary",
    "StudyStatus",
    "TrialRow",
    "create_or_load_study",
    "create_study",
    "load_device_and_data",
    "run_study",
    "study_status",
    "work_on_study",
]

WEIGHTS_FILE = "weights.safetensors"
# A worker whose trials all fail in a row is broken (bad environment, bug), not unlucky: stop it.
MAX_FAILURES_IN_A_ROW = 10
# A worker rewrites the dashboard's stored figure at most this often (and when it stops).
DASHBOARD_REFRESH_S = 5.0


# ----------------------------------------------------------------------------------------------- storage


# ----------------------------------------------------------------------------------------------- studies


def _directions(config: StudyFile) -> list[StudyDirection]:
    if config.study.mode == "aiq":
        return [StudyDirection.MAXIMIZE]
    return [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]


def _metric_names(config: StudyFile) -> list[str]:
    return ["aIQ"] if config.study.mode == "aiq" else ["accuracy", "n_params"]


def make_sampler(config: StudyFile, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """The study file's sampler; each worker gets its own seed so parallel workers do not sample alike."""
    seed = (config.study.seed + worker_index) % 2**32  # numpy's seed range
    name = config.study.sampler
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":  # every combination of the (discrete) space, conditional choices included
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            return optuna.samplers.BruteForceSampler(seed=seed)
    return optuna.samplers.NSGAIISampler(seed=seed)


def _first_prunable_epoch(config: StudyFile) -> int | None:
    """The first epoch at which the study's pruner may stop a trial (None: never). The median pruner waits
    for half the epochs: early aIQ says little, and the bar (the median of finished trials) is set by
    survivors, so pruning at epoch 1 would stop nearly all."""
    return {"median": config.training.max_epochs // 2, "hyperband": 0}.get(config.study.pruner)


def make_pruner(config: StudyFile) -> optuna.pruners.BasePruner:
    """Pruning on the per-epoch aIQ, from `_first_prunable_epoch` on."""
    if config.study.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=_first_prunable_epoch(config))
    if config.study.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=config.training.max_epochs)
    return optuna.pruners.NopPruner()


def _settings(config: StudyFile) -> dict[str, Any]:
    """The study attribute that plots, export and the dashboard read (CONTRACTS.md)."""
    data_dir = config.data.data_dir or os.environ.get("AIQ_DATA_DIR")
    record = config.record()
    record["study"]["storage"] = redact(config.study.storage)  # a study must not hand out its password
    return {
        "config": record,
        "mode": config.study.mode,
        "beta": config.study.beta,
        "dataset": config.data.dataset,
        "data_dir": str(Path(data_dir).expanduser().resolve()) if data_dir else None,
        "family": config.search.family,
        "eval_split": config.study.eval_split,
        "artifacts": str(Path(config.study.artifacts).expanduser().resolve()),
    }


def create_or_load_study(config: StudyFile, storage: RDBStorage, *, create: bool = True,
                         worker_index: int = 0) -> optuna.Study:
    """The study named in ``config``: created if ``create`` and absent, else loaded; a study whose mode
    differs from the file's is refused. Creating (or resuming with ``run``) records the file's settings."""
    name = config.study.name
    sampler, pruner = make_sampler(config, worker_index), make_pruner(config)
    exists = name in optuna.get_all_study_names(storage)
    if not exists and not create:
        raise StorageError(f"no study named {name!r} in {redact(storage.url)}; create it with "
                           "'aiq-search create', 'run' or 'launch' first")
    study = optuna.create_study(storage=storage, study_name=name, directions=_directions(config),
                                sampler=sampler, pruner=pruner, load_if_exists=True)
    if list(study.directions) != _directions(config):
        recorded = study.user_attrs.get(SETTINGS_ATTR, {}).get("mode", "another")
        raise ConfigError(f"study {name!r} in {redact(storage.url)} was created in {recorded} mode with "
                          f"{len(study.directions)} objective(s); the file asks for {config.study.mode} mode")
    if create:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            study.set_metric_names(_metric_names(config))
        study.set_user_attr(SETTINGS_ATTR, _settings(config))
    return study


# ----------------------------------------------------------------------------------------------- trials


class _Surplus(Exception):
    """This trial was started while the study already had all the trials it needs."""


def _wait_for_place(trial: Trial, n_trials: int, seen: Counter[TrialState], poll_s: float) -> None:
    """Hold a trial that a race let start while earlier trials could already fill the study: it runs if one
    of them ends without completing, and gives itself up if they complete. ``seen`` is the study when this
    worker decided to start; trials that had ended by then stay ended, so the database is asked only when
    enough trials numbered below this one could still be COMPLETE or RUNNING."""
    if trial.number >= seen.total():  # a new trial: every trial seen then is numbered below it
        may_fill = trial.number - seen[TrialState.FAIL] - seen[TrialState.PRUNED]
        if may_fill < n_trials:
            return
    study = trial.study
    while True:
        ahead = _counts(study, below_number=trial.number)
        complete = ahead[TrialState.COMPLETE]
        if complete >= n_trials:
            raise _Surplus(f"not needed: {complete} earlier trials completed the study of {n_trials} "
                           "while this one was waiting to start")
        if complete + ahead[TrialState.RUNNING] < n_trials:
            return
        _fail_stale_trials(study)
        time.sleep(poll_s)


class _Objective:
    """One trial: sample a spec, build, train (reporting aIQ per epoch), record, save the weights."""

    def __init__(self, config: StudyFile, data: DataSplits, device: torch.device, n_trials: int, poll_s: float,
                 on_epoch: Callable[[Trial, EpochReport], None]) -> None:
        self.config = config
        self.poll_s = poll_s
        self.seen: Counter[TrialState] = Counter()  # the study's trials by state before the last ask
        self.trial: int | None = None  # the id of the trial last started
        self.data = data
        self.device = device
        self.n_trials = n_trials
        self.on_epoch = on_epoch
        self.family = FAMILIES[config.search.family]
        self.space = config.search.space()
        self.store = FileSystemArtifactStore(_artifact_dir(config))
        training = config.training
        self.train_config = dict(optimizer=training.optimizer, lr=training.lr, momentum=training.momentum,
                                 nesterov=training.nesterov, weight_decay=training.weight_decay,
                                 batch_size=training.batch_size, max_epochs=training.max_epochs,
                                 patience=training.patience)

    def __call__(self, trial: Trial) -> float | tuple[float, float]:
        self.trial = trial._trial_id
        try:
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except _Surplus as exc:
            trial.set_user_attr("fail_reason", str(exc))
            raise
        except Exception as exc:
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C or SIGINT)")
            raise

    def _run(self, trial: Trial) -> float | tuple[float, float]:
        _wait_for_place(trial, self.n_trials, self.seen, self.poll_s)
        beta = self.config.study.beta
        spec = self.family.sample(trial, self.space, self.data.input_shape, self.data.num_classes)
        seed = self.config.study.seed + trial.number
        model = build_model(spec, seed=seed)
        n_params = count_parameters(model)
        _set_user_attrs(trial, {"architecture": spec, "n_params": n_params})  # a failed trial keeps them too
        pareto = self.config.study.mode == "pareto"
        # asking the pruner reads the study: not before it may prune (Optuna's median pruner reads, then checks)
        first_prunable = _first_prunable_epoch(self.config)

        def report(epoch: EpochReport) -> None:
            self.on_epoch(trial, epoch)
            if pareto:  # Optuna keeps no intermediate values for multi-objective trials
                return
            trial.report(aiq(epoch.efficiency.network, epoch.val_accuracy, beta), epoch.epoch)
            if first_prunable is not None and epoch.epoch >= first_prunable and trial.should_prune():
                raise optuna.TrialPruned(f"aIQ below the pruner's bar after epoch {epoch.epoch}")

        result = train(model, self.data, TrainConfig(**self.train_config, seed=seed), device=self.device,
                       eval_split=self.config.study.eval_split, epoch_callback=report)
        score = aiq(result.efficiency.network, result.eval_accuracy, beta)
        _set_user_attrs(trial, {
            "aiq": score,
            "accuracy": result.eval_accuracy,
            "val_accuracy": result.val_accuracy,
            "test_accuracy": result.test_accuracy,
            "network_efficiency": result.efficiency.network,
            "layer_efficiencies": result.efficiency.layer_efficiencies,
            "epochs": result.epochs,
            "train_seconds": result.seconds,
            "device": result.device,
            "weights_artifact_id": self._save_weights(trial, model),
        })
        return (result.eval_accuracy, float(n_params)) if pareto else score

    def _save_weights(self, trial: Trial, model: torch.nn.Module) -> str:
        """The trained (best-validation) weights as an Optuna artifact, so exporting never retrains."""
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        with tempfile.TemporaryDirectory(prefix="aiq-search-") as tmp:
            path = Path(tmp) / WEIGHTS_FILE
            save_file(tensors, str(path))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                return upload_artifact(artifact_store=self.store, file_path=str(path), study_or_trial=trial,
                                       mimetype="application/octet-stream")


def _set_user_attrs(trial: Trial, attrs: Mapping[str, Any]) -> None:
    """Record several user attributes in one transaction: a trial's results appear together or not at all
    (a worker killed mid-way leaves no half-recorded trial), and one commit replaces a dozen. Storages other
    than aiq_search's own get one call per key."""
    backend = buffered_backend(trial.storage)
    if backend is not None:
        backend.set_trial_user_attrs(trial._trial_id, attrs)
    else:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)


def _artifact_dir(config: StudyFile) -> Path:
    path = Path(config.study.artifacts).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


# ----------------------------------------------------------------------------------------------- the loop


def _fail_stale_trials(study: optuna.Study) -> None:
    """Fail the trials of dead workers (heartbeat older than the grace period) and queue their retries; the
    retry callback records why they failed. Optuna does this before each trial; a worker waiting for the
    study's last trials does it while it waits."""
    storage = study._storage
    if not isinstance(storage, BaseHeartbeat) or storage.get_heartbeat_interval() is None:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _counts(study: optuna.Study, below_number: int | None = None) -> Counter[TrialState]:
    """The study's trials (those numbered below ``below_number``) by state."""
    backend = buffered_backend(study._storage)
    if backend is not None:
        return backend.count_trials(study._study_id, below_number=below_number)
    return Counter(t.state for t in study.get_trials(deepcopy=False)
                   if below_number is None or t.number < below_number)


def _state_names(trials: list[FrozenTrial]) -> dict[str, int]:
    return dict(Counter(t.state.name for t in trials))


def _may_start(study: optuna.Study, n_trials: int, deadline: float | None, poll_s: float) -> Counter[TrialState] | None:
    """The study's trials by state if this worker should start another trial, else None; waits while the
    study's last trials run elsewhere."""
    while True:
        counts = _counts(study)
        if counts[TrialState.COMPLETE] >= n_trials:
            return None
        if deadline is not None and time.monotonic() >= deadline:
            return None
        if counts[TrialState.WAITING] or counts[TrialState.COMPLETE] + counts[TrialState.RUNNING] < n_trials:
            return counts
        _fail_stale_trials(study)  # one of the running trials may be a dead worker's
        time.sleep(poll_s)


@dataclass(frozen=True)
class TrialRow:
    """One trial as status and summaries show it."""

    number: int
    state: str
    aiq: float | None
    accuracy: float | None
    n_params: int | None
    network_efficiency: float | None
    epochs: int | None
    fail_reason: str | None = None

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialRow:
        attrs = trial.user_attrs
        return cls(trial.number, trial.state.name, attrs.get("aiq"), attrs.get("accuracy"), attrs.get("n_params"),
                   attrs.get("network_efficiency"), attrs.get("epochs"), attrs.get("fail_reason"))


def _best(trials: list[FrozenTrial], top: int) -> list[TrialRow]:
    """The COMPLETE trials with the highest aIQ (recorded in both modes)."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and "aiq" in t.user_attrs]
    return [TrialRow.of(t) for t in by_aiq(done)[:top]]


@dataclass(frozen=True)
class RunSummary:
    """What one worker did and where the study stands afterwards."""

    study_name: str
    storage: str
    n_trials: int
    counts: dict[str, int]
    ran: int
    seconds: float
    best: list[TrialRow] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.counts.get("COMPLETE", 0) >= self.n_trials


class _Display:
    """Terminal progress (rich): a bar of COMPLETE trials, the trial and epoch now running, the best aIQ;
    one line per finished trial. ``bar=False`` keeps only the lines (logs, launched workers)."""

    def __init__(self, console: Console | None, n_trials: int, bar: bool, prefix: str) -> None:
        self.console = console
        self.prefix = prefix
        self.best: float | None = None
        self.progress: Progress | None = None
        if console is not None and bar and console.is_terminal:
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), console=console, transient=True)
            self.task = self.progress.add_task("starting", total=n_trials)

    def __enter__(self) -> _Display:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def _describe(self, text: str) -> None:
        best = "–" if self.best is None else f"{self.best:.4f}"
        if self.progress is not None:  # drawn now: epochs can be shorter than the bar's refresh period
            self.progress.update(self.task, description=f"{text} · best aIQ {best}", refresh=True)

    def epoch(self, trial: Trial, report: EpochReport, max_epochs: int) -> None:
        self._describe(f"trial {trial.number} · epoch {report.epoch}/{max_epochs}")

    def finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.progress is not None:  # the bar shows the whole study, all workers included
            trials = study.get_trials(deepcopy=False)
            best = _best(trials, 1)
            self.best = best[0].aiq if best else None
            self.progress.update(self.task, completed=sum(t.state == TrialState.COMPLETE for t in trials))
            self._describe("waiting")
        if self.console is None:
            return
        row = TrialRow.of(trial)
        if trial.state == TrialState.COMPLETE:
            detail = (f"aIQ {row.aiq:.4f}  accuracy {row.accuracy:.4f}  {row.n_params:,} params  "
                      f"efficiency {row.network_efficiency:.3f}  {row.epochs} epochs")
        elif trial.state == TrialState.FAIL:
            detail = row.fail_reason or "failed"
        else:
            detail = f"after {len(trial.intermediate_values)} epochs"
        self.console.print(f"{self.prefix}trial {trial.number} {trial.state.name.lower()}: {detail}",
                           markup=False, highlight=False, soft_wrap=True)


class _DashboardRefresher:
    """Refreshes the dashboard's figure (COMPLETE trials only) after finished trials, at most once every
    ``DASHBOARD_REFRESH_S`` per worker (a refresh rewrites the whole stored figure), and once more when the
    worker stops, so the figure a study is left with shows every trial. Does nothing when the dashboard
    module is not installed."""

    def __init__(self) -> None:
        try:
            from aiq_search.dashboard import publish_figures
        except ModuleNotFoundError as exc:  # the dashboard is optional: only its own absence is tolerated
            if exc.name != "aiq_search.dashboard":
                raise
            publish_figures = None
        self._publish = publish_figures
        self._last = float("-inf")
        self._stale = False

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state != TrialState.COMPLETE:
            return
        self._stale = True
        if time.monotonic() - self._last >= DASHBOARD_REFRESH_S:
            self.flush(study)

    def flush(self, study: optuna.Study) -> None:
        if self._publish is not None and self._stale:
            self._publish(study)
            self._last, self._stale = time.monotonic(), False


def load_device_and_data(config: StudyFile) -> tuple[torch.device, DataSplits]:
    """The training device and the data set on it; both fail as one-line errors before any trial starts."""
    try:
        device = resolve_device(config.training.device)
    except ValueError as exc:
        raise ConfigError(f"device: {exc}") from None
    data = load_dataset(config.data.dataset, data_dir=config.data.data_dir, download=config.data.download,
                        val_size=config.data.val_size, seed=config.study.seed, label_noise=config.data.label_noise)
    return device, data.to(device)


def create_study(config: StudyFile) -> optuna.Study:
    """Create the study of ``config`` (or record its settings again) without running a trial: the one-shot
    step before workers join. The device and data set are checked first, as ``run`` does, so a study that
    no worker could work on is never created."""
    load_device_and_data(config)
    storage = open_storage(config.study.storage, create=True)
    return create_or_load_study(config, storage, create=True)


def work_on_study(study: optuna.Study, config: StudyFile, *, worker_index: int = 0, label: str | None = None,
                  console: Console | None = None, progress_bar: bool = True,
                  device_and_data: tuple[torch.device, DataSplits] | None = None) -> RunSummary:
    """Run trials of ``study`` in this process until it has ``config.study.n_trials`` COMPLETE trials or
    ``config.study.timeout`` seconds have passed. Safe to run in many processes on one study."""
    device, data = device_and_data or load_device_and_data(config)
    started = time.monotonic()
    n_trials = config.study.n_trials
    deadline = started + config.study.timeout if config.study.timeout is not None else None
    prefix = f"[{label}] " if label else ""
    poll_s = min(2.0, config.study.heartbeat_interval / 2)
    ran = failures_in_a_row = 0
    last: list[FrozenTrial] = []

    def remember(study: optuna.Study, trial: FrozenTrial) -> None:
        last[:] = [trial]

    with _Display(console, n_trials, progress_bar, prefix) as display:
        objective = _Objective(config, data, device, n_trials, poll_s,
                               lambda t, r: display.epoch(t, r, config.training.max_epochs))
        refresher = _DashboardRefresher()
        callbacks = [remember, display.finished, refresher]
        while (seen := _may_start(study, n_trials, deadline, poll_s)) is not None:
            objective.seen, objective.trial = seen, None
            try:
                study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=callbacks)
                failed, reason = last[0].state == TrialState.FAIL, last[0].user_attrs.get("fail_reason")
            except (UpdateFinishedTrialError, ValueError):  # Optuna's tell: "Cannot tell a FAIL trial"
                # another worker failed this trial as dead (its heartbeats did not reach the storage within the
                # grace period, e.g. the database was out of reach) and queued its retry: go on
                if objective.trial is None or study._storage.get_trial(objective.trial).state != TrialState.FAIL:
                    raise
                failed, reason = True, "another worker failed this worker's trial: its heartbeats stopped"
                if console is not None:
                    console.print(f"{prefix}{reason}", markup=False, highlight=False, soft_wrap=True)
            ran += 1
            if study._stop_flag:  # a sampler stopped the study: the grid sampler has tried every combination
                break
            failures_in_a_row = failures_in_a_row + 1 if failed else 0
            if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                raise AiqSearchError(f"{failures_in_a_row} trials in a row failed in this worker; the last: "
                                     f"{reason or 'no reason recorded'}")
        refresher.flush(study)
    trials = study.get_trials(deepcopy=False)
    return RunSummary(study.study_name, redact(config.study.storage), n_trials, _state_names(trials), ran,
                      time.monotonic() - started, _best(trials, 5))


def run_study(config: StudyFile, *, create: bool = True, worker_index: int = 0, label: str | None = None,
              console: Console | None = None, progress_bar: bool = True) -> RunSummary:
    """Create (``create``) or join the study of ``config`` and work on it in this process until done.

    Re-running resumes: finished trials count towards ``n_trials`` and are never repeated.
    """
    if config.training.threads is not None:
        torch.set_num_threads(config.training.threads)
    # before the storage: a missing data set must not leave an empty study behind
    device_and_data = load_device_and_data(config)
    study_cfg = config.study
    storage = open_storage(study_cfg.storage, heartbeat_interval=study_cfg.heartbeat_interval,
                           grace_period=study_cfg.grace_period, max_retry=study_cfg.max_retry, create=create)
    study = create_or_load_study(config, storage, create=create, worker_index=worker_index)
    return work_on_study(study, config, worker_index=worker_index, label=label, console=console,
                         progress_bar=progress_bar, device_and_data=device_and_data)


@dataclass(frozen=True)
class StudyStatus:
    """One study in a storage: its mode, target, trial counts by state and best trials by aIQ."""

    name: str
    mode: str
    n_trials: int | None
    counts: dict[str, int]
    best: list[TrialRow]


def study_status(storage_url: str, study_name: str | None = None, *, top: int = 5) -> list[StudyStatus]:
    """The studies in a storage (or just ``study_name``), for ``aiq-search status``."""
    if study_name is not None:
        studies = [open_study(storage_url, study_name)]
    else:
        storage = open_storage(storage_url, create=False)
        studies = [optuna.load_study(study_name=name, storage=storage)
                   for name in sorted(optuna.get_all_study_names(storage))]
    statuses = []
    for study in studies:
        settings = study.user_attrs.get(SETTINGS_ATTR, {})
        mode = settings.get("mode") or ("aiq" if len(study.directions) == 1 else "pareto")
        target = settings.get("config", {}).get("study", {}).get("n_trials")
        trials = study.get_trials(deepcopy=False)
        statuses.append(StudyStatus(study.study_name, mode, target, _state_names(trials), _best(trials, top)))
    return statuses
