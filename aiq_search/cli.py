"""The ``aiq-search`` command: parses arguments, calls the Python API, prints. No logic of its own."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from aiq_search import __version__
from aiq_search.errors import AiqSearchError, ConfigError

if TYPE_CHECKING:
    import optuna

    from aiq_search.study import StudyStatus
    from aiq_search.studyfile import StudyFile


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aiq-search",
        description="Search neural architectures that are small and accurate, scored by aIQ.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_study_commands(sub)
    _add_results_commands(sub)
    return parser


# ----------------------------------------------------------------------------- study commands
# create, run, worker, launch, status: aiq_search.study / aiq_search.workers


def _add_study_commands(sub: argparse._SubParsersAction) -> None:
    """Commands that create studies and work on them."""
    p = sub.add_parser("create", help="create a study without running trials (before workers join)",
                       description="Create the study of STUDY.toml and record its settings, running no trial; "
                                   "'worker' processes on any machine can then join it.")
    p.add_argument("study_file", metavar="STUDY.toml")
    p.add_argument("--storage", metavar="URL", help="storage URL instead of the file's")
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

    p = sub.add_parser("launch", help="run N local worker processes on one study",
                       description="Start N 'aiq-search worker' processes on this machine, spread over the "
                                   "devices, CPU threads divided between them; Ctrl-C stops them cleanly.")
    p.add_argument("study_file", metavar="STUDY.toml")
    p.add_argument("--workers", type=_positive_int, required=True, metavar="N")
    p.add_argument("--devices", metavar="LIST",
                   help="comma-separated devices given out round-robin, e.g. cuda:0,cuda:1 (default: the file's)")
    _add_study_overrides(p)
    p.set_defaults(func=_cmd_launch)

    p = sub.add_parser("status", help="studies, trial counts by state and the best trials",
                       description="Show the study of STUDY.toml, or every study in --storage.")
    p.add_argument("study_file", nargs="?", metavar="STUDY.toml")
    p.add_argument("--storage", metavar="URL", help="a storage URL: every study in it (with STUDY.toml: its study)")
    p.add_argument("--top", type=_positive_int, default=5, metavar="K", help="best trials shown (default: 5)")
    p.set_defaults(func=_cmd_status)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def _add_study_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n-trials", type=_positive_int, metavar="N", help="COMPLETE trials the study ends with")
    p.add_argument("--timeout", type=_positive_float, metavar="S", help="start no trial after S seconds")
    p.add_argument("--storage", metavar="URL", help="storage URL instead of the file's (sqlite:///…, "
                                                    "postgresql+psycopg://user@host/db)")


def _add_work_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("study_file", metavar="STUDY.toml")
    _add_study_overrides(p)
    p.add_argument("--device", metavar="DEVICE", help="auto, cpu, cuda or cuda:N (default: the file's)")
    p.add_argument("--threads", type=_positive_int, metavar="T", help="CPU threads for torch (default: the file's)")
    p.add_argument("--no-progress", action="store_true", help="one line per trial, no live progress bar")


def _study_config(args: argparse.Namespace, *, device: str | None = None, threads: int | None = None) -> StudyFile:
    from aiq_search.studyfile import load_study_file

    return load_study_file(args.study_file).with_overrides(
        n_trials=args.n_trials, timeout=args.timeout, storage=args.storage, device=device, threads=threads)


def _work(args: argparse.Namespace, *, create: bool, worker_index: int, label: str | None) -> int:
    import optuna
    from rich.console import Console

    from aiq_search.study import run_study

    config = _study_config(args, device=args.device, threads=args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial comes from aiq_search instead
    summary = run_study(config, create=create, worker_index=worker_index, label=label, console=Console(),
                        progress_bar=not args.no_progress)
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(summary.counts.items()))
    prefix = f"[{label}] " if label else ""
    print(f"{prefix}{summary.study_name}: {counts} (target {summary.n_trials} complete); this process ran "
          f"{summary.ran} trials in {summary.seconds:.1f} s")
    if summary.best:
        best = summary.best[0]
        print(f"{prefix}best: trial {best.number}, aIQ {best.aiq:.4f}, accuracy {best.accuracy:.4f}, "
              f"{best.n_params:,} parameters")
    return 0


def _cmd_create(args: argparse.Namespace) -> int:
    from aiq_search.storage import redact
    from aiq_search.study import create_study
    from aiq_search.studyfile import load_study_file

    config = load_study_file(args.study_file).with_overrides(storage=args.storage)
    study = create_study(config)
    done = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
    print(f"{study.study_name}: ready in {redact(config.study.storage)} ({done} finished trials, target "
          f"{config.study.n_trials} complete)")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    return _work(args, create=True, worker_index=0, label=None)


def _cmd_worker(args: argparse.Namespace) -> int:
    import secrets

    # not the process id: in containers every worker is PID 1
    index = args.worker_index if args.worker_index is not None else secrets.randbelow(2**31)
    return _work(args, create=False, worker_index=index, label=f"worker {index}")


def _cmd_launch(args: argparse.Namespace) -> int:
    import optuna

    from aiq_search.workers import launch

    config = _study_config(args)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    options = [arg for name, value in (("--n-trials", args.n_trials), ("--timeout", args.timeout),
                                       ("--storage", args.storage)) if value is not None
               for arg in (name, str(value))]
    devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else None
    summary = launch(args.study_file, config, workers=args.workers, devices=devices, worker_options=options)
    for plan, code in zip(summary.plans, summary.returncodes, strict=True):
        print(f"worker {plan.index} ({plan.device}, {plan.threads} threads): exit status {code}")
    _print_status([summary.status], top=5)
    print(f"{'interrupted' if summary.interrupted else 'finished'} after {summary.seconds:.1f} s")
    return summary.returncode


def _cmd_status(args: argparse.Namespace) -> int:
    from aiq_search.study import study_status
    from aiq_search.studyfile import load_study_file

    if args.study_file is not None:
        config = load_study_file(args.study_file)
        statuses = study_status(args.storage or config.study.storage, config.study.name, top=args.top)
    elif args.storage is not None:
        statuses = study_status(args.storage, top=args.top)
    else:
        raise ConfigError("status needs a study file or --storage URL")
    _print_status(statuses, top=args.top)
    return 0


def _print_status(statuses: Sequence[StudyStatus], *, top: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not statuses:
        console.print("no studies in this storage")
    for status in statuses:
        counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(status.counts.items())) or "no trials"
        target = f", target {status.n_trials} complete" if status.n_trials is not None else ""
        console.print(f"[bold]{status.name}[/bold] ({status.mode} mode): {counts}{target}", highlight=False)
        if not status.best:
            continue
        table = Table(title=f"top {min(top, len(status.best))} by aIQ", title_justify="left")
        for column in ("trial", "aIQ", "accuracy", "parameters", "efficiency", "epochs"):
            table.add_column(column, justify="right")
        for row in status.best:
            table.add_row(str(row.number), f"{row.aiq:.4f}", f"{row.accuracy:.4f}", f"{row.n_params:,}",
                          f"{row.network_efficiency:.3f}", str(row.epochs))
        console.print(table)


# ----------------------------------------------------------------------------- results commands
# dashboard, plot, export, evaluate: aiq_search.dashboard / aiq_search.plots / aiq_search.export


def _add_results_commands(sub: argparse._SubParsersAction) -> None:
    """Commands that look at finished trials and take results away."""
    study_help = "a study file (STUDY.toml), or with --storage the name of a study in that storage"
    storage_help = ("storage URL (e.g. postgresql+psycopg://user@host/db) instead of the study file's; "
                    "STUDY may then be a study name")

    p = sub.add_parser("dashboard", help="serve optuna-dashboard on a study storage",
                       description="Serve optuna-dashboard (every aiq-search study shows its aIQ Pareto figure).")
    p.add_argument("study", nargs="?", metavar="STUDY.toml",
                   help="a study file: its storage, and its artifacts for the dashboard to offer")
    p.add_argument("--storage", metavar="URL", help="storage URL (instead of the study file's)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    p.set_defaults(func=_cmd_dashboard)

    p = sub.add_parser("plot", help="write a self-contained HTML report of a study",
                       description="Write one HTML page (plotly.js embedded: no network needed) with the "
                                   "Pareto front, efficiency, per-layer efficiency and aIQ history.")
    p.add_argument("study", metavar="STUDY", help=study_help)
    p.add_argument("--storage", metavar="URL", help=storage_help)
    p.add_argument("--out", metavar="FILE", type=Path, help="the HTML file (default: reports/<study>.html)")
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser("export", help="export trained trials: architecture, weights, metrics, ONNX",
                       description="Write one folder per exported trial with architecture.json, "
                                   "weights.safetensors (the trial's own weights, not retrained), metrics.json "
                                   "and, when onnx is installed, model.onnx.")
    p.add_argument("study", metavar="STUDY", help=study_help)
    p.add_argument("--storage", metavar="URL", help=storage_help)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--best", action="store_const", dest="which", const="best",
                       help="the trial with the best aIQ (the default)")
    which.add_argument("--pareto", action="store_const", dest="which", const="pareto",
                       help="every trial on the accuracy / parameter-count Pareto front")
    which.add_argument("--top", type=int, metavar="K", help="the K trials with the best aIQ")
    p.add_argument("--out", metavar="DIR", type=Path, required=True, help="output folder (must be empty)")
    p.add_argument("--force", action="store_true", help="write into a non-empty output folder, replacing "
                                                        "the exported trials' folders")
    p.add_argument("--artifacts", metavar="DIR", type=Path,
                   help="where the study's artifacts are on this machine (default: the folder it recorded)")
    p.set_defaults(func=_cmd_export, which="best")

    p = sub.add_parser("evaluate", help="reload an exported model and check its recorded numbers",
                       description="Rebuild an exported model, measure it again on the split it was scored "
                                   "on, and compare accuracy, efficiencies and aIQ with the recorded ones. "
                                   "Exit status 1 when any differs.")
    p.add_argument("dir", metavar="DIR", type=Path, help="a trial folder written by 'aiq-search export'")
    p.add_argument("--data-dir", metavar="DIR", help="data set folder (default: the recorded one, else "
                                                      "$AIQ_DATA_DIR, else the user cache)")
    p.add_argument("--device", default=None,
                   help="auto, cpu, cuda or cuda:N (default: the kind of device the trial was trained on, "
                        "when there is one here, else the CPU)")
    p.set_defaults(func=_cmd_evaluate)


def _open_study_arg(study: str, storage: str | None) -> optuna.Study:
    """STUDY on the command line: a study file (its storage unless --storage is given), or with --storage
    a study name in that storage."""
    from aiq_search.results import open_study
    from aiq_search.studyfile import load_study_file

    if storage is not None and not study.endswith(".toml"):
        return open_study(storage, study)
    config = load_study_file(study)
    return open_study(storage or config.study.storage, config.study.name)


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from aiq_search.dashboard import serve
    from aiq_search.studyfile import load_study_file

    if args.study is None:
        if args.storage is None:
            raise ConfigError("give a study file or --storage URL")
        serve(args.storage, host=args.host, port=args.port)
    else:
        config = load_study_file(args.study)
        serve(args.storage or config.study.storage, host=args.host, port=args.port,
              artifacts=config.study.artifacts)
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from aiq_search.plots import write_report

    study = _open_study_arg(args.study, args.storage)
    out = args.out or Path("reports") / f"{study.study_name}.html"
    print(write_report(study, out))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from aiq_search.export import export_trials, onnx_available

    study = _open_study_arg(args.study, args.storage)
    if not onnx_available():
        print("aiq-search: no model.onnx: the export extra is not installed (pip install 'aiq-search[export]')",
              file=sys.stderr)
    which = "top" if args.top is not None else args.which
    for folder in export_trials(study, args.out, which=which, k=args.top or 1, force=args.force,
                                artifacts=args.artifacts):
        print(folder)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from aiq_search.export import evaluate

    result = evaluate(args.dir, data_dir=args.data_dir, device=args.device)
    print(f"trial #{result['trial']} of {result['study']}, {result['split']} split of {result['dataset']} "
          f"on {result['device']}")
    print(f"{'':24} {'recorded':>20} {'measured':>20}")
    for name, (recorded, measured) in result["compared"].items():
        mark = "" if recorded == measured else "   DIFFERS"
        print(f"{name:24} {recorded!s:>20} {measured!s:>20}{mark}")
    print("all equal" if result["equal"] else "some numbers differ from the recorded ones")
    return 0 if result["equal"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AiqSearchError as exc:
        print(f"aiq-search: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aiq-search: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
