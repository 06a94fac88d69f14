"""Study files (``studies/*.toml``): one TOML file says everything a study needs, validated before any work.

Validation happens here, before storage is opened, so a bad file never touches an existing study. Every
error is one line naming the file, the field and what is allowed: pydantic's errors are rewritten into
`ConfigError`, the search-space overrides are checked by the family's own `Family.narrow`, and the data
set's options by the data set (`aiq_search.data.Dataset.check_options`).

Relative paths (the SQLite file in ``storage``, ``artifacts``, ``data.data_dir``) are relative to the
directory aiq-search runs in, as SQLite URLs are; a data set's ``path`` option is relative to ``data_dir``
when one is set (or ``$AIQ_DATA_DIR``), else to that directory too.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from aiq_search.errors import AiqSearchError, ConfigError
from aiq_search.metrics import EvalSplit, MetricsConfig
from aiq_search.study import OUTAGE_TIMEOUT_S
from aiq_search.training import TrainConfig

if TYPE_CHECKING:
    from aiq_search.families import Choice, Family

__all__ = ["DataSection", "SearchSection", "StudyFile", "StudySection", "load_study_file", "load_study_section"]

Mode = Literal["aiq", "pareto"]
SamplerName = Literal["tpe", "gp", "random", "grid", "nsga2"]
PrunerName = Literal["halving", "median", "hyperband", "dominated", "none"]

# Mode-dependent defaults, chosen on bench/search.py (100 seeds, the recorded grids). In aiq mode, TPE
# (ordered lists, 4+ start-up trials) with successive halving from epoch max_epochs // 6: on the full
# 500-network LeNet-300-100 grid (interior optimum) it reached 98% of the best aIQ in every seed at a median
# 4.5% of the grid's network-epochs, Hyperband 4.4%, the median pruner 5.0%, no pruner 6.2%; on the
# 56-network LeNet-300 and 64-network LeNet-5 grids halving needed 13.0% and 6.9% (Hyperband 15.5%, 8.4%;
# median 21.5%, 10.8%), all in every seed. Pareto studies use NSGA-II with the 'dominated' rule
# (`python bench/pareto.py`, 20 seeds): it reached 98% of the full grid's accuracy/size hypervolume at 8.7%
# of the fine LeNet-300 grid's network-epochs against 15.0% without it (0.57x against 0.99x a random-order
# sweep), and in 95% of the seeds on the LeNet-5 grid against 50%.
DEFAULT_SAMPLER: dict[str, SamplerName] = {"aiq": "tpe", "pareto": "nsga2"}
DEFAULT_PRUNER: dict[str, PrunerName] = {"aiq": "halving", "pareto": "dominated"}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _Section(BaseModel):
    # strict: TOML has real types, so "20" for an integer is a mistake, not something to coerce
    model_config = ConfigDict(extra="forbid", strict=True)


class StudySection(_Section):
    """The study itself: where it lives, what it optimizes, how trials are chosen, how many."""

    name: str
    # defaults computed from the fields above them, so the recorded config says what actually ran
    storage: str = Field(default_factory=lambda data: f"sqlite:///runs/{data.get('name', 'study')}.db", min_length=1)
    artifacts: str = Field(default_factory=lambda data: f"artifacts/{data.get('name', 'study')}", min_length=1)
    mode: Mode = "aiq"
    eval_split: EvalSplit = "validation"
    sampler: SamplerName = Field(default_factory=lambda data: DEFAULT_SAMPLER[data.get("mode", "aiq")])
    # GPSampler models COMPLETE trials only: it is never paired with a pruner
    pruner: PrunerName = Field(default_factory=lambda data: "none" if data.get("sampler") == "gp"
                               else DEFAULT_PRUNER[data.get("mode", "aiq")])
    # random trials before TPE or GP model the space (default: one per open choice plus one, at least 4)
    startup_trials: int | None = Field(None, ge=1)
    # the first epoch a pruner may stop a trial (default: max_epochs // 6; the median pruner: max_epochs // 2)
    prune_from_epoch: int | None = Field(None, ge=1)
    seed: int = Field(0, ge=0)
    n_trials: int = Field(20, ge=1)
    timeout: float | None = Field(None, gt=0)
    # bounded: a worker's heartbeat thread waits this long, and the grace period is date arithmetic
    heartbeat_interval: int = Field(10, ge=1, le=3600)
    grace_period: int = Field(60, ge=2, le=7 * 86400)
    max_retry: int = Field(3, ge=0)
    # how long a worker waits for an unreachable storage (a restart, a failover) before it stops
    outage_timeout: float = Field(OUTAGE_TIMEOUT_S, gt=0)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must start with a letter or digit and hold only letters, digits, '_', '.', '-'")
        return value

    @field_validator("storage")
    @classmethod
    def _storage(cls, value: str) -> str:
        database = value.partition("?")[0]
        if database.startswith("sqlite:") and database.removeprefix("sqlite:").strip("/") in ("", ":memory:"):
            raise ValueError("an in-memory SQLite database lives in one connection and is gone when the run ends "
                             "(workers and heartbeats use their own); name a file, e.g. sqlite:///runs/study.db")
        return value

    @field_validator("pruner")
    @classmethod
    def _prunable(cls, value: str, info: ValidationInfo) -> str:
        pareto = info.data.get("mode") == "pareto"
        if pareto and value not in ("dominated", "none"):
            raise ValueError("pareto mode prunes by its own rule (Optuna has no intermediate values for "
                             "multi-objective trials); allowed: 'dominated', 'none'")
        if not pareto and value == "dominated":
            raise ValueError("'dominated' is pareto mode's rule; aiq mode allows 'halving', 'median', "
                             "'hyperband', 'none'")
        if info.data.get("sampler") == "gp" and value != "none":
            raise ValueError("sampler 'gp' models COMPLETE trials only, so with a pruner it proposes the pruned "
                             "networks again; use pruner = 'none' with it")
        return value

    @field_validator("grace_period")
    @classmethod
    def _grace(cls, value: int, info: ValidationInfo) -> int:
        interval = info.data.get("heartbeat_interval")
        if interval is not None and value <= interval:
            raise ValueError(f"must be longer than heartbeat_interval ({interval}), or live trials would be "
                             "failed as stale")
        return value


def _resolvable(reference: str, resolve: Callable[[str], object]) -> str:
    """A plugin reference (data set, family) that resolves; its one-line error becomes the field's."""
    try:
        resolve(reference)
    except AiqSearchError as exc:  # pydantic reports ValueErrors as this field's error
        raise ValueError(str(exc)) from None
    return reference


