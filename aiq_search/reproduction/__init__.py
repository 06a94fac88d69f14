"""``aiq-search compare``: the paper's findings reproduced from finished studies, as one markdown report with
SVG figures and a JSON summary of each study beside it (so the report can be rebuilt without the studies'
SQLite files and weights).

    compare(["studies/paper/lenet300-grid.toml", ...], "docs/reproduction.md")

writes ``docs/reproduction.md``, ``docs/reproduction/<figure>.svg`` and ``docs/reproduction/<study>.json``.
A study that has not run (and has no summary) is listed as not run; the report holds what finished.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiq_search.errors import AiqSearchError
from aiq_search.reproduction._findings import Findings, find
from aiq_search.reproduction._markdown import render
from aiq_search.reproduction._summaries import summary_for
from aiq_search.studyfile import load_study_section

__all__ = ["CompareResult", "compare"]


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


def compare(study_files: Sequence[str | Path], out: str | Path, *, folder: str | Path | None = None,
            seeds: int = 20) -> CompareResult:
    """Write the reproduction report ``out`` from ``study_files``; figures and summaries go to ``folder``
    (default: ``out`` without its suffix). ``seeds``: how many TPE replays the search section runs."""
    out = Path(out)
    folder = Path(folder) if folder is not None else out.with_suffix("")
    summaries, missing = [], []
    for file in study_files:
        try:
            summaries.append(summary_for(file, folder))
        except AiqSearchError as exc:
            missing.append((Path(file).as_posix(), str(exc).split(": ", 1)[-1]))
    findings = find(summaries)
    files = [Path(f).as_posix() for f in study_files]
    commands = ["export AIQ_DATA_DIR=/path/to/data",
                *(f"aiq-search launch {f} --workers {_workers(f)}" for f in files),
                f"aiq-search compare {' '.join(files)} --out {out.as_posix()}"]
    text = render(findings, out, folder, missing=missing, commands=commands, seeds=seeds)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return CompareResult(out, findings, missing)
