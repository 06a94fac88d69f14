from ._main import (
    build_parser as build_parser,
    entry_point as entry_point,
    main as main,
)

__all__ = [
    "build_parser",
    "entry_point",
    "main",
]
