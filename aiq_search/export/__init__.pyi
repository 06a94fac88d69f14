from ._folder import (
    InputFormat as InputFormat,
)
from ._folder import (
    RawInputModel as RawInputModel,
)
from ._folder import (
    load_exported as load_exported,
)
from ._folder import (
    write_manifest as write_manifest,
)
from ._verify import (
    ExportCheck as ExportCheck,
)
from ._verify import (
    OnnxCheck as OnnxCheck,
)
from ._verify import (
    verify_export as verify_export,
)
from ._write import (
    export_trials as export_trials,
)
from ._write import (
    onnx_available as onnx_available,
)
from ._write import (
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
