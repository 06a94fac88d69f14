from ._folder import (
    InputFormat as InputFormat,
    RawInputModel as RawInputModel,
    load_exported as load_exported,
    write_manifest as write_manifest,
)
from ._verify import (
    ExportCheck as ExportCheck,
    OnnxCheck as OnnxCheck,
    verify_export as verify_export,
)
from ._write import (
    export_trials as export_trials,
    onnx_available as onnx_available,
    select_trials as select_trials,
)

__all__ = [
    "ExportCheck",
    "InputFormat",
    "OnnxCheck",
    "RawInputModel",
    "export_trials",
    "load_exported",
    "onnx_available",
    "select_trials",
    "verify_export",
    "write_manifest",
]
