"""Data sets as whole tensors split into train / validation / test, ready to live on the training device.

A data set is a registered `Dataset` whose loader returns `RawData` (inputs, labels, optionally a test
split); `load_dataset` resolves the name (built-in, entry point in group ``aiq_search.datasets``, or
``"package.module:function"``), validates the data set's options, and applies the common steps the same
way for every data set: a fixed test hold-out when the data set has no test split, the seeded stratified
validation split, label noise, per-channel normalization from the training split, and a fingerprint.

Built-ins: mnist, fashion-mnist, kmnist (IDX files), cifar10, cifar100 (pickled batches), digits
(scikit-learn), image-folder (class subfolders of images), arrays (.npz / .pt).
"""

# the built-ins register themselves, in this order (the order of `list_datasets`)
from aiq_search.data import _idx, _cifar, _digits, _images, _arrays  # noqa: F401, I001
from aiq_search.data._core import (
    SPLITS,
    TEST_SIZE,
    DataSplits,
    RawData,
    check_fingerprint,
    check_fits,
    default_data_dir,
    split_test,
)
from aiq_search.data._loading import load_dataset, make_splits
from aiq_search.data._registry import (
    DATASETS,
    ENTRY_POINT_GROUP,
    DataPath,
    Dataset,
    OptionError,
    list_datasets,
    register_dataset,
    get_dataset,
)

__all__ = [
    "DATASETS",
    "ENTRY_POINT_GROUP",
    "SPLITS",
    "TEST_SIZE",
    "DataPath",
    "DataSplits",
    "Dataset",
    "OptionError",
    "RawData",
    "check_fingerprint",
    "check_fits",
    "default_data_dir",
    "get_dataset",
    "list_datasets",
    "load_dataset",
    "make_splits",
    "register_dataset",
    "split_test",
]
