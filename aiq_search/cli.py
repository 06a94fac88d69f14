"""The ``aiq-search`` command: parses arguments, calls the Python API, prints. No logic of its own."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from aiq_search import __version__
from aiq_search.errors import AiqSearchError


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
# run, worker, launch, status: aiq_search.study / aiq_search.workers


def _add_study_commands(sub: argparse._SubParsersAction) -> None:
    """Commands that create studies and work on them."""


# ----------------------------------------------------------------------------- results commands
# dashboard, plot, export, evaluate: aiq_search.dashboard / aiq_search.plots / aiq_search.export


def _add_results_commands(sub: argparse._SubParsersAction) -> None:
    """Commands that look at finished trials and take results away."""


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
