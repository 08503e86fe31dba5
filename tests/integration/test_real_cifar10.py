"""Tests on the real CIFAR-10 in ../shared.

Select them with ``-m integration``; skip them with ``-m "not integration"``.
"""

from __future__ import annotations

import numpy as np
import pytest

from cifar_cnn import train
from cifar_cnn.data import CifarData

pytestmark = pytest.mark.integration

# From ../shared/datasets/cifar10/README.md: SHA-256 of the stacked uint8 arrays.
README_FINGERPRINTS = {
    "train_images": "61bea91e73ac2b02dfb856e685981dce64abe13d4e780aa98a1ac1e7c056d03b",
    "train_labels": "a29f2a5ffc141bb1c9e1af453e9a5ef8c316b2f675f8cea1d849d220d33a14fb",
    "test_images": "52a9dc125982c0440d5eed87474b2f521e96c45a98df08e4329aa42c692b9d9d",
    "test_labels": "a054c239a40ee7f2a5745e7e4bc11a51e9cb40c98134b602c1068e6a207487c6",
}


def test_loader_reproduces_readme_fingerprints(cifar10: CifarData) -> None:
    assert cifar10.x_train.shape == (50000, 32, 32, 3)
    assert cifar10.x_test.shape == (10000, 32, 32, 3)
    assert np.bincount(cifar10.y_train).tolist() == [5000] * 10
    assert cifar10.fingerprint == README_FINGERPRINTS
    # read as a folder tree by load_dataset (load_cifar10 is it): nothing held out or skipped
    assert cifar10.x_val is None and cifar10.holdout is None and cifar10.summary.skipped == ()
    assert cifar10.summary.counts == {"train": (5000,) * 10, "test": (1000,) * 10}
    mean = cifar10.x_train.reshape(-1, 3).mean(axis=0) / 255
    np.testing.assert_allclose(mean, [0.49140, 0.48216, 0.44653], atol=5e-5)


def test_one_epoch_of_baseline_learns(cifar10: CifarData, tmp_path) -> None:
    rng = np.random.default_rng(0)
    tr = rng.choice(len(cifar10.y_train), 5000, replace=False)
    te = rng.choice(len(cifar10.y_test), 2000, replace=False)
    small = CifarData.from_arrays(cifar10.x_train[tr], cifar10.y_train[tr],
                                  cifar10.x_test[te], cifar10.y_test[te], cifar10.class_names)
    run = train("baseline", epochs=1, data=small, runs_dir=tmp_path, verbose=0)
    acc = run.read_metadata()["final_metrics"]["test_accuracy"]
    assert acc > 0.25, acc  # chance is 0.10
