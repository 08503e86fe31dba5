"""Datasets (CIFAR-10, CIFAR-100, folders of images): sources, the decoded-array cache and
splits."""

from cifar_cnn.data.dataset import (
    CifarData,
    DataInfo,
    default_cache_dir,
    fingerprint_arrays,
    inspect_data,
    load_cifar10,
    load_dataset,
    load_run_data,
)
from cifar_cnn.data.sources import (
    CIFAR10_SHA256,
    CIFAR10_URL,
    CIFAR100_SHA256,
    CIFAR100_URL,
    CLASS_NAMES,
)
from cifar_cnn.data.split import (
    TrainSplits,
    calibration_holdout,
    evaluation_split,
    split_validation,
    stratified_holdout,
    train_splits,
)
from cifar_cnn.data.summary import DataSummary, DataWarning, SkippedFile

__all__ = [
    "CIFAR10_SHA256",
    "CIFAR10_URL",
    "CIFAR100_SHA256",
    "CIFAR100_URL",
    "CLASS_NAMES",
    "CifarData",
    "DataInfo",
    "DataSummary",
    "DataWarning",
    "SkippedFile",
    "TrainSplits",
    "calibration_holdout",
    "default_cache_dir",
    "evaluation_split",
    "fingerprint_arrays",
    "inspect_data",
    "load_cifar10",
    "load_dataset",
    "load_run_data",
    "split_validation",
    "stratified_holdout",
    "train_splits",
]
