"""One aiq-search worker on Ray: a Ray actor (`WorkerHost`) that runs the worker loop in a child process and
stops it as a terminal stops ``aiq-search worker``.

Why a child process: Ray's cancellation of a running task raises KeyboardInterrupt at whatever line the
task is on (storage writes included, and again while it unwinds) and reports the task cancelled before it
has finished unwinding, so a trial could be left RUNNING. The child gets one SIGINT instead, records its
running trial as FAIL "interrupted" and exits, and the actor returns only once it has. The child is the
worker loop of ``aiq-search worker`` (`aiq_search.worker._loop.run_study` with ``create=False``), run as
``python -m aiq_search.launch._ray_worker RESULT.json PARENT_PID`` with the study file (as validated data) on its
standard input; it ends itself when its actor's process dies, so Ray's restart never leaves a second
worker behind.

A child killed by a signal (``kill -9``, the kernel's OOM killer) raises `WorkerDied` in the actor, which
Ray retries (``retry_exceptions``), as it restarts an actor whose own process or node died.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from aiq_search.worker import catch_ctrl_c

__all__ = ["WorkerDied", "WorkerHost", "main"]

# How often a child checks that its actor's process is still there.
PARENT_CHECK_S = 1.0


class WorkerDied(Exception):
    """The worker's process was killed by a signal: Ray runs the worker again (up to its retry limit)."""


class WorkerHost:
    """A Ray actor (``max_concurrency=2``: `stop` runs while `run` waits) holding one worker process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._stopping = False

    def run(self, raw_config: dict[str, Any], index: int) -> dict[str, Any]:
        """Work on the study in a child process until it is done or stopped; returns ``{"state": "finished" |
        "cancelled" | "failed", "detail": str, "ran": int}``. Raises `WorkerDied` when the child was killed."""
        with tempfile.TemporaryDirectory(prefix="aiq-search-ray-") as tmp:
            result = Path(tmp) / "result.json"
            with self._lock:
                if self._stopping:
                    return {"state": "cancelled", "detail": "cancelled before it started", "ran": 0}
                self._child = subprocess.Popen(
                    [sys.executable, "-m", "aiq_search.launch._ray_worker", str(result), str(os.getpid())],
                    stdin=subprocess.PIPE)
            self._child.communicate(json.dumps({"config": raw_config, "index": index}).encode())
            code = self._child.returncode
            outcome = json.loads(result.read_text(encoding="utf-8")) if result.is_file() else {}
        if code < 0 and not self._stopping:
            raise WorkerDied(f"ray worker {index}: its process was killed by signal {-code}")
        if code == 0:
            return {"state": "finished", "detail": f"ran {outcome['ran']} trials in {outcome['seconds']:.1f} s",
                    "ran": outcome["ran"]}
        if code == 130 or self._stopping:
            return {"state": "cancelled", "detail": "stopped; its running trial ended FAIL (interrupted)",
                    "ran": outcome.get("ran", 0)}
        return {"state": "failed", "detail": outcome.get("error") or f"its process exited with status {code}",
                "ran": 0}

    def stop(self) -> None:
        """One SIGINT to the worker process (its running trial ends FAIL "interrupted"); no new one starts."""
        with self._lock:
            self._stopping = True
            if self._child is not None and self._child.poll() is None:
                self._child.send_signal(signal.SIGINT)


def _end_with_parent(parent: int) -> None:
    """Kill this process when the actor's process (``parent``) dies: Ray will start another worker."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """The child: ``RESULT.json PARENT_PID``, the request on standard input."""
    result_path, parent = (argv or sys.argv[1:])[:2]
    _end_with_parent(int(parent))
    # Ray's processes block SIGINT, and a child inherits that: take it back, as any worker has it
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    catch_ctrl_c()
    request = json.load(sys.stdin)

    def record(outcome: dict[str, Any]) -> None:
        Path(result_path).write_text(json.dumps(outcome), encoding="utf-8")

    import secrets

    import optuna
    from rich.console import Console

    from aiq_search.errors import AiqSearchError
    from aiq_search.studyfile import StudyFile
    from aiq_search.worker import run_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        config = StudyFile.model_validate(request["config"])
        # a seed offset of its own, drawn anew when Ray starts the worker again (no repeat of earlier draws)
        summary = run_study(config, create=False, worker_index=secrets.randbelow(2**31),
                            label=f"ray worker {request['index']}", console=Console(), progress_bar=False)
    except AiqSearchError as exc:
        record({"error": str(exc)})
        print(f"aiq-search: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    record({"ran": summary.ran, "seconds": summary.seconds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
