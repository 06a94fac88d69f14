"""A study in its storage: created once from a study file, its settings recorded, and refused when the file
that joins it later asks for other settings.

The recorded settings (study user attribute `SETTINGS_ATTR`) are what every reader uses: the validated study
file (storage credentials masked), the data set's input format and where the artifacts are. Only the fields
in `MUTABLE_FIELDS` (how long, where and with what a study runs) may differ between runs of one study.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.exc
import torch
from optuna.storages import RDBStorage
from sqlalchemy.engine import make_url

from aiq_search._compat import rdb_engine
from aiq_search.data import DataSplits, load_dataset
from aiq_search.errors import ConfigError, StorageError
from aiq_search.families import Choice
from aiq_search.study._artifacts import make_artifact_folder, open_artifact_store
from aiq_search.study._records import SETTINGS_ATTR
from aiq_search.study._samplers import directions, make_pruner, make_sampler
from aiq_search.study._storage import POSTGRES_CONNECT_TIMEOUT_S, open_storage, redact
from aiq_search.study._write import input_record, record_settings, settings_value
from aiq_search.studyfile import StudyFile
from aiq_search.training import resolve_device

__all__ = ["MUTABLE_FIELDS", "changed_fields", "check_database", "create_or_load_study", "create_study",
           "load_device_and_data", "settings_record"]

# Foreign tables named in the refusal, at most.
NAMED_TABLES = 3


def settings_record(config: StudyFile, data: DataSplits) -> dict[str, Any]:
    """The study attribute that every reader uses (CONTRACTS.md): the file as validated, and what the data
    set and the artifacts turned out to be on the machine that created the study."""
    record = config.record()
    record["study"]["storage"] = redact(config.study.storage)  # a study must not hand out its password
    return settings_value(record, input_format=input_record(data), data_dir=config.data.data_dir,
                          artifacts=config.study.artifacts, data=data)


# Fields that may differ between runs of one study: how long, where and with what it runs, not what it
# searches or how trials are trained and scored. Any other change to an existing study's file is refused.
MUTABLE_FIELDS = frozenset({
    "study.n_trials", "study.timeout", "study.storage", "study.heartbeat_interval", "study.grace_period",
    "study.max_retry", "study.outage_timeout", "training.device", "training.threads", "data.data_dir",
    "data.download",
    # which trials are stopped early changes the compute, not what a finished trial means
    "study.pruner", "study.prune_from_epoch", "study.startup_trials",
})


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict) and not prefix:  # sections; values that are tables stay whole
            flat.update(_flatten(value, f"{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changed_fields(recorded: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """The fields (``section.key``) in which ``config`` (a study file's sections as plain data) differs from
    a study's recorded one, less `MUTABLE_FIELDS`."""
    old, new = _flatten(recorded), _flatten(config)
    return sorted(k for k in old.keys() | new.keys() if k not in MUTABLE_FIELDS and old.get(k) != new.get(k))


def _check_unchanged(study: optuna.Study, config: StudyFile) -> None:
    """Refuse a file that changes what an existing study with trials searches, trains or scores."""
    recorded = study.user_attrs.get(SETTINGS_ATTR, {}).get("config")
    if recorded is None or not study.get_trials(deepcopy=False):
        return
    changed = changed_fields(recorded, config.record())
    if changed:
        mutable = ", ".join(sorted(MUTABLE_FIELDS))
        raise ConfigError(
            f"study {study.study_name!r} already has trials made with other settings: {', '.join(changed)} "
            f"differ from what it recorded; give the study a new name to search with these settings "
            f"(only {mutable} may change between runs)")


def create_or_load_study(config: StudyFile, storage: RDBStorage, *, create: bool = True,
                         worker_index: int = 0, data: DataSplits | None = None) -> optuna.Study:
    """The study named in ``config``: created if ``create`` and absent, else loaded. A study whose mode or
    settings differ from the file's is refused. Creating (``create``, with the loaded ``data``) records the
    file's settings. The artifacts folder is made once the study is accepted, not before."""
    name = config.study.name
    exists = name in optuna.get_all_study_names(storage)
    if not exists and not create:
        raise StorageError(f"no study named {name!r} in {redact(storage.url)}; create it with "
                           "'aiq-search create', 'run' or 'launch' first")
    open_choices = sum(isinstance(entry, Choice) for entry in config.search.space().values())
    study = optuna.create_study(storage=storage, study_name=name, directions=directions(config.study.mode),
                                sampler=make_sampler(config.study, open_choices, worker_index),
                                pruner=make_pruner(config.study, config.training.max_epochs), load_if_exists=True)
    if list(study.directions) != directions(config.study.mode):
        raise ConfigError(f"study {name!r} in {redact(storage.url)} has {len(study.directions)} objective(s); "
                          f"the file asks for {config.study.mode} mode; give the study a new name")
    _check_unchanged(study, config)
    if create:
        if data is None:
            raise ValueError("creating a study records its data set: pass data=")
        record_settings(study, settings_record(config, data))
    make_artifact_folder(config.study.artifacts)  # accepted: only now is anything made for it
    return study


def load_device_and_data(config: StudyFile) -> tuple[torch.device, DataSplits]:
    """The training device and the data set on it; both fail as one-line errors before any trial starts."""
    try:
        device = resolve_device(config.training.device)
    except ValueError as exc:
        raise ConfigError(f"device: {exc}") from None
    data = load_dataset(config.data.dataset, data_dir=config.data.data_dir, download=config.data.download,
                        val_size=config.data.val_size, seed=config.study.seed, label_noise=config.data.label_noise,
                        **config.data.options)
    return device, data.to(device)


@functools.cache
def _optuna_tables() -> frozenset[str]:
    """The tables of Optuna's own schema, as this Optuna creates them (in a database in memory)."""
    engine = rdb_engine(RDBStorage("sqlite://"))
    try:
        return frozenset(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _tables(url: str) -> list[str]:
    """The tables of the database at ``url``, asked without creating anything: none for an SQLite file that
    is not there yet, nor where the database cannot be read (opening the storage says why, in one line)."""
    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return []
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:") or not Path(parsed.database).expanduser().is_file():
            return []
    elif parsed.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT_S
    try:
        engine = sqlalchemy.create_engine(parsed, connect_args=connect_args)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError):
        return []
    try:
        return sqlalchemy.inspect(engine).get_table_names()
    except sqlalchemy.exc.SQLAlchemyError:
        return []
    finally:
        engine.dispose()


def check_database(url: str, *, shared: bool = False) -> None:
    """Refuse to put a study into a database that holds tables that are not Optuna's (someone else's data,
    which Optuna's tables would join), unless ``shared``; asked before anything is created."""
    if shared:
        return
    foreign = sorted(set(_tables(url)) - _optuna_tables())
    if foreign:
        named = ", ".join(foreign[:NAMED_TABLES]) + (f" and {len(foreign) - NAMED_TABLES} more"
                                                     if len(foreign) > NAMED_TABLES else "")
        raise StorageError(f"{redact(url)} holds tables that are not Optuna's ({named}); give the study a "
                           "database of its own, or pass --shared-database (shared_database=True) to add "
                           "Optuna's tables to it")


def create_study(config: StudyFile, *, shared_database: bool = False) -> optuna.Study:
    """Create the study of ``config`` (or record its settings again) without running a trial: the one-shot
    step before workers join. The device, data set, artifacts folder and database are checked first, as
    ``run`` does, so a study that no worker could work on is never created, and a refused one leaves
    nothing behind. ``shared_database``: see `check_database`."""
    _, data = load_device_and_data(config)
    open_artifact_store(config.study.artifacts, create=True)
    check_database(config.study.storage, shared=shared_database)
    storage = open_storage(config.study.storage, create=True)
    return create_or_load_study(config, storage, create=True, data=data)
