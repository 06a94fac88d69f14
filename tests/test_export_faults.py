"""export, evaluate and compare given bad input: each refusal is one line on stderr with exit status 2 (evaluate:
1 only for a real mismatch), never a traceback, and a refused command creates nothing.

The study is test_export's: one COMPLETE trial of an untrained LeNet-300 whose numbers are measured for real
on digits (no training), copied under other names or with other architecture records.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
import test_export
import torch
from optuna.trial import TrialState, create_trial

from aiq_search.cli import main
from aiq_search.export import write_manifest
from aiq_search.integration import AiqTrial, load_study_data, prepare_study
from aiq_search.reproduction import compare

REPO = Path(__file__).resolve().parents[1]
# test_export's fixtures, reused: its one-trial untrained study (module-scoped) and a copy of its export to damage
untrained, copy_of = test_export.untrained, test_export.copy_of


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def _refused(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a refused command printed (nothing on stdout, no traceback)."""
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("aiq-search: error: ") and err.count("\n") == 1, out + err
    assert "Traceback" not in err
    return err


def _variant(untrained: tuple[optuna.Study, str, Path], name: str, **attrs: Any) -> None:
    """A study named ``name`` in the same storage holding the untrained trial with ``attrs`` replaced."""
    study, storage, _ = untrained
    (trial,) = study.trials
    copy = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    copy.set_user_attr("aiq_search", study.user_attrs["aiq_search"])
    copy.add_trial(create_trial(state=TrialState.COMPLETE, value=trial.value, user_attrs={**trial.user_attrs, **attrs}))


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A module on the import path, uniquely named, that leaves a marker file when imported and holds the
    lenet300 family as ``Net``: what an architecture record from someone else could name."""
    name, marker = f"someone_{uuid.uuid4().hex[:8]}", tmp_path / "imported"
    folder = tmp_path / "modules"
    folder.mkdir()
    (folder / f"{name}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
        "from aiq_search.families import get_family\nNet = type(get_family('lenet300'))\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    return name, marker


# --------------------------------------------------------------------------- export


@pytest.mark.parametrize("name", ["../../x", "/{tmp}/abs/x"])
def test_a_study_name_never_chooses_where_files_go(untrained, tmp_path: Path, monkeypatch, name: str,
                                                   capsys) -> None:
    name = name.format(tmp=tmp_path.as_posix().lstrip("/"))
    _variant(untrained, name)
    cwd = tmp_path / "work" / "here"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    before = _tree(tmp_path)
    assert main(["export", name, "--storage", untrained[1]]) == 0  # into exports/<the name made safe>, as plot
    capsys.readouterr()
    (folder,) = (cwd / "exports").iterdir()
    assert not folder.name.startswith(".") and (folder / "trial-0000" / "manifest.json").is_file()
    assert {p for p in _tree(tmp_path) - before if not p.startswith("work/here/exports")} == set()


GARBAGE = {
    "a list": ([{"family": "lenet300"}], "must be a JSON object, got list"),
    "a string": ("lenet300", "must be a JSON object, got str"),
    "a number as family": ({"family": 7}, "named by a string"),
    "too wide": ({"family": "lenet300", "input_shape": [1, 8, 8], "num_classes": 10, "widths": [10**9],
                  "batch_norm": False, "dropout": 0.0}, "widths"),
    "a plain nn.Module's record": ({"model": "my_models.Net"}, "build_model"),
}


@pytest.mark.parametrize("case", GARBAGE, ids=list(GARBAGE))
def test_a_garbage_architecture_record_is_refused_before_any_folder(untrained, tmp_path: Path, case: str,
                                                                    capsys) -> None:
    architecture, message = GARBAGE[case]
    name = f"garbage-{uuid.uuid4().hex[:6]}"
    _variant(untrained, name, architecture=architecture)
    out = tmp_path / "o" / "exported"
    assert main(["export", name, "--storage", untrained[1], "--out", str(out)]) == 2
    assert not (tmp_path / "o").exists()
    err = _refused(capsys)
    assert "trial 0 cannot be exported: its recorded architecture: " in err and message in err


def test_missing_weights_leave_no_folder(untrained, tmp_path: Path, capsys) -> None:
    name = f"lost-{uuid.uuid4().hex[:6]}"
    _variant(untrained, name, weights_artifact_id="gone")
    assert main(["export", name, "--storage", untrained[1], "--out", str(tmp_path / "o" / "x")]) == 2
    assert "its weights (artifact gone) are not in" in _refused(capsys)
    assert not (tmp_path / "o").exists()


def test_a_plain_module_trial_of_an_own_loop_says_what_to_do(tmp_path: Path, capsys) -> None:
    study = optuna.create_study(study_name="own", storage=f"sqlite:///{tmp_path / 'own.db'}", direction="maximize")
    prepare_study(study, artifacts=tmp_path / "artifacts", dataset="digits")
    data = load_study_data(study)
    trial = study.ask()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 8), torch.nn.ReLU(), torch.nn.Linear(8, 10))
    with AiqTrial(trial, model) as aiq:  # no family spec: records the model's class
        with aiq.probe() as probe, torch.no_grad():
            accuracy = int((model(data.val_x).argmax(1) == data.val_y).sum()) / len(data.val_y)
        study.tell(trial, aiq.finish(accuracy, probe.report(), test_accuracy=accuracy, epochs=0))
    out = tmp_path / "exported"
    assert main(["export", "own", "--storage", f"sqlite:///{tmp_path / 'own.db'}", "--out", str(out)]) == 2
    err = _refused(capsys)
    assert "not a family's spec" in err and "build_model" in err and not out.exists()


def test_export_imports_no_untrusted_module(untrained, tmp_path: Path, monkeypatch, capsys) -> None:
    module, marker = _module(tmp_path, monkeypatch)
    spec = {**untrained[0].trials[0].user_attrs["architecture"], "family": f"{module}:Net"}
    name = f"foreign-{uuid.uuid4().hex[:6]}"
    _variant(untrained, name, architecture=spec)
    out = tmp_path / "exported"
    assert main(["export", name, "--storage", untrained[1], "--out", str(out)]) == 2
    assert f"--trust-module {module}" in _refused(capsys)
    assert not marker.exists() and not out.exists()
    assert main(["export", name, "--storage", untrained[1], "--out", str(out), "--trust-module", module]) == 0
    assert marker.exists() and (out / "trial-0000" / "manifest.json").is_file()


# --------------------------------------------------------------------------- evaluate


def _link_out(name: str):
    def damage(folder: Path) -> None:
        outside = folder.parent / f"outside-{name}"
        shutil.move(folder / name, outside)
        (folder / name).symlink_to(outside)
    return damage


def _nested(folder: Path) -> None:
    (folder / "architecture.json").write_text("[" * 100_000 + "]" * 100_000)


UNUSABLE = {
    "weights a link out of the folder": (_link_out("weights.safetensors"), "is a link, not a file of the export"),
    "architecture a link out of the folder": (_link_out("architecture.json"), "is a link, not a file of the export"),
    "architecture nested without end": (_nested, "nested too deeply"),
}


@pytest.mark.parametrize("case", UNUSABLE, ids=list(UNUSABLE))
def test_evaluate_refuses_unusable_folders_in_one_line(copy_of: Path, case: str, capsys) -> None:
    damage, message = UNUSABLE[case]
    damage(copy_of)
    write_manifest(copy_of)  # resealed: the files themselves are what is wrong
    assert main(["evaluate", str(copy_of)]) == 2
    assert message in _refused(capsys)


def test_evaluate_never_says_all_equal_without_checking_model_onnx(copy_of: Path, monkeypatch, capsys) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime"
                        else find_spec(name, *a))  # as where the export extra is not installed
    (copy_of / "model.onnx").write_bytes(b"garbage")
    write_manifest(copy_of)
    assert main(["evaluate", str(copy_of)]) == 2
    assert "model.onnx cannot be checked: onnxruntime is not installed" in _refused(capsys)


def test_evaluate_imports_no_untrusted_module(copy_of: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    module, marker = _module(tmp_path, monkeypatch)
    spec = json.loads((copy_of / "architecture.json").read_text())
    (copy_of / "architecture.json").write_text(json.dumps({**spec, "family": f"{module}:Net"}))
    write_manifest(copy_of)
    assert main(["evaluate", str(copy_of)]) == 2
    assert f"allow it with --trust-module {module}" in _refused(capsys) and not marker.exists()
    assert main(["evaluate", str(copy_of), "--trust-module", module]) == 0
    assert marker.exists() and capsys.readouterr().out.rstrip().endswith("all equal")


def test_the_evaluate_table_aligns_long_names_and_shows_no_negative_zero(copy_of: Path, capsys) -> None:
    long = "a.very.long.layer.name.deep.inside.some.network"
    metrics = json.loads((copy_of / "metrics.json").read_text())
    metrics["layer_efficiencies"][long] = -0.0
    (copy_of / "metrics.json").write_text(json.dumps(metrics))
    write_manifest(copy_of)
    assert main(["evaluate", str(copy_of)]) == 1  # the extra layer is a real mismatch
    lines = capsys.readouterr().out.splitlines()
    assert "-0.0" not in "\n".join(lines)
    onnx = next(i for i, line in enumerate(lines) if line.startswith("model.onnx in onnxruntime"))
    assert "tolerance 0.0001 × max(1, largest |logit| " in lines[onnx]
    header, rows = lines[1], lines[2:onnx]
    assert len(rows) == 8 and any(row.startswith(f"efficiency {long} ") for row in rows)
    edges = [header.index("recorded") + len("recorded"), header.index("measured") + len("measured")]
    for row in rows:  # every value ends where its column's title ends
        assert all(row[edge - 1] != " " and row[edge:edge + 1] in ("", " ") for edge in edges), (row, edges)


# --------------------------------------------------------------------------- compare


@pytest.mark.parametrize("content", [None, "[study\nname = "], ids=["missing", "not TOML"])
def test_compare_refuses_a_bad_study_file_and_writes_nothing(write_study, tmp_path: Path, content: str | None,
                                                             capsys) -> None:
    good, bad = write_study(), tmp_path / "bad.toml"
    if content is not None:
        bad.write_text(content)
    before = _tree(tmp_path)
    assert main(["compare", str(good), str(bad), "--out", str(tmp_path / "r" / "report.md")]) == 2
    assert str(bad) in _refused(capsys)
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("where", ["/proc/aiq-search", "{tmp}/file"])
def test_compare_into_an_unwritable_place_is_one_line_and_creates_nothing(write_study, tmp_path: Path,
                                                                          where: str, capsys) -> None:
    (tmp_path / "file").write_text("")
    study = write_study()
    before = _tree(tmp_path)
    out = Path(where.format(tmp=tmp_path)) / "docs" / "report.md"
    assert main(["compare", str(study), "--out", str(out)]) == 2
    assert f"cannot write the report to {out}" in _refused(capsys)
    assert _tree(tmp_path) == before and not out.parent.parent.is_dir()


def test_compare_elsewhere_reads_the_committed_summaries(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(REPO)  # the committed summaries are docs/reproduction/*.json, beside the default report
    study = "studies/paper/lenet300-noise00.toml"
    before = _tree(REPO / "docs")
    result = compare([study], tmp_path / "report.md", seeds=1)
    assert result.missing == []
    assert json.loads((tmp_path / "report" / "paper-lenet300-noise00.json").read_text()) == json.loads(
        (REPO / "docs" / "reproduction" / "paper-lenet300-noise00.json").read_text())
    assert _tree(REPO / "docs") == before
