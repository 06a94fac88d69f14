"""The ``aiq-search`` command: parses arguments, calls the Python API, prints. No logic of its own."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from aiq_search._version import __version__
from aiq_search.cli._readers import add_reader_commands, positive_int, print_status
from aiq_search.errors import AiqSearchError, ConfigError
from aiq_search.study import TOP_DEFAULT

if TYPE_CHECKING:
    from aiq_search.studyfile import StudyFile


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiq-search",
        description="Search neural architectures that are small and accurate, scored by aIQ.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_study_commands(sub)
    add_reader_commands(sub)
    return parser


# ----------------------------------------------------------------------------- study commands
# create, run, worker, launch: aiq_search.study._create / worker / launch (the readers: aiq_search.cli._readers)


def _add_study_commands(sub: argparse._SubParsersAction) -> None:
    """Commands that create studies and work on them."""
    p = sub.add_parser("create", help="create a study without running trials (before workers join)",
                       description="Create the study of STUDY.toml and record its settings, running no trial; "
                                   "'worker' processes on any machine can then join it.")
    p.add_argument("study_file", metavar="STUDY.toml")
    _add_study_overrides(p)
    p.set_defaults(func=_cmd_create)

    p = sub.add_parser("run", help="create or resume a study and work on it in this process",
                       description="Create the study of STUDY.toml (or resume it: finished trials count and are "
                                   "not repeated) and run trials until it has n_trials COMPLETE trials.")
    _add_work_options(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("worker", help="join an existing study (e.g. from another machine)",
                       description="Work on a study that 'run' or 'launch' created, alongside other workers; "
                                   "stops when the study has n_trials COMPLETE trials.")
    _add_work_options(p)
    p.add_argument("--worker-index", type=int, metavar="I",
                   help="offsets the sampler seed so workers sample differently (default: random)")
    p.set_defaults(func=_cmd_worker)

    p = sub.add_parser("launch", help="run N worker processes on one study, here or on a Ray cluster",
                       description="Start N 'aiq-search worker' processes on this machine, spread over the "
                                   "devices, CPU threads divided between them; with --ray, as Ray actors on a "
                                   "Ray cluster, each reserving its CPUs or GPUs, restarted by Ray when their "
                                   "process dies. Ctrl-C stops them cleanly.")
    p.add_argument("study_file", metavar="STUDY.toml")
    p.add_argument("--workers", type=positive_int, required=True, metavar="N",
                   help="worker processes to start here (each runs one trial at a time)")
    p.add_argument("--devices", metavar="LIST",
                   help="comma-separated devices given out round-robin, e.g. cuda:0,cuda:1 (default: the file's)")
    _add_study_overrides(p)
    _add_ray_options(p)
    _add_traceback_option(p)
    p.set_defaults(func=_cmd_launch)



def _add_ray_options(p: argparse.ArgumentParser) -> None:
    ray = p.add_argument_group("Ray cluster (pip install 'aiq-search[ray]')")
    ray.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                     help="run the workers on the Ray cluster at ADDRESS (auto, host:6379, ray://host:10001); "
                          "without ADDRESS, Ray's default: $RAY_ADDRESS, the cluster 'ray start' started on "
                          "this machine, else a new local Ray instance")
    ray.add_argument("--cpus-per-worker", type=_positive_float, metavar="C",
                     help="CPUs each worker reserves (and its torch threads; default: 1)")
    ray.add_argument("--gpus-per-worker", type=_non_negative_float, metavar="G",
                     help="GPUs each worker reserves, a fraction to share one (e.g. 0.5); > 0 trains on the "
                          "reserved GPU (default: 0, the CPU)")
    ray.add_argument("--max-restarts", type=int, metavar="K",
                     help="times Ray starts a worker again after its process or node died (default: 3)")


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value



def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def _add_study_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n-trials", type=positive_int, metavar="N", help="COMPLETE trials the study ends with")
    p.add_argument("--timeout", type=_positive_float, metavar="S", help="start no trial after S seconds")
    p.add_argument("--storage", metavar="URL", help="storage URL instead of the file's (sqlite:///…, "
                                                    "postgresql+psycopg://user@host/db)")
    p.add_argument("--study-name", metavar="NAME", help="the study's name instead of the file's (a new name "
                                                         "starts a new study)")
    p.add_argument("--set", metavar="SECTION.KEY=VALUE", action="append", default=[], dest="fields",
                   help="set any field of the study file, e.g. --set training.lr=0.01 --set "
                        "search.width='{low = 8, high = 64}' (TOML values; repeatable)")
    p.add_argument("--shared-database", action="store_true",
                   help="create the study in a database that holds other tables too (refused without it)")


def _add_work_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("study_file", metavar="STUDY.toml")
    _add_study_overrides(p)
    p.add_argument("--device", metavar="DEVICE", help="auto, cpu, cuda or cuda:N (default: the file's)")
    p.add_argument("--threads", type=positive_int, metavar="T", help="CPU threads for torch (default: the file's)")
    p.add_argument("--no-progress", action="store_true", help="one line per trial, no live progress bar")
    _add_traceback_option(p)


def _add_traceback_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--traceback", action="store_true", help="print a failed trial's traceback (default: it goes "
                                                            "to a log file its line names)")


def _study_config(args: argparse.Namespace, *, device: str | None = None, threads: int | None = None) -> StudyFile:
    from aiq_search.studyfile import load_study_file

    return load_study_file(args.study_file).with_overrides(
        _fields(args.fields), n_trials=args.n_trials, timeout=args.timeout, storage=args.storage, device=device,
        threads=threads, study_name=args.study_name)


def _fields(assignments: Sequence[str]) -> dict[str, object]:
    """``--set section.key=value`` options as a mapping; values are TOML (a bare word is a string)."""
    import tomllib

    fields: dict[str, object] = {}
    for assignment in assignments:
        dotted, equals, text = assignment.partition("=")
        if not equals or not dotted.strip():
            raise ConfigError(f"--set {assignment!r}: expected SECTION.KEY=VALUE, e.g. training.lr=0.01")
        try:
            value = tomllib.loads(f"value = {text}")["value"]
        except tomllib.TOMLDecodeError:
            value = text
        fields[dotted.strip()] = value
    return fields


class _StderrLines(logging.Handler):
    """Log records as lines on whatever sys.stderr is when they come."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr, flush=True)


