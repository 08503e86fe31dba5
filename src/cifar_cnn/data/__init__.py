"""CIFAR-10 data: sources, the decoded-array cache and splits."""

from cifar_cnn.data.dataset import CifarData, default_cache_dir, fingerprint_arrays, load_cifar10
from cifar_cnn.data.sources import CIFAR10_SHA256, CIFAR10_URL, CLASS_NAMES
from cifar_cnn.data.split import split_validation

__all__ = [
    "CIFAR10_SHA256",
    "CIFAR10_URL",
    "CLASS_NAMES",
    "CifarData",
    "default_cache_dir",
    "fingerprint_arrays",
    "load_cifar10",
    "split_validation",
]
