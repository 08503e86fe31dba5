"""`cifar_cnn.evaluate` on a trained run: splits, TTA, calibration saved for prediction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import cifar_cnn
from cifar_cnn.errors import RunError
from cifar_cnn.predict import Classifier


def test_test_split_with_tta_and_saved_temperature(trained_run: Path, tiny_data) -> None:
    metrics = cifar_cnn.evaluate(trained_run, data=tiny_data, tta=True)
    assert metrics["tta"] == "flip" and metrics["split"] == "test"  # True: flips
    assert metrics["num_images"] == len(tiny_data.y_test)
    assert metrics["temperature_fit_on"] == "validation split"  # by training, not evaluate
    assert metrics["dataset_fingerprint_matches"] is True
    saved = json.loads((trained_run / "calibration.json").read_text())
    assert saved["modes"]["flip"]["temperature"] == pytest.approx(metrics["temperature"])
    assert metrics["log_loss_calibrated"] != metrics["log_loss"]  # the report shows both
    html = (trained_run / "report/report.html").read_text()
    assert f"{metrics['accuracy'] * 100:.2f}%" in html
    clf = Classifier.load(trained_run)
    raw = clf.predict(tiny_data.x_test[:5], tta=False, calibrated=False)
    cal = clf.predict(tiny_data.x_test[:5], tta=False)  # calibrated by default
    np.testing.assert_allclose(cal.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(cal, clf.calibrate(raw, tta=None))
    assert not np.allclose(raw, cal)
    np.testing.assert_array_equal(raw.argmax(axis=1), cal.argmax(axis=1))  # T keeps the order


def test_validation_split(trained_run: Path, tiny_data) -> None:
    metrics = cifar_cnn.evaluate(trained_run, data=tiny_data, split="val", report=False)
    assert metrics["num_images"] == 20


def test_incomplete_run_is_explained(tmp_path: Path) -> None:
    (tmp_path / "metadata.json").write_text(json.dumps({"status": "interrupted"}))
    with pytest.raises(RunError, match="--resume"):
        cifar_cnn.evaluate(tmp_path)


def test_predictions_are_checked_once(trained_run: Path, tiny_data, monkeypatch) -> None:
    """evaluate checks the predictions at its door; metrics, calibration and report trust them."""
    from cifar_cnn import calibration
    from cifar_cnn.evaluation import evaluator, metrics, report

    calls = []
    real = calibration.validate_probs_and_labels

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    for module in (calibration, evaluator, metrics, report):
        monkeypatch.setattr(module, "validate_probs_and_labels", counting)
    result = cifar_cnn.evaluate(trained_run, data=tiny_data, tta=False)
    assert len(calls) == 1
    page = (trained_run / "report/report.html").read_text()
    assert f"{result['ece_calibrated']:.4f}" in page and f"{result['temperature']:.3f}" in page
    saved = json.loads((trained_run / "report/metrics.json").read_text())
    assert saved == json.loads(json.dumps(result))