def _log_lines(prefix: str) -> None:
    """aiq_search's warnings (a storage outage starting and ending) as lines on stderr, each with ``prefix``."""
    logger = logging.getLogger("aiq_search")
    for old in [h for h in logger.handlers if isinstance(h, _StderrLines)]:
        logger.removeHandler(old)
    handler = _StderrLines()
    handler.setFormatter(logging.Formatter(f"{prefix}%(message)s"))
    logger.addHandler(handler)
    logger.propagate = False


class _OptunaNoise(logging.Filter):
    """Optuna's warnings that say nothing a worker's own lines do not: a trial's failure (with a traceback;
    the worker's own line names the error, where in the user's code, and the log file that holds the
    traceback: `aiq_search.worker._faults`), the "failed with value None" that follows every failure, and a
    read of trials falling back after its connection was lost (with the statement; the worker goes on,
    `aiq_search.study._outage`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        trial = message.startswith("Trial ")
        return not (message.startswith("Caught an error from sqlalchemy")
                    or (trial and " failed with parameters: " in message)
                    or (trial and message.endswith(" failed with value None.")))


def _quiet_optuna() -> None:
    """Optuna's log lines as Optuna's handlers show them, less `_OptunaNoise`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial comes from aiq_search instead
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _OptunaNoise) for f in handler.filters):
            handler.addFilter(_OptunaNoise())


