"""The shipped examples of one's own data, run as the README says: make the data, run a short study, and
export + evaluate its best trial; a data error reaches the command line as one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aiq_search.cli import main
from aiq_search.data import load_dataset
from aiq_search.studyfile import load_study_file

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def make_data(example: str, cwd: Path) -> None:
    """``python examples/<example>/make_data.py`` run from ``cwd``, writing under ``cwd/examples/...``."""
    subprocess.run([sys.executable, str(EXAMPLES / example / "make_data.py")], cwd=cwd, check=True,
                   capture_output=True, timeout=120)


@pytest.mark.slow
def test_image_folder_example_runs_exports_and_evaluates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    make_data("image_folder", tmp_path)
    monkeypatch.chdir(tmp_path)
    study = str(EXAMPLES / "image_folder" / "study.toml")
    assert main(["run", study, "--n-trials", "2", "--no-progress"]) == 0
    assert "shapes: 2 complete" in capsys.readouterr().out
    assert (tmp_path / "examples" / "image_folder" / "shapes" / ".aiq-search-cache-16x16-grayscale.pt").is_file()
    assert main(["export", study, "--best", "--out", "exports"]) == 0
    [trial] = sorted((tmp_path / "exports").glob("trial-*"))
    capsys.readouterr()
    assert main(["evaluate", str(trial)]) == 0, capsys.readouterr()


@pytest.mark.slow
def test_arrays_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    make_data("arrays", tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(EXAMPLES / "arrays" / "study.toml"), "--n-trials", "2", "--no-progress"]) == 0
    assert "blobs: 2 complete" in capsys.readouterr().out


def test_arrays_example_without_its_data_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(EXAMPLES / "arrays" / "study.toml"), "--no-progress"]) == 2
    assert capsys.readouterr().err == (f"aiq-search: error: arrays: no file {tmp_path / 'examples/arrays/blobs.npz'}\n")


def test_custom_loader_example_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES / "custom_loader"))
    config = load_study_file(EXAMPLES / "custom_loader" / "study.toml")
    splits = load_dataset(config.data.dataset, val_size=config.data.val_size, **config.data.options)
    assert splits.input_shape == (13, 1, 1) and splits.num_classes == 3
    assert len(splits.train_y) + len(splits.val_y) + len(splits.test_y) == 178
