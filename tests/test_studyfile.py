"""Study files: the shipped ones load; every kind of mistake is one line naming file, field and what is allowed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from aiq_search.errors import ConfigError
from aiq_search.families import Choice
from aiq_search.studyfile import load_study_file

STUDIES = Path(__file__).resolve().parent.parent / "studies"


@pytest.mark.parametrize("name", ["quickstart.toml", "mnist-lenet300.toml", "mnist-lenet5.toml",
                                  "digits-resnet.toml"])
def test_shipped_study_files_load(name: str) -> None:
    config = load_study_file(STUDIES / name)
    assert config.study.storage.startswith("sqlite:///")  # embedded by default: nothing to start
    assert isinstance(config.search.space(), dict)
    record = config.record()
    assert record["study"]["name"] == config.study.name
    assert record["search"]["family"] == config.search.family


def test_quickstart_is_small_and_offline() -> None:
    config = load_study_file(STUDIES / "quickstart.toml")
    assert config.data.dataset == "digits"
    assert config.study.n_trials == 20
    assert config.training.max_epochs <= 15
    assert config.search.space()["channels"].high <= 32  # narrowed from the family's 512


def test_defaults_follow_the_mode(write_study: Callable[..., Path]) -> None:
    aiq_mode = load_study_file(write_study(study={"sampler": None, "pruner": None}))
    assert (aiq_mode.study.mode, aiq_mode.study.sampler, aiq_mode.study.pruner) == ("aiq", "tpe", "halving")
    assert aiq_mode.study.eval_split == "validation"
    pareto = load_study_file(write_study(study={"mode": "pareto", "sampler": None, "pruner": None}))
    assert (pareto.study.sampler, pareto.study.pruner) == ("nsga2", "dominated")


def test_default_storage_and_artifacts_are_named_after_the_study(write_study: Callable[..., Path]) -> None:
    config = load_study_file(write_study(study={"name": "abc", "storage": None, "artifacts": None}))
    assert config.study.storage == "sqlite:///runs/abc.db"
    assert config.study.artifacts == "artifacts/abc"


def test_narrowing_reaches_the_family_space(write_study: Callable[..., Path]) -> None:
    space = load_study_file(write_study()).search.space()
    assert space["n_layers"] == 1
    assert space["width"] == Choice.int(4, 16, log=True)
    assert space["batch_norm"] == Choice.categorical((False,))


def test_command_line_overrides_are_validated(write_study: Callable[..., Path]) -> None:
    config = load_study_file(write_study())
    changed = config.with_overrides(n_trials=7, timeout=30.0, storage="sqlite:///x.db", device="cuda:1", threads=2)
    assert (changed.study.n_trials, changed.study.timeout, changed.study.storage) == (7, 30.0, "sqlite:///x.db")
    assert (changed.training.device, changed.training.threads) == ("cuda:1", 2)
    with pytest.raises(ConfigError, match=r"^command line: field 'training.device'"):
        config.with_overrides(device="tpu")


BAD_FILES = [
    # (sections to change, field named in the error, words of what is allowed)
    ({"study": {"colour": "red"}}, "study.colour", "allowed keys: name, storage"),
    ({"training": {"epochs": 3}}, "training.epochs", "allowed keys: optimizer, lr"),
    ({"study": {"n_trials": "20"}}, "study.n_trials", "valid integer, got str '20'"),
    ({"training": {"batch_size": 1.5}}, "training.batch_size", "valid integer"),
    ({"study": {"n_trials": 0}}, "study.n_trials", "greater than or equal to 1"),
    ({"search": {"width": 0}}, "search.width", "an integer in [1, 2048]"),
    ({"search": {"width": {"low": 0, "high": 8}}}, "search.width", "low must be >= 1"),
    ({"search": {"depth": 2}}, "search.depth", "its choices are n_layers, width"),
    ({"search": {"family": "vgg"}}, "search.family",
     "unknown architecture family 'vgg'; known: lenet300, lenet5, resnet; a family of your own is named by its "
     "import path, 'package.module:attribute'"),
    ({"search": {"family": "no_such_module_xyz:family"}}, "search.family",
     "no module named 'no_such_module_xyz' can be imported; install the package that provides it or put the "
     "folder that holds it on PYTHONPATH"),
    ({"search": {"family": 3}}, "search.family", "valid string"),
    ({"data": {"dataset": "cifar"}}, "data.dataset", "known: mnist, fashion-mnist, kmnist, cifar10, cifar100"),
    ({"data": {"dataset": "no_such_module:load"}}, "data.dataset", "cannot import no_such_module"),
    ({"data": {"dataset": "image-folder"}}, "data.path", "required"),
    ({"data": {"dataset": "image-folder", "path": "x", "image_size": [8, 8, 3]}}, "data.image_size", "[height, width]"),
    ({"data": {"dataset": "image-folder", "path": "x", "image_size": "big"}}, "data.image_size", "an integer >= 1"),
    ({"data": {"dataset": "image-folder", "path": "x", "image_size": 8, "color": "cmyk"}}, "data.color",
     "'rgb' or 'grayscale'"),
    ({"data": {"dataset": "arrays", "path": "x.npz", "test_size": 1.5}}, "data.test_size", "less than 1"),
    ({"data": {"path": "x"}}, "data.path", "allowed keys: dataset, data_dir, download, val_size, label_noise"),
    ({"data": {"seed": 1}}, "data.seed", "reserved: seed is a common setting"),
    ({"data": {"dataset": "arrays", "path": "x.npz", "colour": "rgb"}}, "data.colour",
     "allowed keys: dataset, data_dir, download, val_size, label_noise, path, test_size"),
    ({"study": {"sampler": "cmaes"}}, "study.sampler", "'tpe', 'gp', 'random', 'grid' or 'nsga2'"),
    ({"study": {"pruner": "patient"}}, "study.pruner", "'halving', 'median', 'hyperband', 'dominated' or 'none'"),
    ({"study": {"mode": "pareto", "pruner": "median"}}, "study.pruner", "allowed: 'dominated', 'none'"),
    ({"study": {"pruner": "dominated"}}, "study.pruner", "'dominated' is pareto mode's rule"),
    ({"study": {"sampler": "gp", "pruner": "halving"}}, "study.pruner", "use pruner = 'none' with it"),
    ({"study": {"startup_trials": 0}}, "study.startup_trials", "greater than or equal to 1"),
    ({"study": {"mode": "both"}}, "study.mode", "'aiq' or 'pareto'"),
    ({"study": {"eval_split": "train"}}, "study.eval_split", "'validation' or 'test'"),
    ({"study": {"sampler": "grid"}, "search": {"dropout": None}}, "search.dropout", "list of values"),
    ({"study": {"heartbeat_interval": 10, "grace_period": 5}}, "study.grace_period", "longer than"),
    ({"study": {"name": "a b"}}, "study.name", "letters, digits"),
    ({"training": {"device": "gpu"}}, "training.device", "'cuda:N'"),
    ({"data": {"dataset": None}}, "data.dataset", "required"),
]


@pytest.mark.parametrize(("sections", "field", "allowed"), BAD_FILES, ids=[b[1] + ":" + b[2] for b in BAD_FILES])
def test_bad_study_file_names_file_field_and_what_is_allowed(
        write_study: Callable[..., Path], sections: dict, field: str, allowed: str) -> None:
    path = write_study("bad.toml", **sections)
    with pytest.raises(ConfigError) as caught:
        load_study_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: field '{field}': ")
    assert allowed in message
    assert "\n" not in message


def test_unknown_table_and_broken_toml(tmp_path: Path, write_study: Callable[..., Path]) -> None:
    with pytest.raises(ConfigError, match=r"field 'extras': unknown key; allowed keys: study, data, search, training"):
        load_study_file(write_study(extras={"x": 1}))
    broken = tmp_path / "broken.toml"
    broken.write_text("[study\nname = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken.toml: not valid TOML"):
        load_study_file(broken)
    with pytest.raises(ConfigError, match=r"missing.toml: no such study file"):
        load_study_file(tmp_path / "missing.toml")
