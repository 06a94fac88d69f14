from ._artifacts import (
    is_s3 as is_s3,
)
from ._artifacts import (
    open_artifact_store as open_artifact_store,
)
from ._artifacts import (
    resolve_location as resolve_location,
)
from ._create import (
    changed_fields as changed_fields,
)
from ._create import (
    create_or_load_study as create_or_load_study,
)
from ._create import (
    create_study as create_study,
)
from ._create import (
    load_device_and_data as load_device_and_data,
)
from ._enqueue import (
    enqueue_spec as enqueue_spec,
)
from ._outage import (
    OUTAGE_TIMEOUT_S as OUTAGE_TIMEOUT_S,
)
from ._outage import (
    OutageError as OutageError,
)
from ._outage import (
    lost_connection as lost_connection,
)
from ._outage import (
    outage_behind as outage_behind,
)
from ._read import (
    RecordedSettings as RecordedSettings,
)
from ._read import (
    by_aiq as by_aiq,
)
from ._read import (
    complete_trials as complete_trials,
)
from ._read import (
    count_states as count_states,
)
from ._read import (
    describe_trial as describe_trial,
)
from ._read import (
    fail_reason as fail_reason,
)
from ._read import (
    open_study as open_study,
)
from ._read import (
    pareto_front as pareto_front,
)
from ._read import (
    require_complete_trials as require_complete_trials,
)
from ._read import (
    states_in_words as states_in_words,
)
from ._read import (
    study_settings as study_settings,
)
from ._records import (
    COMMON_KEYS as COMMON_KEYS,
)
from ._records import (
    METRIC_NAMES as METRIC_NAMES,
)
from ._records import (
    SETTINGS_ATTR as SETTINGS_ATTR,
)
from ._records import (
    TOP_DEFAULT as TOP_DEFAULT,
)
from ._records import (
    WEIGHTS_FILE as WEIGHTS_FILE,
)
from ._records import (
    generic_description as generic_description,
)
from ._samplers import (
    first_prunable_epoch as first_prunable_epoch,
)
from ._samplers import (
    grid_exhausted as grid_exhausted,
)
from ._samplers import (
    grid_twin as grid_twin,
)
from ._samplers import (
    make_pruner as make_pruner,
)
from ._samplers import (
    make_sampler as make_sampler,
)
from ._storage import (
    POSTGRES_CONNECT_TIMEOUT_S as POSTGRES_CONNECT_TIMEOUT_S,
)
from ._storage import (
    STALE_REASON as STALE_REASON,
)
from ._storage import (
    holds_optuna_storage as holds_optuna_storage,
)
from ._storage import (
    open_storage as open_storage,
)
from ._storage import (
    redact as redact,
)
from ._write import (
    input_record as input_record,
)
from ._write import (
    record_architecture as record_architecture,
)
from ._write import (
    record_failure as record_failure,
)
from ._write import (
    record_scores as record_scores,
)
from ._write import (
    record_settings as record_settings,
)
from ._write import (
    save_weights as save_weights,
)
from ._write import (
    settings_value as settings_value,
)

__all__ = [
    "COMMON_KEYS",
    "METRIC_NAMES",
    "OUTAGE_TIMEOUT_S",
    "POSTGRES_CONNECT_TIMEOUT_S",
    "SETTINGS_ATTR",
    "STALE_REASON",
    "TOP_DEFAULT",
    "WEIGHTS_FILE",
    "OutageError",
    "RecordedSettings",
    "by_aiq",
    "changed_fields",
    "complete_trials",
    "count_states",
    "create_or_load_study",
    "create_study",
    "describe_trial",
    "enqueue_spec",
    "fail_reason",
    "first_prunable_epoch",
    "generic_description",
    "grid_exhausted",
    "grid_twin",
    "holds_optuna_storage",
    "input_record",
    "is_s3",
    "load_device_and_data",
    "lost_connection",
    "make_pruner",
    "make_sampler",
    "open_artifact_store",
    "open_storage",
    "open_study",
    "outage_behind",
    "pareto_front",
    "record_architecture",
    "record_failure",
    "record_scores",
    "record_settings",
    "redact",
    "require_complete_trials",
    "resolve_location",
    "save_weights",
    "settings_value",
    "states_in_words",
    "study_settings",
]
