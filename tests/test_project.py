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


def _lower_bounds(pyproject: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / ".ci" / "lower_bounds.py"), str(pyproject)],
                          capture_output=True, text=True)


def test_lower_bounds_pin_every_dependency_but_torch(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\n'
                         'dependencies = ["a>=1.2,<2", "b[x] >= 0.3", "torch>=2.4,<3", "torchvision>=0.19"]\n'
                         '[project.optional-dependencies]\n'
                         'e = ["c>=4; python_version >= \'3.11\'"]\n')
    result = _lower_bounds(pyproject)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["a==1.2", "b==0.3", "c==4"]


def test_lower_bounds_refuse_a_dependency_without_one(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\ndependencies = ["a>=1", "b<2"]\n')
    result = _lower_bounds(pyproject)
    assert result.returncode == 1
    assert "'b<2'" in result.stderr and "no lower bound" in result.stderr


def test_ci_runs_the_fast_tests_on_the_lower_bounds() -> None:
    result = _lower_bounds(REPO / "pyproject.toml")
    assert result.returncode == 0, result.stderr
    pinned = dict(line.split("==") for line in result.stdout.splitlines())
    assert {"optuna", "optuna-dashboard", "pydantic", "sqlalchemy"} <= pinned.keys()
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"lower_bounds\.py >\"\$oldest/constraints\.txt\"", ci)
    assert re.search(r"pip\" install .*--constraint \"\$oldest/constraints\.txt\"", ci)
    assert '-m pytest -m "not slow"' in ci
