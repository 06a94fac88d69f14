"""Ctrl-C lands wherever it arrives (`aiq_search.worker._interrupt`): real SIGINTs in a child Python process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# the process sends itself SIGINT from inside the code in question and waits there for it
SIGINT_HERE = "os.kill(os.getpid(), signal.SIGINT); time.sleep(5)"


def run_module(tmp_path: Path, body: str, *, catch: bool) -> subprocess.CompletedProcess[str]:
    """Run ``body`` as a module under ``python -m`` (how `launch` starts workers), with or without
    `catch_ctrl_c`."""
    setup = ("from aiq_search.worker import catch_ctrl_c; catch_ctrl_c()\n" if catch else
             "signal.signal(signal.SIGINT, signal.default_int_handler)\n")  # Python's own, even if inherited ignored
    (tmp_path / "child.py").write_text(
        f"import os, signal, sys, time\nfrom aiq_search.worker import check\n{setup}{body}\n", encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "child"], cwd=tmp_path, capture_output=True, text=True, timeout=60)


CAUGHT_IN_EXEC = f"""
try:
    exec({SIGINT_HERE!r})
except KeyboardInterrupt as exc:
    print(type(exc).__name__)
sys.exit(3)
"""


def test_ctrl_c_caught_after_code_run_from_a_string_keeps_the_exit_status(tmp_path: Path) -> None:
    child = run_module(tmp_path, CAUGHT_IN_EXEC, catch=True)
    assert (child.returncode, child.stdout, child.stderr) == (3, "CtrlC\n", "")


def test_without_it_python_ends_such_a_process_by_sigint(tmp_path: Path) -> None:
    """What `catch_ctrl_c` is for: the caught KeyboardInterrupt still ends the process by SIGINT, not with
    the status the program chose."""
    child = run_module(tmp_path, CAUGHT_IN_EXEC, catch=False)
    assert (child.returncode, child.stdout) == (-2, "KeyboardInterrupt\n")


SWALLOWED = {
    "by a finalizer": f"""
class Closing:
    def __del__(self):
        {SIGINT_HERE}

Closing()  # finalized at once: the SIGINT is handled inside __del__
""",
    # what an extension module built with pybind11 does when its init is interrupted, and how an optional
    # import is written (torch importing triton)
    "by an import turning it into ImportError": f"""
try:
    try:
        {SIGINT_HERE}
    except KeyboardInterrupt as exc:
        raise ImportError("initialization failed") from exc
except ImportError:
    pass
""",
}
THEN_CHECK = """
print("went on")
try:
    check()
except KeyboardInterrupt as exc:
    print("raised by check:", type(exc).__name__)
"""


@pytest.mark.parametrize("where", SWALLOWED)
def test_a_swallowed_ctrl_c_is_raised_at_the_next_check(tmp_path: Path, where: str) -> None:
    child = run_module(tmp_path, SWALLOWED[where] + THEN_CHECK, catch=True)
    assert (child.returncode, child.stdout, child.stderr) == (0, "went on\nraised by check: CtrlC\n", "")


@pytest.mark.parametrize("where", SWALLOWED)
def test_without_it_a_swallowed_ctrl_c_is_lost(tmp_path: Path, where: str) -> None:
    child = run_module(tmp_path, SWALLOWED[where] + THEN_CHECK, catch=False)
    assert (child.returncode, child.stdout) == (0, "went on\n")


@pytest.mark.parametrize("catch", [True, False])
def test_other_errors_in_finalizers_are_still_reported(tmp_path: Path, catch: bool) -> None:
    body = "class Broken:\n    def __del__(self):\n        raise ValueError('in a finalizer')\n\nBroken()\ncheck()"
    child = run_module(tmp_path, body, catch=catch)
    assert child.returncode == 0
    assert "Exception ignored in" in child.stderr and "ValueError: in a finalizer" in child.stderr


def deferred_body(then: str) -> str:
    """A deferred block that gets a Ctrl-C, sleeps past it, then runs ``then`` and ends."""
    return f"""
from aiq_search.worker import allowed, deferred
try:
    with deferred():
        os.kill(os.getpid(), signal.SIGINT); time.sleep(0.2)
        print("held")
        {then}
        print("block ends")
    print("not reached")
except KeyboardInterrupt as exc:
    print("raised:", type(exc).__name__)
"""


@pytest.mark.parametrize(("then", "expected"), [
    ("pass", "held\nblock ends\nraised: CtrlC\n"),  # raised when the block ends
    ("with allowed(): print('not reached')", "held\nraised: CtrlC\n"),  # or when it allows Ctrl-C
    (SIGINT_HERE, "held\nraised: CtrlC\n"),  # a second Ctrl-C raises at once
], ids=["block-ends", "allowed-inside", "second-ctrl-c"])
def test_a_deferred_block_holds_the_first_ctrl_c(tmp_path: Path, then: str, expected: str) -> None:
    child = run_module(tmp_path, deferred_body(then), catch=True)
    assert (child.returncode, child.stdout) == (0, expected), child.stderr
