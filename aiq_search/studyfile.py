"""Study files (``studies/*.toml``): one TOML file says everything a study needs, validated before any work.

Validation happens here, before storage is opened, so a bad file never touches an existing study. Every
error is one line naming the file, the field and what is allowed: pydantic's errors are rewritten into
`ConfigError`, and the search-space overrides are checked by the family's own `Family.narrow`.

Relative paths (the SQLite file in ``storage``, ``artifacts``, ``data.data_dir``) are relative to the
directory aiq-search runs in, as SQLite URLs are.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from aiq_search.architectures import FAMILIES, Choice
from aiq_search.data import DATASETS
from aiq_search.errors import ConfigError

__all__ = ["DataSection", "SearchSection", "StudyFile", "StudySection", "TrainingSection", "load_study_file"]

Mode = Literal["aiq", "pareto"]
SamplerName = Literal["tpe", "random", "grid", "nsga2"]
PrunerName = Literal["median", "hyperband", "none"]

# Mode-dependent defaults: pareto studies have two objectives, which Optuna cannot prune (no intermediate
# values for multi-objective trials), and NSGA-II is the sampler made for Pareto fronts.
DEFAULT_SAMPLER: dict[str, str] = {"aiq": "tpe", "pareto": "nsga2"}
DEFAULT_PRUNER: dict[str, str] = {"aiq": "median", "pareto": "none"}

_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _Section(BaseModel):
    # strict: TOML has real types, so "20" for an integer is a mistake, not something to coerce
    model_config = ConfigDict(extra="forbid", strict=True)


class StudySection(_Section):
    """The study itself: where it lives, what it optimizes, how trials are chosen, how many."""

    name: str
    storage: str | None = None
    artifacts: str | None = None
    mode: Mode = "aiq"
    beta: float = Field(2.0, gt=0)
    eval_split: Literal["validation", "test"] = "validation"
    sampler: SamplerName | None = None
    pruner: PrunerName | None = None
    seed: int = Field(0, ge=0)
    n_trials: int = Field(20, ge=1)
    timeout: float | None = Field(None, gt=0)
    heartbeat_interval: int = Field(10, ge=1)
    grace_period: int = Field(60, ge=2)
    max_retry: int = Field(3, ge=0)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must start with a letter or digit and hold only letters, digits, '_', '.', '-'")
        return value

    @field_validator("beta")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number > 0")
        return value

    @field_validator("pruner")
    @classmethod
    def _prunable(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("mode") == "pareto" and value not in (None, "none"):
            raise ValueError("pareto mode cannot prune (Optuna has no intermediate values for "
                             "multi-objective trials); allowed: 'none'")
        return value

    @field_validator("grace_period")
    @classmethod
    def _grace(cls, value: int, info: ValidationInfo) -> int:
        interval = info.data.get("heartbeat_interval")
        if interval is not None and value <= interval:
            raise ValueError(f"must be longer than heartbeat_interval ({interval}), or live trials would be "
                             "failed as stale")
        return value

    @model_validator(mode="after")
    def _defaults(self) -> StudySection:
        # filled here, so the recorded config says what actually ran
        self.sampler = self.sampler or DEFAULT_SAMPLER[self.mode]
        self.pruner = self.pruner or DEFAULT_PRUNER[self.mode]
        self.storage = self.storage or f"sqlite:///runs/{self.name}.db"
        self.artifacts = self.artifacts or f"artifacts/{self.name}"
        return self


class DataSection(_Section):
    """Which data set, where its files are, how the validation split is held out."""

    dataset: Literal[DATASETS]  # type: ignore[valid-type]  # the tuple expands to its names
    data_dir: str | None = None
    download: bool = False
    val_size: float = Field(0.1, gt=0, lt=1)
    label_noise: float = Field(0.0, ge=0, lt=1)


class TrainingSection(_Section):
    """How each sampled network is trained (`aiq_search.training.TrainConfig` less the seed, which is the
    study's seed plus the trial number, so every trial is reproducible whichever worker runs it)."""

    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(128, ge=1)
    max_epochs: int = Field(20, ge=1)
    patience: int = Field(5, ge=1)
    device: str = "auto"
    threads: int | None = Field(None, ge=1)  # torch's CPU threads; small networks train fastest on one

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError("must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        return value


class SearchSection(BaseModel):
    """The architecture family and the study's overrides of its choices (checked by `Family.narrow`)."""

    model_config = ConfigDict(extra="allow", strict=True)

    family: Literal[tuple(FAMILIES)]  # type: ignore[valid-type]

    @property
    def overrides(self) -> dict[str, Any]:
        """The narrowed or fixed choices as written in the file."""
        return dict(self.__pydantic_extra__ or {})

    def space(self) -> dict[str, Choice | Any]:
        """The family's search space with this file's overrides applied."""
        return FAMILIES[self.family].narrow(self.overrides)


class StudyFile(BaseModel):
    """A whole validated study file."""

    model_config = ConfigDict(extra="forbid", strict=True)

    study: StudySection
    data: DataSection
    search: SearchSection
    training: TrainingSection = TrainingSection()

    def with_overrides(self, *, n_trials: int | None = None, timeout: float | None = None,
                       storage: str | None = None, device: str | None = None,
                       threads: int | None = None) -> StudyFile:
        """This file with command-line options applied (validated like the file's own values)."""
        study = {k: v for k, v in (("n_trials", n_trials), ("timeout", timeout), ("storage", storage))
                 if v is not None}
        training = {k: v for k, v in (("device", device), ("threads", threads)) if v is not None}
        raw = self.model_dump()
        raw["study"].update(study)
        raw["training"].update(training)
        try:
            return StudyFile.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"command line: {_describe(exc)}") from None

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
    errors = exc.errors(include_url=False)
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


def _check_search(path: Path, parsed: StudyFile) -> None:
    """Narrow the family's space one override at a time, so the error names the exact field."""
    family = FAMILIES[parsed.search.family]
    for name, value in parsed.search.overrides.items():
        try:
            family.narrow({name: value})
        except ValueError as exc:
            raise ConfigError(f"{path}: field 'search.{name}': {exc}") from None
    if parsed.study.sampler == "grid":
        for name, entry in parsed.search.space().items():
            if isinstance(entry, Choice) and entry.kind == "float":
                raise ConfigError(
                    f"{path}: field 'search.{name}': the grid sampler needs every choice discrete; "
                    f"fix it to one value or give a list of values (now {entry.describe()})")


def load_study_file(path: str | Path) -> StudyFile:
    """Read and validate a study file; any problem is a one-line `ConfigError` naming file and field."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such study file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        parsed = StudyFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from None
    _check_search(path, parsed)
    return parsed
