from .data import DataSplits as DataSplits
from .data import RawData as RawData
from .data import get_dataset as get_dataset
from .data import list_datasets as list_datasets
from .data import load_dataset as load_dataset
from .data import register_dataset as register_dataset
from .errors import (
    AiqSearchError as AiqSearchError,
)
from .errors import (
    ConfigError as ConfigError,
)
from .errors import (
    DataError as DataError,
)
from .errors import (
    StorageError as StorageError,
)
from .export import (
    ExportCheck as ExportCheck,
)
from .export import (
    export_trials as export_trials,
)
from .export import (
    load_exported as load_exported,
)
from .export import (
    verify_export as verify_export,
)
from .families import (
    Choice as Choice,
)
from .families import (
    Family as Family,
)
from .families import (
    SpecError as SpecError,
)
from .families import (
    build_model as build_model,
)
from .families import (
    get_family as get_family,
)
from .families import (
    list_families as list_families,
)
from .families import (
    register_family as register_family,
)
from .integration import (
    AiqCallback as AiqCallback,
)
from .integration import (
    AiqTrial as AiqTrial,
)
from .integration import (
    load_study_data as load_study_data,
)
from .integration import (
    prepare_study as prepare_study,
)
from .metrics import (
    EfficiencyProbe as EfficiencyProbe,
)
from .metrics import (
    EfficiencyReport as EfficiencyReport,
)
from .metrics import (
    aiq as aiq,
)
from .metrics import (
    measure_efficiency as measure_efficiency,
)
from .studyfile import StudyFile as StudyFile
from .studyfile import load_study_file as load_study_file
from .worker import run_study as run_study

__version__: str

__all__ = [
    "AiqCallback",
    "AiqSearchError",
    "AiqTrial",
    "Choice",
    "ConfigError",
    "DataError",
    "DataSplits",
    "EfficiencyProbe",
    "EfficiencyReport",
    "ExportCheck",
    "Family",
    "RawData",
    "SpecError",
    "StorageError",
    "StudyFile",
    "aiq",
    "build_model",
    "export_trials",
    "get_dataset",
    "get_family",
    "list_datasets",
    "list_families",
    "load_dataset",
    "load_exported",
    "load_study_data",
    "load_study_file",
    "measure_efficiency",
    "prepare_study",
    "register_dataset",
    "register_family",
    "run_study",
    "verify_export",
]
