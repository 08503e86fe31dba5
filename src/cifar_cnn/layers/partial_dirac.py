"""A conv-kernel initialiser that starts a conv stack close to the identity map."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="cifar_cnn")
class PartialDirac(keras.initializers.Initializer):
    """PyTorch's default conv init, with the first ``min(in, out)`` filters set to identity.

    Each of those (Dirac) filters passes one input channel through unchanged, so a freshly
    initialised conv stack starts close to the identity map, as airbench's does.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def __call__(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        kh, kw, cin, cout = shape
        bound = 1.0 / np.sqrt(kh * kw * cin)
        w = keras.random.uniform(shape, -bound, bound, dtype=dtype, seed=self.seed)
        n = min(cin, cout)
        dirac = np.zeros(shape, dtype="float32")
        dirac[kh // 2, kw // 2, np.arange(n), np.arange(n)] = 1.0
        keep = np.ones(shape, dtype="float32")
        keep[..., :n] = 0.0
        return w * ops.cast(keep, w.dtype) + ops.cast(dirac, w.dtype)

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}
