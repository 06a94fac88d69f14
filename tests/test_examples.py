"""The user-family example, end to end from the command line, as a user runs it: search a family of one's
own (examples/tiny_convnet) named by import path, export the best trial, evaluate it in a fresh process —
without touching aiq_search. Each step is its own process, so nothing is shared but files and PYTHONPATH."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "tiny_convnet"
STUDY = EXAMPLE / "digits-tiny-convnet.toml"


def aiq_search(*args: str, cwd: Path, pythonpath: list[Path]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath)}
    return subprocess.run([sys.executable, "-m", "aiq_search.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.mark.slow
def test_search_export_and_evaluate_a_user_family_in_fresh_processes(tmp_path: Path) -> None:
    with_example = [EXAMPLE, REPO]  # REPO: this checkout's aiq_search, whatever is installed
    ran = aiq_search("run", str(STUDY), "--n-trials", "2", "--device", "cpu", "--no-progress", cwd=tmp_path,
                     pythonpath=with_example)
    assert ran.returncode == 0, ran.stderr
    assert "digits-tiny-convnet: 2 complete" in ran.stdout

    exported = aiq_search("export", str(STUDY), "--out", "exported", cwd=tmp_path, pythonpath=with_example)
    assert exported.returncode == 0, exported.stderr
    (folder,) = (tmp_path / "exported").iterdir()
    spec = json.loads((folder / "architecture.json").read_text(encoding="utf-8"))
    assert spec["family"] == "tiny_convnet:tiny_convnet" and spec["kernel"] == 3

    evaluated = aiq_search("evaluate", str(folder), cwd=tmp_path, pythonpath=with_example)
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    assert evaluated.stdout.rstrip().endswith("all equal")

    # without the family's folder on PYTHONPATH: one line naming the family and how to make it importable
    missing = aiq_search("evaluate", str(folder), cwd=tmp_path, pythonpath=[REPO])
    assert missing.returncode == 2
    assert missing.stderr == (f"aiq-search: error: {folder / 'architecture.json'}: architecture family "
                              "'tiny_convnet:tiny_convnet': no module named 'tiny_convnet' can be imported; install "
                              "the package that provides it or put the folder that holds it on PYTHONPATH\n")


def test_the_readmes_enqueue_spec_ships_and_fits_the_quickstart(tmp_path: Path) -> None:
    """README: `aiq-search enqueue studies/quickstart.toml --spec examples/specs/lenet5-8-16-32.json`."""
    quickstart = (REPO / "studies" / "quickstart.toml").read_text(encoding="utf-8")
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "quickstart.toml").write_text(quickstart, encoding="utf-8")
    spec = REPO / "examples" / "specs" / "lenet5-8-16-32.json"
    created = aiq_search("create", "studies/quickstart.toml", cwd=tmp_path, pythonpath=[REPO])  # or its `run`
    assert created.returncode == 0, created.stderr
    queued = aiq_search("enqueue", "studies/quickstart.toml", "--spec", str(spec), cwd=tmp_path, pythonpath=[REPO])
    assert queued.returncode == 0, queued.stderr
    assert queued.stdout.startswith('quickstart: queued {"channels_0": 8, "channels_1": 16, "channels_2": 32')
