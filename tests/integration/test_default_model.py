"""The packaged default model's accuracy on a fixed 1,000-image subset of the real test set."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cifar_cnn.pretrained import default_run

pytestmark = pytest.mark.integration


def test_default_model_accuracy_on_the_fixed_subset(cifar10) -> None:
    from cifar_cnn.predict import Classifier
    from scripts.make_default_model import subset_indices

    clf = Classifier.load()
    meta = json.loads((default_run() / "metadata.json").read_text())
    idx = subset_indices(cifar10.y_test)
    assert len(idx) == 1000 and np.bincount(cifar10.y_test[idx]).tolist() == [100] * 10
    accuracy = float((clf.predict(cifar10.x_test[idx]).argmax(1) == cifar10.y_test[idx]).mean())
    # Recorded when the model was packed; another CPU may sum in another order (5 images).
    assert accuracy == pytest.approx(meta["provenance"]["subset_accuracy"], abs=0.005)
    assert accuracy >= 0.9
