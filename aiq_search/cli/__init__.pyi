from ._main import (
    build_parser as build_parser,
)
from ._main import (
    entry_point as entry_point,
)
from ._main import (
    main as main,
)

__all__ = [
    "build_parser",
    "entry_point",
    "main",
]
