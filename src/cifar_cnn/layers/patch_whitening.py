"""A frozen, data-derived 2x2 convolution that whitens image patches (airbench's first layer)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers, ops


@keras.saving.register_keras_serializable(package="cifar_cnn")
class PatchWhitening(layers.Layer):
    """A ``k x k`` 'valid' convolution whose filters whiten the training images' patches.

    ``adapt(images)`` sets the filters to the eigenvectors of the covariance of all
    ``k x k x C`` patches, divided by the square root of their eigenvalues, and their
    negatives (so a following GELU sees both signs). The filters are not trained; the bias is.
    The trainer calls ``adapt`` with this layer's own inputs for training images, because
    ``adapts_to_data`` is set (see `cifar_cnn.models.data_dependent_init`).

    Args:
        kernel_size: patch size ``k``; the layer has ``2 k k C`` output channels.
        eps: added to the eigenvalues, so near-constant directions are not blown up.
    """

    adapts_to_data = True

    def __init__(self, kernel_size: int = 2, eps: float = 5e-4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kernel_size = kernel_size
        self.eps = eps

    def build(self, input_shape: tuple[int, ...]) -> None:
        k, c = self.kernel_size, int(input_shape[-1])
        self.filters = 2 * k * k * c
        self.kernel = self.add_weight(shape=(k, k, c, self.filters), initializer="zeros",
                                      trainable=False, name="kernel")
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")

    def adapt(self, images: np.ndarray) -> None:
        """Set the filters from (already normalised) float images ``(N, H, W, C)``."""
        x = np.asarray(images, dtype=np.float64)
        k = self.kernel_size
        c = x.shape[-1]
        if not self.built:
            self.build(x.shape)
        patches = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))
        patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, k * k * c)  # (kh, kw, c)
        patches = patches - patches.mean(axis=0)
        cov = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = np.linalg.eigh(cov)
        w_ = eigenvectors / np.sqrt(eigenvalues + self.eps)  # columns are filters
        kernel = np.concatenate([w_, -w_], axis=1).reshape(k, k, c, self.filters)
        self.kernel.assign(kernel.astype("float32"))

    def call(self, x: Any) -> Any:
        kernel = ops.cast(self.kernel, x.dtype)
        return ops.conv(x, kernel, padding="valid") + ops.cast(self.bias, x.dtype)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int | None, ...]:
        k = self.kernel_size
        h, w = input_shape[1], input_shape[2]
        return (input_shape[0], None if h is None else h - k + 1,
                None if w is None else w - k + 1, 2 * k * k * input_shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "kernel_size": self.kernel_size, "eps": self.eps}