def _work(args: argparse.Namespace, *, create: bool, worker_index: int, label: str | None) -> int:
    from rich.console import Console

    from aiq_search.study import OutageError, check_database
    from aiq_search.worker import Interrupted, run_study

    config = _study_config(args, device=args.device, threads=args.threads)
    if create:
        check_database(config.study.storage, shared=args.shared_database)
    _quiet_optuna()
    prefix = f"[{label}] " if label else ""
    _log_lines(prefix or "aiq-search: ")
    try:
        summary = run_study(config, create=create, worker_index=worker_index, label=label, console=Console(),
                            progress_bar=not args.no_progress, show_traceback=args.traceback)
    except Interrupted as exc:
        print(f"{prefix or 'aiq-search: '}{exc}", file=sys.stderr)
        return 130
    except OutageError as exc:  # with the prefix of the outage's first line: one worker's among several
        print(f"{prefix or 'aiq-search: '}error: {exc}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(summary.counts.items()))
    print(f"{prefix}{summary.study_name}: {counts} (target {summary.n_trials} complete); this process ran "
          f"{summary.ran} trials in {summary.seconds:.1f} s")
    if summary.best:
        best = summary.best[0]
        print(f"{prefix}best: trial {best.number}, aIQ {best.aiq:.4f}, accuracy {best.accuracy:.4f}, "
              f"{best.n_params:,} parameters")
    return 0


def _cmd_create(args: argparse.Namespace) -> int:
    from aiq_search.study import create_study, redact

    config = _study_config(args)
    study = create_study(config, shared_database=args.shared_database)
    done = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
    print(f"{study.study_name}: ready in {redact(config.study.storage)} ({done} finished trials, target "
          f"{config.study.n_trials} complete)")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    return _work(args, create=True, worker_index=0, label=None)


def _cmd_worker(args: argparse.Namespace) -> int:
    import os
    import secrets

    from aiq_search.launch import STORAGE_ENV

    args.storage = args.storage or os.environ.get(STORAGE_ENV)  # launch's workers: no password on their command line
    # not the process id: in containers every worker is PID 1
    index = args.worker_index if args.worker_index is not None else secrets.randbelow(2**31)
    return _work(args, create=False, worker_index=index, label=f"worker {index}")


def _cmd_launch(args: argparse.Namespace) -> int:
    from aiq_search.launch import launch

    if args.ray is not None:
        return _cmd_launch_ray(args)
    ray_only = [name for name, value in (("--cpus-per-worker", args.cpus_per_worker), ("--gpus-per-worker",
                args.gpus_per_worker), ("--max-restarts", args.max_restarts)) if value is not None]
    if ray_only:
        raise ConfigError(f"{', '.join(ray_only)} only apply with --ray")
    config = _study_config(args)
    _quiet_optuna()
    # the storage (which may hold a password) reaches the workers in their environment, not their command line
    options = [arg for name, value in (("--n-trials", args.n_trials), ("--timeout", args.timeout),
                                       ("--study-name", args.study_name))
               if value is not None for arg in (name, str(value))]
    options += [arg for field in args.fields if field.partition("=")[0].strip() != "study.storage"
                for arg in ("--set", field)]
    options += ["--traceback"] if args.traceback else []
    devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else None
    summary = launch(args.study_file, config, workers=args.workers, devices=devices, worker_options=options,
                     shared_database=args.shared_database)
    for plan, code in zip(summary.plans, summary.returncodes, strict=True):
        print(f"worker {plan.index} ({plan.device}, {plan.threads} threads): exit status {code}")
    if summary.status is not None:  # else the storage is out of reach: the workers' lines said so
        print_status([summary.status], top=TOP_DEFAULT)
    ended = "interrupted" if summary.interrupted else "stopped" if summary.returncode else "finished"
    print(f"{ended} after {summary.seconds:.1f} s")
    return summary.returncode


def _cmd_launch_ray(args: argparse.Namespace) -> int:
    import optuna

    from aiq_search.launch import DEFAULT_MAX_RESTARTS, import_ray, launch_on_ray

    if args.devices is not None:
        raise ConfigError("--devices is for local workers; with --ray each worker trains on the GPU Ray "
                          "reserves for it (--gpus-per-worker) or on the CPU")
    import_ray()  # before anything else: without Ray, say how to install it
    config = _study_config(args)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    summary = launch_on_ray(config, workers=args.workers, address=args.ray or None,
                            cpus_per_worker=args.cpus_per_worker or 1.0, gpus_per_worker=args.gpus_per_worker or 0.0,
                            max_restarts=DEFAULT_MAX_RESTARTS if args.max_restarts is None else args.max_restarts,
                            shared_database=args.shared_database,
                            on_progress=lambda line: print(f"[ray] {line}", flush=True))
    for worker in summary.workers:
        print(f"ray worker {worker.index}: {worker.state}"
              f"{'' if worker.detail == worker.state else ', ' + worker.detail}")
    print_status([summary.status], top=TOP_DEFAULT)
    print(f"{'interrupted' if summary.interrupted else 'finished'} after {summary.seconds:.1f} s on a Ray "
          f"cluster of {summary.nodes} node{'s' if summary.nodes != 1 else ''}")
    return summary.returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _log_lines("aiq-search: ")
    try:
        return int(args.func(args) or 0)
    except AiqSearchError as exc:
        print(f"aiq-search: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aiq-search: interrupted", file=sys.stderr)
        return 130


def entry_point() -> NoReturn:
    """The ``aiq-search`` command: `main` in a process where Ctrl-C always lands (`aiq_search.worker._interrupt`)."""
    from aiq_search.worker import catch_ctrl_c

    catch_ctrl_c()
    sys.exit(main())

