"""CIFAR-10 data: sources, the decoded-array cache and splits."""

from cifar_cnn.data.dataset import CifarData, default_cache_dir, fingerprint_arrays, load_cifar10
from cifar_cnn.data.sources import CIFAR10_SHA256, CIFAR10_URL, CLASS_NAMES
from cifar_cnn.data.split import (
    TrainSplits,
    calibration_holdout,
    evaluation_split,
    split_validation,
    train_splits,
)

__all__ = [
    "CIFAR10_SHA256",
    "CIFAR10_URL",
    "CLASS_NAMES",
    "CifarData",
    "TrainSplits",
    "calibration_holdout",
    "default_cache_dir",
    "evaluation_split",
    "fingerprint_arrays",
    "load_cifar10",
    "split_validation",
    "train_splits",
]
