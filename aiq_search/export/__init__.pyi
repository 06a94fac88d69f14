from ._folder import (
    InputFormat as InputFormat,
    load_exported as load_exported,
    write_manifest as write_manifest,
)
from ._model import (
    RawInputModel as RawInputModel,
)
from ._verify import (
    ExportCheck as ExportCheck,
    OnnxCheck as OnnxCheck,
    verify_export as verify_export,
)
from ._write import (
    EXPORTS_DIR as EXPORTS_DIR,
    default_out_dir as default_out_dir,
    export_trials as export_trials,
    onnx_available as onnx_available,
    select_trials as select_trials,
)

__all__ = [
    "EXPORTS_DIR",
    "ExportCheck",
    "InputFormat",
    "OnnxCheck",
    "RawInputModel",
    "default_out_dir",
    "export_trials",
    "load_exported",
    "onnx_available",
    "select_trials",
    "verify_export",
    "write_manifest",
]
