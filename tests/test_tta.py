"""Test-time augmentation as tables of views: the product modes keep their exact results."""

from __future__ import annotations

import numpy as np
import pytest

from cifar_cnn.errors import ConfigError
from cifar_cnn.tta import (
    EXTRA_VIEW_SETS,
    TTA_MODES,
    VIEW_SETS,
    View,
    ViewSet,
    mirror_pairs,
    predict_probs,
    tta_mode,
    view_probs,
)


class _LinearSoftmax:
    """A numpy stand-in network: float32 softmax of a fixed random linear map of the pixels,
    sensitive to every pixel (so shifts and flips change its output). Counts its calls."""

    def __init__(self, shape: tuple[int, int, int] = (8, 8, 3), classes: int = 10) -> None:
        self.w = np.random.default_rng(1).normal(size=(int(np.prod(shape)), classes)) / 300
        self.calls = 0

    def _probs(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        logits = x.reshape(len(x), -1).astype(np.float64) @ self.w
        e = np.exp(logits - logits.max(1, keepdims=True))
        return (e / e.sum(1, keepdims=True)).astype(np.float32)

    def predict(self, x: np.ndarray, batch_size: int, verbose: int) -> np.ndarray:
        return self._probs(x)

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        return self._probs(x)


def _old_predict_probs(model, x, tta):  # the formulas tta.py had before view sets
    def forward(v):
        return model.predict(v, batch_size=500, verbose=0).astype(np.float64)

    def mirrored(v):
        return (forward(v) + forward(np.ascontiguousarray(v[:, :, ::-1]))) / 2.0

    if tta is None:
        return forward(x)
    probs = mirrored(x)
    if tta == "flip_translate":
        h, w = x.shape[1:3]
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        shifted = [np.ascontiguousarray(padded[:, d:d + h, d:d + w]) for d in (0, 2)]
        probs = 0.5 * probs + 0.25 * sum(mirrored(s) for s in shifted)
    return probs


def _old_flip_shift8(model, x):  # benchmarks/ablation.py's copy before this table
    h, w = x.shape[1:3]
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    shifts = [(dy, dx) for dy in (0, 1, 2) for dx in (0, 1, 2) if (dy, dx) != (1, 1)]
    probs = 0.5 * _old_predict_probs(model, x, "flip")
    for dy, dx in shifts:
        view = np.ascontiguousarray(padded[:, dy:dy + h, dx:dx + w])
        probs += 0.5 / len(shifts) * _old_predict_probs(model, view, "flip")
    return probs


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (7, 8, 8, 3), dtype=np.uint8)


@pytest.mark.parametrize("tta", [None, "flip", "flip_translate"])
@pytest.mark.parametrize("batch_size", [500, 3])  # predict_on_batch, predict
def test_product_modes_give_the_former_formulas_bit_for_bit(x, tta, batch_size) -> None:
    model = _LinearSoftmax()
    new = predict_probs(model, x, tta=tta, batch_size=batch_size)
    old = _old_predict_probs(model, x, tta)
    np.testing.assert_allclose(new, old, rtol=1e-12, atol=0)
    assert np.array_equal(new, old)  # the same float operations, in the same order


def test_modes_are_the_table_and_extra_sets_are_not_modes() -> None:
    assert TTA_MODES == ("flip", "flip_translate") == tuple(VIEW_SETS)
    assert [v.forward_passes for v in VIEW_SETS.values()] == [2, 6]
    assert not set(EXTRA_VIEW_SETS) & set(TTA_MODES)
    for name in EXTRA_VIEW_SETS:
        with pytest.raises(ConfigError, match="Unknown test-time augmentation"):
            tta_mode(name)
    assert tta_mode(True) == "flip" and tta_mode("none") is None


def test_extra_view_sets_are_accepted_by_name_or_as_a_view_set(x) -> None:
    model = _LinearSoftmax()
    shift8 = predict_probs(model, x, tta="flip_shift8")
    np.testing.assert_allclose(shift8, _old_flip_shift8(model, x), rtol=1e-12, atol=0)
    assert np.array_equal(predict_probs(model, x, tta=EXTRA_VIEW_SETS["flip_shift8"]), shift8)
    for name, views in EXTRA_VIEW_SETS.items():
        probs = predict_probs(model, x, tta=name)
        assert probs.shape == (7, 10), name
        np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)  # float32 outputs
        assert views.description
    with pytest.raises(ConfigError):
        predict_probs(model, x, tta="rotate")


def test_geometric_mean_is_the_weighted_mean_of_log_probabilities(x) -> None:
    model = _LinearSoftmax()
    views = EXTRA_VIEW_SETS["flip_translate_log"]
    probs = view_probs(model, x, [v for _, v in views.views])
    log_mean = sum(w * np.log(np.clip(probs[v], 1e-12, 1)) for w, v in views.views)
    expected = np.exp(log_mean) / np.exp(log_mean).sum(1, keepdims=True)
    np.testing.assert_allclose(views.combine(probs), expected, rtol=1e-12)


def test_each_distinct_view_is_computed_once(x) -> None:
    model = _LinearSoftmax()
    sets = [VIEW_SETS["flip"], VIEW_SETS["flip_translate"], EXTRA_VIEW_SETS["flip_shift8"]]
    views = [View(), *(v for s in sets for _, v in s.views)]
    probs = view_probs(model, x, views)
    assert model.calls == len(probs) == 18  # the mirror pairs of the 9 one-pixel positions
    for s in sets:  # combining the shared views gives each set's own result
        np.testing.assert_array_equal(s.combine(probs), predict_probs(model, x, tta=s))


def test_views_shift_with_reflect_padding_then_mirror() -> None:
    class Identity:
        def predict(self, x, batch_size, verbose):
            return x.reshape(len(x), -1)

    x = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1)
    got = view_probs(Identity(), x, [View(True, -1, 2)])[View(True, -1, 2)].reshape(4, 4)
    padded = np.pad(x[0, :, :, 0], 2, mode="reflect")
    np.testing.assert_array_equal(got, padded[1:5, 4:8][:, ::-1])


def test_view_sets_are_checked() -> None:
    with pytest.raises(ConfigError, match="sum to 1"):
        ViewSet(((0.5, View()),))
    with pytest.raises(ConfigError, match="distinct"):
        ViewSet(((0.5, View()), (0.5, View())))
    with pytest.raises(ConfigError, match="mean"):
        mirror_pairs(mean="median")
    assert mirror_pairs().views == VIEW_SETS["flip"].views == ((0.5, View()),
                                                              (0.5, View(flip=True)))