class DataSection(BaseModel):
    """Which data set, where its files are, how the validation split is held out; any other key is an option
    of the data set (e.g. ``path``, ``image_size``), checked by the data set itself (`check_data`)."""

    model_config = ConfigDict(extra="allow", strict=True)

    dataset: str
    data_dir: str | None = None
    download: bool = False
    val_size: float = Field(0.1, gt=0, lt=1)
    label_noise: float = Field(0.0, ge=0, lt=1)

    @field_validator("dataset")
    @classmethod
    def _known(cls, value: str) -> str:
        from aiq_search.data import get_dataset  # imported here: readers of the [study] table need no torch

        return _resolvable(value, get_dataset)

    @property
    def options(self) -> dict[str, Any]:
        """The data set's own options as written in the file (the keys beyond the common ones)."""
        return dict(self.__pydantic_extra__ or {})


class SearchSection(BaseModel):
    """The architecture family and the study's overrides of its choices (checked by `Family.narrow`).

    ``family`` is resolved by `aiq_search.families.get_family`: a built-in's name, an installed package's
    entry point, or a ``package.module:attribute`` import path to a family of your own."""

    model_config = ConfigDict(extra="allow", strict=True)

    family: str

    @field_validator("family")
    @classmethod
    def _known(cls, value: str) -> str:
        from aiq_search.families import get_family  # imported here: readers of the [study] table need no torch

        return _resolvable(value, get_family)

    @property
    def overrides(self) -> dict[str, Any]:
        """The narrowed or fixed choices as written in the file."""
        return dict(self.__pydantic_extra__ or {})

    def resolve(self) -> Family:
        """The family this section names."""
        from aiq_search.families import get_family

        return get_family(self.family)

    def space(self) -> dict[str, Choice | Any]:
        """The family's search space with this file's overrides applied."""
        return self.resolve().narrow(self.overrides)


