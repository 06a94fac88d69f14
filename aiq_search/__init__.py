"""aiq-search: Optuna architecture search that scores networks by aIQ (efficiency and accuracy together).

The curated API lives here; each name is imported on first use, so ``import aiq_search`` stays free of
torch (the readers and the CLI's start-up need that). The stages are subpackages a reader can walk in the
order data flows: `studyfile` → `study` → `worker` → `families` / `data` → `training` → `metrics` →
`study` records; `readers`, `export`, `launch`, `integration` and `cli` sit beside them.
"""

import lazy_loader as _lazy

from aiq_search._version import __version__ as __version__

__getattr__, __dir__, __all__ = _lazy.attach_stub(__name__, __file__)
