"""PartialDirac: identity filters where a conv has room for them, PyTorch's init elsewhere."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.parametrize("cin,cout", [(4, 6), (6, 4)])
def test_first_filters_pass_channels_through(cin: int, cout: int) -> None:
    import keras

    from cifar_cnn.layers import PartialDirac

    w = np.asarray(PartialDirac(seed=1)((3, 3, cin, cout)))
    n = min(cin, cout)
    dirac = np.zeros((3, 3, cin, cout))
    dirac[1, 1, np.arange(n), np.arange(n)] = 1.0
    np.testing.assert_array_equal(w[..., :n], dirac[..., :n])
    bound = 1.0 / np.sqrt(9 * cin)
    rest = w[..., n:]
    assert rest.size == 0 or (np.abs(rest).max() <= bound and rest.std() > bound / 4)

    config = keras.saving.serialize_keras_object(PartialDirac(seed=1))
    again = keras.saving.deserialize_keras_object(config)
    np.testing.assert_array_equal(np.asarray(again((3, 3, cin, cout))), w)
