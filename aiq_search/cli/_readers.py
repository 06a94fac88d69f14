"""The ``aiq-search`` commands that read studies: status, enqueue, dashboard, plot, export, evaluate.

Every command that reads a study names it the same ways: a study file (``STUDY.toml``: its storage and
name), or a study name with ``--storage URL``; ``--study-name`` (Optuna's spelling) names the study too, and
``--storage`` overrides a file's storage. Only the file's ``[study]`` table is read, so these commands start
without importing torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from aiq_search.errors import ConfigError
from aiq_search.study import TOP_DEFAULT

if TYPE_CHECKING:
    import optuna

    from aiq_search.readers import StudyStatus

__all__ = ["add_reader_commands", "positive_int", "print_status"]


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_study_arguments(p: argparse.ArgumentParser, *, optional: bool = False) -> None:
    p.add_argument("study", nargs="?" if optional else None, metavar="STUDY",
                   help="a study file (STUDY.toml), or with --storage the name of a study in that storage")
    p.add_argument("--storage", metavar="URL", help="storage URL (e.g. sqlite:///runs/x.db, "
                                                    "postgresql+psycopg://user@host/db) instead of the file's")
    p.add_argument("--study-name", metavar="NAME", help="the study's name (instead of STUDY or the file's)")


def _is_study_file(study: str) -> bool:
    return study.endswith(".toml") or Path(study).is_file()


def _study_ref(args: argparse.Namespace) -> tuple[str, str | None, str | None]:
    """(storage URL, study name or None, artifacts folder or None) from STUDY, --storage and --study-name."""
    if args.study is not None and _is_study_file(args.study):
        from aiq_search.studyfile import load_study_section

        section = load_study_section(args.study)
        return args.storage or section.storage, args.study_name or section.name, section.artifacts
    if args.storage is None:
        raise ConfigError(f"{args.study!r} is no study file; name a study file, or a study with --storage URL"
                          if args.study is not None else "give a study file, or --storage URL")
    return args.storage, args.study_name or args.study, None


def _open_study(args: argparse.Namespace) -> optuna.Study:
    from aiq_search.study import open_study

    storage, name, _ = _study_ref(args)
    if name is None:
        raise ConfigError("name the study: a study file, a study name with --storage, or --study-name")
    return open_study(storage, name)


def add_reader_commands(sub: argparse._SubParsersAction) -> None:
    """Commands that look at studies and take results away."""
    p = sub.add_parser("status", help="studies, trial counts by state and the best trials",
                       description="Show a study (its trials by state and the best by aIQ, with their "
                                   "architecture), or every study in --storage.")
    _add_study_arguments(p, optional=True)
    p.add_argument("--top", type=positive_int, default=TOP_DEFAULT, metavar="K",
                   help=f"best trials shown (default: {TOP_DEFAULT})")
    p.add_argument("--json", action="store_true", help="print JSON, for scripts")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("enqueue", help="queue a known architecture, so a search starts from it",
                       description="Queue an architecture spec (JSON, as architecture.json holds it) as the "
                                   "study's next trial (Optuna's enqueue_trial); it must lie in the study's "
                                   "search space.")
    p.add_argument("study", metavar="STUDY.toml", help="the study file (its search space is checked)")
    p.add_argument("--spec", metavar="FILE.json", type=Path, required=True, help="the architecture spec")
    p.add_argument("--storage", metavar="URL", help="storage URL instead of the file's")
    p.add_argument("--study-name", metavar="NAME", help="the study's name instead of the file's")
    p.set_defaults(func=_cmd_enqueue)

    p = sub.add_parser("dashboard", help="serve optuna-dashboard on a study storage",
                       description="Serve optuna-dashboard (every aiq-search study shows its aIQ Pareto figure).")
    _add_study_arguments(p, optional=True)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 for every interface, "
                        "then read-only unless --allow-writes)")
    p.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    p.add_argument("--allow-writes", action="store_true",
                   help="let a dashboard reachable from other machines change studies (notes, deleting "
                        "studies...); it has no login, so anyone who reaches it could (default: only on 127.0.0.1)")
    p.set_defaults(func=_cmd_dashboard)

    p = sub.add_parser("plot", help="write a self-contained HTML report of a study",
                       description="Write one HTML page (plotly.js embedded: no network needed) with the "
                                   "best trials by aIQ and figures of the Pareto front, efficiency, per-layer "
                                   "efficiency and aIQ history.")
    _add_study_arguments(p)
    p.add_argument("--out", metavar="FILE", type=Path, help="the HTML file (default: reports/<study>.html)")
    p.add_argument("--top", type=positive_int, default=10, metavar="K",
                   help="trials in the table of the best by aIQ (default: 10)")
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser("compare", help="reproduce the paper's findings from finished studies (markdown)",
                       description="Write a markdown report of the paper's findings (Schaub & Hotaling 2020) "
                                   "from the given study files, next to the paper's numbers, with SVG figures "
                                   "and a JSON summary of each study in a folder beside it; a study whose "
                                   "storage is absent is read from its summary there.")
    p.add_argument("studies", nargs="+", metavar="STUDY.toml")
    p.add_argument("--out", metavar="FILE", type=Path,
                   help="the markdown file (default: docs/reproduction.md; figures and summaries go to the "
                        "folder of the same name without .md; summaries committed in docs/reproduction/ "
                        "serve any --out)")
    p.add_argument("--seeds", type=positive_int, default=20, metavar="N",
                   help="TPE replays of the search-efficiency benchmark (default: 20)")
    p.set_defaults(func=_cmd_compare)

    def trust(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("--trust-module", metavar="NAME", action="append", default=[], dest="trust_modules",
                       help=f"let a family that {what} by import path import module NAME (and its "
                            "submodules), which runs its code; repeat for more (default: only built-in and "
                            "installed families, and modules already imported)")

    p = sub.add_parser("export", help="export trained trials: architecture, weights, metrics, ONNX",
                       description="Write one folder per exported trial with architecture.json, input.json "
                                   "(the raw input format and the normalization the model applies itself), "
                                   "weights.safetensors (the trial's own weights, not retrained), metrics.json, "
                                   "model.onnx (raw inputs; when the export extra is installed) and "
                                   "manifest.json (sizes and SHA-256, written last).")
    _add_study_arguments(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--best", action="store_const", dest="which", const="best",
                       help="the trial with the best aIQ (the default)")
    which.add_argument("--pareto", action="store_const", dest="which", const="pareto",
                       help="every trial on the accuracy / parameter-count Pareto front")
    which.add_argument("--top", type=positive_int, metavar="K", help="the K trials with the best aIQ")
    p.add_argument("--out", metavar="DIR", type=Path, help="output folder, empty or new (default: exports/<study>)")
    p.add_argument("--force", action="store_true", help="write into a non-empty output folder, replacing "
                                                        "the exported trials' folders")
    p.add_argument("--artifacts", metavar="DIR",  # not a Path: that would turn s3://b/p into s3:/b/p
                   help="where the study's artifacts are on this machine, or s3://bucket/prefix (default: "
                        "where it recorded them)")
    trust(p, "the trials' architectures name")
    p.set_defaults(func=_cmd_export, which="best")

    p = sub.add_parser("evaluate", help="reload an exported model and check its recorded numbers",
                       description="Rebuild an exported model, feed it the data set's raw inputs as a user "
                                   "would, and compare accuracy, efficiencies and aIQ with the recorded ones; "
                                   "model.onnx, when there, must predict the same in onnxruntime. Exit status "
                                   "1 when a number differs, 2 when the folder or its files are unusable.")
    p.add_argument("dir", metavar="DIR", type=Path, help="a trial folder written by 'aiq-search export'")
    p.add_argument("--data-dir", metavar="DIR", help="data set folder (default: the recorded one, else "
                                                      "$AIQ_DATA_DIR, else the user cache)")
    p.add_argument("--device", default=None,
                   help="auto, cpu, cuda or cuda:N (default: the kind of device the trial was trained on, "
                        "when there is one here, else the CPU)")
    trust(p, "architecture.json names")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_status(args: argparse.Namespace) -> int:
    from aiq_search.readers import study_status

    storage, name, _ = _study_ref(args)
    statuses = study_status(storage, name, top=args.top)
    if args.json:
        print(json.dumps([status.as_dict() for status in statuses], indent=2))
    else:
        print_status(statuses, top=args.top)
    return 0


def print_status(statuses: Sequence[StudyStatus], *, top: int) -> None:
    """Each study's trials by state, its best trials as a table fitted to the terminal (short headers, one
    line a trial, the architecture cut with an ellipsis, fewer columns below 100 columns), then the best
    trials' warnings, the trials whose aIQ a dead layer zeroed and why trials failed."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    narrow = console.width < 100
    if not statuses:
        console.print("no studies in this storage")
    for status in statuses:
        counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(status.counts.items())) or "no trials"
        target = f", target {status.n_trials} complete" if status.n_trials is not None else ""
        console.print(f"[bold]{status.name}[/bold] ({status.mode} mode): {counts}{target}", highlight=False)
        if status.best:
            table = Table(title=f"top {min(top, len(status.best))} by aIQ", title_justify="left",
                          box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, caption_justify="left",
                          caption="acc.: accuracy (eval split), eff.: network efficiency"
                                  + ("" if narrow else ", ep.: epochs"))
            columns = ["#", "aIQ", "acc.", *([] if narrow else ["test acc."]), "params", "eff.",
                       *([] if narrow else ["ep."])]
            rows = []
            for row in status.best:
                test = "–" if row.test_accuracy is None else f"{row.test_accuracy:.4f}"
                rows.append([str(row.number), f"{row.aiq:.4f}", f"{row.accuracy:.4f}", *([] if narrow else [test]),
                             f"{row.n_params:,}", f"{row.network_efficiency:.3f}",
                             *([] if narrow else [str(row.epochs)])])
            widths = [max(len(column), *(len(cells[i]) for cells in rows)) for i, column in enumerate(columns)]
            for column, width in zip(columns, widths, strict=True):
                table.add_column(column, justify="right", no_wrap=True, width=width)
            # numbers are never cut: the architecture takes the rest of the line (3 characters between columns,
            # and one to spare: rich before 13.3 pads the table's edge even with pad_edge=False)
            rest = max(12, console.width - sum(widths) - 3 * len(widths) - 1)
            table.add_column("architecture", no_wrap=True, width=rest)
            for cells, row in zip(rows, status.best, strict=True):
                table.add_row(*cells, row.architecture if len(row.architecture) <= rest
                              else row.architecture[:rest - 1] + "…")
            console.print(table)
        for row in status.best:
            for warning in row.warnings:
                console.print(f"#{row.number} warning: {warning}", highlight=False, markup=False)
        for row in status.dead:
            console.print(f"#{row.number}: aIQ 0, dead layers (efficiency 0): {', '.join(row.dead_layers)}",
                          highlight=False, markup=False)
        for row in status.failed:
            console.print(f"#{row.number} failed: {row.fail_reason}", highlight=False, markup=False)


