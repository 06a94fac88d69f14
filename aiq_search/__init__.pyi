from .data import (
    DataSplits as DataSplits,
    RawData as RawData,
    get_dataset as get_dataset,
    list_datasets as list_datasets,
    load_dataset as load_dataset,
    register_dataset as register_dataset,
)
from .errors import (
    AiqSearchError as AiqSearchError,
    ConfigError as ConfigError,
    DataError as DataError,
    StorageError as StorageError,
)
from .export import (
    ExportCheck as ExportCheck,
    export_trials as export_trials,
    load_exported as load_exported,
    verify_export as verify_export,
)
from .families import (
    Choice as Choice,
    Family as Family,
    SpecError as SpecError,
    build_model as build_model,
    get_family as get_family,
    list_families as list_families,
    register_family as register_family,
)
from .integration import (
    AiqCallback as AiqCallback,
    AiqTrial as AiqTrial,
    load_study_data as load_study_data,
    prepare_study as prepare_study,
)
from .metrics import (
    EfficiencyProbe as EfficiencyProbe,
    EfficiencyReport as EfficiencyReport,
    aiq as aiq,
    measure_efficiency as measure_efficiency,
)
from .studyfile import (
    StudyFile as StudyFile,
    load_study_file as load_study_file,
)
from .worker import (
    run_study as run_study,
)

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
