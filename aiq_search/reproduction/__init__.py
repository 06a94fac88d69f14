"""``aiq-search compare``: the paper's findings reproduced from finished studies, as one markdown report with
SVG figures and a JSON summary of each study beside it (so the report can be rebuilt without the studies'
SQLite files and weights).

    compare(["studies/paper/lenet300-grid.toml", ...], "docs/reproduction.md")

writes ``docs/reproduction.md``, ``docs/reproduction/<figure>.svg`` and ``docs/reproduction/<study>.json``.
A study that has not run (and has no summary) is listed as not run; the report holds what finished.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiq_search.errors import AiqSearchError, ConfigError
from aiq_search.reproduction._findings import Findings, find
from aiq_search.reproduction._markdown import render
from aiq_search.reproduction._summaries import NotRun, summary_for
from aiq_search.studyfile import load_study_section

__all__ = ["DEFAULT_OUT", "CompareResult", "compare"]

# where the report is committed; its summaries (docs/reproduction/*.json) serve any --out too
DEFAULT_OUT = Path("docs/reproduction.md")


def _workers(study_file: str) -> int:
    """Workers for the rebuild commands: 2 for a grid, 1 for a sequential search (TPE learns from each trial)."""
    try:
        return 2 if load_study_section(study_file).sampler == "grid" else 1
    except AiqSearchError:
        return 1


@dataclass(frozen=True)
class CompareResult:
    """What `compare` wrote and which study files it could not report."""

    report: Path
    findings: Findings
    missing: list[tuple[str, str]]


def compare(study_files: Sequence[str | Path], out: str | Path | None = None, *, folder: str | Path | None = None,
            seeds: int = 20) -> CompareResult:
    """Write the reproduction report ``out`` (default `DEFAULT_OUT`) from ``study_files``; figures and
    summaries go to ``folder`` (default: ``out`` without its suffix). A study whose storage is absent is read
    from its summary there, else from the one committed beside the default report. ``seeds``: how many TPE
    replays the search section runs. A study file that cannot be read, a summary that is not one, or an
    ``out`` that cannot be written is one `AiqSearchError` line, and then nothing is written."""
    out = Path(out) if out is not None else DEFAULT_OUT
    folder = Path(folder) if folder is not None else out.with_suffix("")
    for file in study_files:  # a missing or broken study file is refused, not reported as not run
        load_study_section(file)
    if out.is_dir():
        raise ConfigError(f"{out} is a folder; name the markdown file to write")
    summaries, missing, to_write = [], [], {}
    for file in study_files:
        try:
            summary, source = summary_for(file, folder, committed=DEFAULT_OUT.with_suffix(""))
        except NotRun as exc:
            missing.append((Path(file).as_posix(), str(exc).split(": ", 1)[-1]))
            continue
        summaries.append(summary)
        path = folder / f"{summary['study']}.json"
        if source is None or source.resolve() != path.resolve():  # new, or committed elsewhere: kept beside
            to_write[path] = summary
    findings = find(summaries)
    files = [Path(f).as_posix() for f in study_files]
    commands = ["export AIQ_DATA_DIR=/path/to/data",
                *(f"aiq-search launch {f} --workers {_workers(f)}" for f in files),
                f"aiq-search compare {' '.join(files)} --out {out.as_posix()}"]
    created = [p for p in (_outermost_missing(folder), _outermost_missing(out.parent)) if p is not None]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for path, summary in to_write.items():
            path.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        text = render(findings, out, folder, missing=missing, commands=commands, seeds=seeds)
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        for path in created:
            shutil.rmtree(path, ignore_errors=True)
        raise ConfigError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    return CompareResult(out, findings, missing)


def _outermost_missing(path: Path) -> Path | None:
    """The outermost folder on ``path`` that does not exist: what mkdir(parents=True) creates."""
    return next((p for p in reversed([path, *path.parents]) if not p.exists()), None)
