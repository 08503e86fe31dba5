"""Batch augmentation for training input pipelines: whole batches, no per-image Python."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from cifar_cnn.errors import ConfigError

AUGMENTATIONS = ("flip", "flip_translate")


def make_train_dataset(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    augmentation: str | None,
    *,
    seed: int = 0,
    num_classes: int = 0,
) -> tuple[np.ndarray, np.ndarray] | tf.data.Dataset:
    """The training input for ``model.fit``.

    Without augmentation or one-hot labels the arrays are returned as they are, so Keras
    batches and shuffles them itself (the least overhead). Otherwise a tf.data pipeline
    shuffles uint8 images, batches them and augments each batch in one vectorised step:

    - ``"flip"``: random horizontal flips.
    - ``"flip_translate"``: flips plus random shifts of up to 4 pixels (reflect padding),
      the standard CIFAR augmentation.

    Args:
        num_classes: if > 0, labels are one-hot encoded (needed for label smoothing).

    Raises:
        ValueError: for an unknown augmentation name.
    """
    if augmentation is not None and augmentation not in AUGMENTATIONS:
        raise ConfigError(f"Unknown augmentation {augmentation!r}; choose from "
                         f"{', '.join(AUGMENTATIONS)} or None.")
    if augmentation is None and not num_classes:
        return x, y
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    if augmentation:
        import keras

        layers = [keras.layers.RandomFlip("horizontal", seed=seed)]
        if augmentation == "flip_translate":
            layers.append(keras.layers.RandomTranslation(
                0.125, 0.125, fill_mode="reflect", seed=seed + 1))
        augment = keras.Sequential(layers, name="augment")
        ds = ds.map(lambda xb, yb: (augment(tf.cast(xb, "float32"), training=True), yb),
                    num_parallel_calls=tf.data.AUTOTUNE)
    if num_classes:
        ds = ds.map(lambda xb, yb: (xb, tf.one_hot(tf.cast(yb, "int32"), num_classes)))
    return ds.prefetch(tf.data.AUTOTUNE)