class StudyFile(BaseModel):
    """A whole validated study file."""

    model_config = ConfigDict(extra="forbid", strict=True)

    study: StudySection
    data: DataSection
    search: SearchSection
    training: TrainConfig = TrainConfig()
    metrics: MetricsConfig = MetricsConfig()

    def with_overrides(self, fields: Mapping[str, Any] | None = None, *, n_trials: int | None = None,
                       timeout: float | None = None, storage: str | None = None, device: str | None = None,
                       threads: int | None = None, study_name: str | None = None) -> StudyFile:
        """This file with command-line options applied, validated like the file's own values. ``fields``
        maps ``section.key`` to a value (``--set``); the keywords are the common ones by name."""
        named = {"study.n_trials": n_trials, "study.timeout": timeout, "study.storage": storage,
                 "training.device": device, "training.threads": threads, "study.name": study_name}
        raw = self.model_dump()
        for dotted, value in {**dict(fields or {}), **{k: v for k, v in named.items() if v is not None}}.items():
            section, _, key = dotted.partition(".")
            if not key or "." in key or section not in StudyFile.model_fields:
                raise ConfigError(f"command line: {dotted!r} is not section.key; sections: "
                                  f"{', '.join(StudyFile.model_fields)}")
            raw.setdefault(section, {})[key] = value
        return _parse(raw, "command line")

    def record(self) -> dict[str, Any]:
        """The validated file as plain data (JSON-serializable), for the study's user attrs."""
        return self.model_dump(mode="json")


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys a table at ``loc`` accepts, to name them in an 'unknown key' error."""
    model: type[BaseModel] = StudyFile
    for part in loc:
        annotation = model.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _describe(exc: ValidationError) -> str:
    """The first error of ``exc`` in one line: field, problem, what is allowed."""
    # a default computed from a field that failed is not an error of its own
    errors = [e for e in exc.errors(include_url=False) if e["type"] != "default_factory_not_called"]
    first = errors[0]
    loc = tuple(first["loc"])
    field = ".".join(str(p) for p in loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(loc[:-1]))
        message = f"unknown key; allowed keys: {allowed}"
    elif first["type"] == "missing":
        message = "required, but missing"
    else:
        message = first["msg"].removeprefix("Value error, ")
        if first["type"].endswith("_type") or first["type"] in ("model_type", "literal_error"):
            message += f", got {type(first['input']).__name__} {first['input']!r}"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"field '{field}': {message}{more}"


def _check_search(path: str | Path, parsed: StudyFile) -> None:
    """Narrow the family's space one override at a time, so the error names the exact field."""
    family = parsed.search.resolve()
    for name, value in parsed.search.overrides.items():
        try:
            family.narrow({name: value})
        except ValueError as exc:
            raise ConfigError(f"{path}: field 'search.{name}': {exc}") from None
    from aiq_search.families import Choice

    if parsed.study.sampler == "grid":
        for name, entry in parsed.search.space().items():
            if isinstance(entry, Choice) and entry.kind == "float":
                raise ConfigError(
                    f"{path}: field 'search.{name}': the grid sampler needs every choice discrete; "
                    f"fix it to one value or give a list of values (now {entry.describe()})")


def _check_data(path: str | Path, parsed: StudyFile) -> None:
    """Let the data set check its own options, so the error names the exact field."""
    from aiq_search.data import OptionError, get_dataset

    dataset = get_dataset(parsed.data.dataset)
    try:
        dataset.check_options(parsed.data.options)
    except OptionError as exc:
        problem = exc.problem
        if problem.startswith("unknown option"):
            problem = f"unknown key; allowed keys: {', '.join([*DataSection.model_fields, *dataset.option_names()])}"
        raise ConfigError(f"{path}: field 'data.{exc.field}': {problem}") from None


def _parse(raw: dict[str, Any], where: str | Path) -> StudyFile:
    """Validate a study file's tables; any problem is a one-line `ConfigError` naming where and the field."""
    try:
        parsed = StudyFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {_describe(exc)}") from None
    _check_search(where, parsed)
    _check_data(where, parsed)
    return parsed


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such study file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_study_file(path: str | Path) -> StudyFile:
    """Read and validate a study file; any problem is a one-line `ConfigError` naming file and field."""
    path = Path(path)
    return _parse(_read(path), path)


def load_study_section(path: str | Path) -> StudySection:
    """Only the ``[study]`` table of a study file (name, storage, artifacts...), validated: what the readers
    (status, plot, export, dashboard) need, without importing any family or data set."""
    path = Path(path)
    raw = _read(path)
    try:
        return StudySection.model_validate(raw.get("study"))
    except ValidationError as exc:
        message = _describe(exc).replace("field '", "field 'study.", 1)
        raise ConfigError(f"{path}: {message}") from None
