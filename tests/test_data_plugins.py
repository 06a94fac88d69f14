"""Data sets of one's own: by import path, by entry point, by registration; their options checked by them."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field

from aiq_search.data import (
    DATASETS,
    Dataset,
    OptionError,
    RawData,
    get_dataset,
    list_datasets,
    load_dataset,
    register_dataset,
)
from aiq_search.errors import ConfigError, DataError
from aiq_search.studyfile import load_study_file

LOADER = '''
import numpy as np
from aiq_search.data import RawData

def load(*, rows, classes=3, data_dir=None):
    """{rows} rows of 5 features, balanced classes; the data folder it was given goes into source."""
    x = np.arange(rows * 5, dtype=np.float32).reshape(rows, 5) % 7
    return RawData(x, np.arange(rows) % classes, source=str(data_dir))

def wrong():
    return {"x_train": [1]}
'''


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh module of loaders in tmp_path, importable from the working directory (tmp_path)."""
    name = f"my_data_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(LOADER), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    return name


def test_a_function_named_by_import_path(module: str, tmp_path: Path) -> None:
    """The module is found from the working directory, as `python -m` would find it."""
    splits = load_dataset(f"{module}:load", rows=60, classes=4, data_dir=tmp_path / "d", val_size=0.2)
    assert splits.name == f"{module}:load" and splits.input_shape == (5, 1, 1) and splits.num_classes == 4
    assert (len(splits.train_y), len(splits.val_y), len(splits.test_y)) == (38, 10, 12)
    assert splits.source == str(tmp_path / "d") and splits.options == {"rows": 60, "classes": 4}
    assert get_dataset(f"{module}:load").option_names() == ["rows", "classes"]


@pytest.mark.parametrize(("options", "message"), [
    ({}, "option 'rows': required, but missing"),
    ({"rows": 30, "colour": 1}, "option 'colour': unknown option; {name} takes: rows, classes"),
])
def test_a_functions_options_are_its_keyword_parameters(module: str, options: dict, message: str) -> None:
    name = f"{module}:load"
    with pytest.raises(OptionError, match=f"^data set '{name}': " + message.format(name=name)):
        load_dataset(name, **options)
    for common in ("download", "seed"):  # the common code's, never passed as options
        with pytest.raises(OptionError, match=f"option .{common}.: reserved: {common} is a common setting"):
            get_dataset(name).check_options({"rows": 30, common: 1})


def test_import_path_errors(module: str) -> None:
    with pytest.raises(DataError, match=r"^data set 'no_such_module_x:load': cannot import no_such_module_x: "
                                        r"ModuleNotFoundError: No module named 'no_such_module_x'$"):
        load_dataset("no_such_module_x:load")
    with pytest.raises(DataError, match=f"^data set '{module}:nothing': module {module} has no attribute 'nothing'$"):
        load_dataset(f"{module}:nothing")
    with pytest.raises(DataError, match=f"^data set '{module}:wrong': its loader returned dict, not "
                                        r"aiq_search.data.RawData$"):
        load_dataset(f"{module}:wrong")
    with pytest.raises(DataError, match="an import path reads 'package.module:function'"):
        load_dataset(":load")


def test_a_study_file_names_its_own_data_set(module: str, write_study) -> None:
    config = load_study_file(write_study(data={"dataset": f"{module}:load", "rows": 40}))
    assert config.data.options == {"rows": 40}
    assert config.record()["data"]["rows"] == 40
    bad = write_study("bad.toml", data={"dataset": f"{module}:load", "rows": 40, "colour": "red"})
    with pytest.raises(ConfigError, match=f"^{bad}: field 'data.colour': unknown key; allowed keys: dataset, "
                                          "data_dir, download, val_size, label_noise, rows, classes$"):
        load_study_file(bad)


class BlobOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    rows: int = Field(30, ge=10)


def blobs(*, rows: int) -> RawData:
    import numpy as np

    return RawData(np.ones((rows, 2, 4, 4), np.uint8) * (np.arange(rows) % 2)[:, None, None, None],
                   np.arange(rows) % 2)


BLOBS = Dataset("blobs", blobs, options=BlobOptions)


def test_a_dataset_object_validates_its_options_with_its_model() -> None:
    name = f"{__name__}:BLOBS"
    splits = load_dataset(name, rows=40, val_size=0.25)
    assert splits.name == name and splits.input_shape == (2, 4, 4) and len(splits.val_y) == 8
    with pytest.raises(OptionError, match=f"^data set '{name}': option 'rows': Input should be greater than or "
                                          "equal to 10$"):
        load_dataset(name, rows=3)


def test_an_entry_point_of_an_installed_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_study) -> None:
    """A package declaring ``[project.entry-points."aiq_search.datasets"] blobs = "pkg:BLOBS"``."""
    module = f"blob_plugin_{uuid.uuid4().hex[:8]}"
    name = f"blobs-{module[-8:]}"
    (tmp_path / f"{module}.py").write_text(f"from {__name__} import BLOBS\n", encoding="utf-8")
    info = tmp_path / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[aiq_search.datasets]\n{name} = {module}:BLOBS\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # where this test module is importable from
    assert name in list_datasets()
    splits = load_dataset(name, rows=20)
    assert splits.name == name and splits.num_classes == 2
    assert load_study_file(write_study(data={"dataset": name, "rows": 12})).data.options == {"rows": 12}
    with pytest.raises(DataError, match=f"known: mnist, .*, arrays, {name}; or your own"):
        load_dataset("blobz")


def test_register_dataset_in_process() -> None:
    name = f"registered-{uuid.uuid4().hex[:8]}"
    try:
        returned = register_dataset(name, options=BlobOptions)(blobs)
        assert returned is blobs and DATASETS[name].options is BlobOptions
        assert list_datasets().index(name) == len(DATASETS) - 1
        assert load_dataset(name, rows=10, val_size=2).num_classes == 2
        with pytest.raises(ValueError, match=f"data set '{name}' is already registered"):
            register_dataset(name, blobs)
    finally:
        DATASETS.pop(name, None)
