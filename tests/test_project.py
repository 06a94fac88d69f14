"""The project's own promises: the CLI lists its commands, and CI runs exactly the README's test command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from aiq_search.cli import main

REPO = Path(__file__).resolve().parent.parent
COMMANDS = ("create", "run", "worker", "launch", "status", "dashboard", "plot", "export", "evaluate")


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\b", out, re.MULTILINE), f"{command} missing from --help"


def test_console_script_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "aiq_search.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("aiq-search ")


def test_unknown_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def _readme_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    return [line.strip() for block in re.findall(r"```bash\n(.*?)```", readme, re.DOTALL)
            for line in block.splitlines() if line.startswith("python3 -m venv")]


def test_ci_runs_the_readme_test_command() -> None:
    setup_and_run, setup_and_test = _readme_commands()[:2]
    assert setup_and_run.endswith("aiq-search run studies/quickstart.toml")
    assert setup_and_test.endswith("python -m pytest")
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert setup_and_test in [line.strip() for line in ci]
