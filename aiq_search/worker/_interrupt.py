"""Ctrl-C that always stops a worker process cleanly, and with exit status 130.

Python raises KeyboardInterrupt wherever the main thread is when SIGINT arrives. Measured with Ctrl-Cs at
random moments of short runs under ``python -m aiq_search.cli`` (how `launch` starts workers), some of those
places go wrong:
- Optuna's tell, between the objective's return and the trial's recorded end: Optuna's ``_run_trial`` then
  fails with UnboundLocalError, a traceback, exit status 1 and the trial left RUNNING (1 of 80);
- a finalizer or weakref callback (SQLAlchemy's class registry runs them during queries): Python prints
  "Exception ignored in ..." and goes on, so the Ctrl-C does nothing (1 of 24);
- an extension module's import that turns it into an ImportError, which the importer takes for a missing
  package (torch importing triton, lazily): the Ctrl-C does nothing (1 of 100);
- code run from a string (``exec``/``eval``: dataclasses and named tuples are made so, and torch, numpy and
  scikit-learn import lazily, some during the first trial): a KeyboardInterrupt that leaves it marks the
  process, and under ``python -m`` CPython then ends it by SIGINT (exit status -2) even though the CLI caught
  the exception and returned 130 (2 of 24). The mark is set for that exact type only.

`catch_ctrl_c` installs a SIGINT handler that remembers the Ctrl-C for the rest of the process and raises
`CtrlC`, a KeyboardInterrupt of its own type (every ``except KeyboardInterrupt`` still handles it; no mark),
except inside `deferred` blocks, where the first Ctrl-C waits until the block ends or an `allowed` block
starts (a second one raises at once). `check` raises it again wherever something swallowed it: a worker
checks each epoch and each wait for a place in the study. A worker defers Ctrl-C around Optuna's optimize
loop and allows it while its objective runs: a Ctrl-C fails the training trial at once, and one between
trials stops the worker once Optuna has recorded the trial.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from types import FrameType

__all__ = ["CtrlC", "allowed", "catch_ctrl_c", "check", "deferred"]

_pressed = False  # Ctrl-C came: the process is stopping
_deferring = False


class CtrlC(KeyboardInterrupt):
    """SIGINT, as `catch_ctrl_c`'s handler raises it."""


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    global _pressed
    first, _pressed = not _pressed, True
    if _deferring and first:
        return
    raise CtrlC  # a second Ctrl-C does not wait: Optuna's calls retry through a database outage


class _QuietCtrlC:
    """An unraisable hook that passes on all but a `CtrlC` a finalizer swallowed (`check` raises it again)."""

    def __init__(self, previous: Callable[[sys.UnraisableHookArgs], object]) -> None:
        self.previous = previous

    def __call__(self, unraisable: sys.UnraisableHookArgs) -> None:
        if not isinstance(unraisable.exc_value, CtrlC):
            self.previous(unraisable)


def catch_ctrl_c() -> None:
    """Make SIGINT raise `CtrlC` in this process (outside `deferred` blocks) and `check` raise it from then
    on. For the main thread of a process's entry point (the CLI, a Ray worker's child): it changes the
    process."""
    signal.signal(signal.SIGINT, _on_sigint)
    if not isinstance(sys.unraisablehook, _QuietCtrlC):
        sys.unraisablehook = _QuietCtrlC(sys.unraisablehook)


def check() -> None:
    """Raise `CtrlC` if Ctrl-C was pressed: it waited in a `deferred` block, or something swallowed it."""
    if _pressed:
        raise CtrlC


@contextlib.contextmanager
def _mode(deferring: bool) -> Iterator[None]:
    global _deferring
    before, _deferring = _deferring, deferring
    try:
        if not deferring:
            check()
        yield
    finally:
        _deferring = before
    if not before:
        check()


def deferred() -> contextlib.AbstractContextManager[None]:
    """Let the first Ctrl-C that arrives inside wait: raise it when the block ends normally (or an
    `allowed` block starts inside), never in the middle of what the block does."""
    return _mode(True)


def allowed() -> contextlib.AbstractContextManager[None]:
    """Inside a `deferred` block: raise a Ctrl-C that waited now, and one that arrives inside at once."""
    return _mode(False)
