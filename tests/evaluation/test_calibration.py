"""Calibration helpers against hand-computed values and a known temperature."""

from __future__ import annotations

import numpy as np
import pytest

from cifar_cnn.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_calibration,
    fit_temperature,
    reliability_bins,
    validate_probs_and_labels,
)


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# Four predictions: confidences 0.9 (right), 0.7 (wrong), 0.4 (right), 0.45 (wrong).
PROBS = np.array(
    [
        [0.90, 0.05, 0.05],
        [0.70, 0.20, 0.10],
        [0.40, 0.35, 0.25],
        [0.30, 0.45, 0.25],
    ]
)
Y = np.array([0, 1, 0, 2])


def test_ece_two_bins_by_hand() -> None:
    # Bin (0, 0.5]: rows 3, 4 -> accuracy 1/2, confidence (0.4 + 0.45) / 2 = 0.425.
    # Bin (0.5, 1]: rows 1, 2 -> accuracy 1/2, confidence (0.9 + 0.7) / 2 = 0.8.
    # ECE = 2/4 * 0.075 + 2/4 * 0.3 = 0.1875.
    assert expected_calibration_error(PROBS, Y, n_bins=2) == pytest.approx(0.1875)


def test_ece_four_bins_by_hand() -> None:
    # (0.25, 0.5]: acc 0.5 conf 0.425; (0.5, 0.75]: acc 0 conf 0.7; (0.75, 1]: acc 1 conf 0.9.
    expected = 0.5 * 0.075 + 0.25 * 0.7 + 0.25 * 0.1
    assert expected_calibration_error(PROBS, Y, n_bins=4) == pytest.approx(expected)


def test_reliability_bins_by_hand() -> None:
    bins = reliability_bins(PROBS, Y, n_bins=4)
    assert bins["bin_edges"] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert bins["count"] == [0, 2, 1, 1]
    assert bins["accuracy"][0] is None and bins["confidence"][0] is None  # empty bin
    assert bins["accuracy"][1:] == pytest.approx([0.5, 0.0, 1.0])
    assert bins["confidence"][1:] == pytest.approx([0.425, 0.7, 0.9])


def test_bins_are_closed_on_the_right() -> None:
    # Confidence exactly 0.5 belongs to (0, 0.5], not (0.5, 1].
    bins = reliability_bins(np.array([[0.5, 0.3, 0.2]]), np.array([0]), n_bins=2)
    assert bins["count"] == [1, 0]


def test_perfect_predictions_have_zero_ece() -> None:
    probs = np.eye(4)
    assert expected_calibration_error(probs, np.arange(4)) == 0.0


def test_fit_temperature_recovers_overconfidence() -> None:
    rng = np.random.default_rng(42)
    n, c = 4000, 10
    logits = rng.normal(scale=2.0, size=(n, c))
    # Labels drawn from softmax(logits) (Gumbel-max trick) ...
    y = np.argmax(logits + rng.gumbel(size=(n, c)), axis=1)
    # ... but the model reports softmax(3 * logits): over-confident by T = 3.
    overconfident = softmax(3.0 * logits).astype(np.float32)
    temperature = fit_temperature(overconfident, y)
    assert temperature == pytest.approx(3.0, rel=0.1)
    calibrated = apply_temperature(overconfident, temperature)
    assert expected_calibration_error(calibrated, y) < expected_calibration_error(overconfident, y)
    # Probabilities that are already calibrated need no change: T ~ 1.
    assert fit_temperature(softmax(logits), y) == pytest.approx(1.0, rel=0.1)


def test_apply_temperature_identity_and_by_hand() -> None:
    p = np.array([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5]], dtype=np.float32)
    out = apply_temperature(p, 1.0)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, p, rtol=1e-6)
    # T = 2 takes square roots, then renormalises.
    halved = apply_temperature(np.array([[0.5, 0.25, 0.25]]), 2.0)
    root = np.sqrt([0.5, 0.25, 0.25])
    np.testing.assert_allclose(halved[0], root / root.sum())


def test_apply_temperature_is_stable_with_zeros_and_extremes() -> None:
    p = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    for t in (0.01, 1.0, 100.0):
        out = apply_temperature(p, t)
        assert np.all(np.isfinite(out))
        np.testing.assert_allclose(out.sum(axis=1), 1.0)
        assert out.argmax(axis=1).tolist() == [0, 2]
    # A very high temperature flattens everything towards uniform.
    np.testing.assert_allclose(apply_temperature(PROBS, 1e6), 1 / 3, atol=1e-5)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "warm"])
def test_apply_temperature_rejects_bad_temperatures(bad) -> None:
    with pytest.raises(ValueError, match="temperature must be a finite positive number"):
        apply_temperature(PROBS, bad)


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="same number of rows"):
        expected_calibration_error(PROBS, Y[:3])
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(PROBS, Y, n_bins=0)
    with pytest.raises(ValueError, match="non-negative"):
        reliability_bins(-PROBS, Y)
    with pytest.raises(ValueError, match="integer"):
        fit_temperature(PROBS, np.array([0.5, 1.0, 0.0, 2.0]))


def test_reliability_bins_carry_the_ece() -> None:
    for n_bins in (2, 4, 15):
        bins = reliability_bins(PROBS, Y, n_bins=n_bins)
        assert bins["ece"] == expected_calibration_error(PROBS, Y, n_bins=n_bins)
    assert reliability_bins(PROBS, Y, n_bins=2)["ece"] == pytest.approx(0.1875)


def test_trusted_input_skips_only_the_array_checks() -> None:
    p, y = validate_probs_and_labels(PROBS, Y)
    assert expected_calibration_error(p, y, 2, check_input=False) == pytest.approx(0.1875)
    assert fit_temperature(p, y, check_input=False) == fit_temperature(PROBS, Y)
    np.testing.assert_array_equal(apply_temperature(p, 2.0, check_input=False),
                                  apply_temperature(PROBS, 2.0))
    # The scalar arguments are still checked.
    with pytest.raises(ValueError, match="n_bins"):
        reliability_bins(p, y, n_bins=0, check_input=False)
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(p, -1.0, check_input=False)


def test_fit_calibration_matches_the_single_functions() -> None:
    out = fit_calibration({None: PROBS, "flip": PROBS ** 2 / (PROBS ** 2).sum(1, keepdims=True)},
                          Y, n_bins=4)
    assert list(out) == ["none", "flip"]
    t = fit_temperature(PROBS, Y)
    assert out["none"] == {
        "temperature": t,
        "ece_raw": expected_calibration_error(PROBS, Y, 4),
        "ece_calibrated": expected_calibration_error(apply_temperature(PROBS, t), Y, 4),
    }