def _cmd_enqueue(args: argparse.Namespace) -> int:
    from aiq_search.study import enqueue_spec, open_study
    from aiq_search.studyfile import load_study_file

    config = load_study_file(args.study).with_overrides(storage=args.storage, study_name=args.study_name)
    try:
        spec = json.loads(args.spec.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{args.spec}: cannot read a JSON spec: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{args.spec}: the JSON is nested too deeply to be a spec") from None
    study = open_study(config.study.storage, config.study.name)
    params = enqueue_spec(study, config, spec)
    print(f"{study.study_name}: queued {json.dumps(params)}")
    return 0


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from aiq_search.readers import serve

    storage, _, artifacts = _study_ref(args)
    allow_writes = True if args.allow_writes else None  # else: only on the loopback address
    serve(storage, host=args.host, port=args.port, artifacts=artifacts, allow_writes=allow_writes)
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from aiq_search.readers import safe_filename, write_report

    study = _open_study(args)
    out = args.out or Path("reports") / f"{safe_filename(study.study_name)}.html"
    try:
        print(write_report(study, out, top=args.top))
    except OSError as exc:
        raise ConfigError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from aiq_search.reproduction import compare

    result = compare(args.studies, args.out, seeds=args.seeds)
    for file, why in result.missing:
        print(f"{file}: not in the report: {why}", file=sys.stderr)
    print(result.report)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from aiq_search.export import default_out_dir, export_trials, onnx_available

    study = _open_study(args)
    which = "top" if args.top is not None else args.which
    out = args.out or default_out_dir(study.study_name)
    folders = export_trials(study, out, which=which, k=args.top or 1, force=args.force, artifacts=args.artifacts,
                            trust_modules=args.trust_modules)
    if not onnx_available():
        print("aiq-search: no model.onnx: the export extra is not installed (pip install 'aiq-search[export]')",
              file=sys.stderr)
    for folder in folders:
        print(folder)
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from aiq_search.export import verify_export

    result = verify_export(args.dir, data_dir=args.data_dir, device=args.device, trust_modules=args.trust_modules)
    print("\n".join(result.lines()))
    return 0 if result.equal else 1
