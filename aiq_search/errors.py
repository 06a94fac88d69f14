"""Errors that mean "the user asked for something that cannot be done", as opposed to a bug.

The CLI prints these as one line and exits with status 2; Python callers catch them by type.
"""

from __future__ import annotations


class AiqSearchError(Exception):
    """Bad input or an unusable environment, with a message that names the problem."""


class ConfigError(AiqSearchError):
    """A study file (or an option overriding it) is invalid."""


class StorageError(AiqSearchError):
    """The study storage cannot be reached or does not hold what was asked for."""


class DataError(AiqSearchError):
    """A data set is unknown or its files are missing."""


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, and for a syntax error the file and line it names: how a failure in a
    user's code (a module, a loader, a family) is told without a traceback."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    if isinstance(exc, SyntaxError) and exc.filename and f"{exc.lineno})" not in text:
        text += f" ({exc.filename}, line {exc.lineno})"
    return text.removesuffix(":")


def user_frame(exc: BaseException) -> str | None:
    """``file.py:41 in build``: the innermost frame of ``exc``'s traceback in a user's file (not aiq_search,
    not an installed package, not the standard library), or None when no such frame ran."""
    import sysconfig
    import traceback
    from pathlib import Path

    library = [Path(__file__).resolve().parent,
               *{Path(sysconfig.get_path(key)).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib")}]
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        path = Path(frame.filename)
        if frame.filename.startswith("<") or (not path.is_absolute() and not path.exists()):
            continue
        resolved = path.resolve()
        if not any(resolved.is_relative_to(root) for root in library):
            found = f"{path.name}:{frame.lineno} in {frame.name}"
    return found
