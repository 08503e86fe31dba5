"""The plain CNN of the classic TensorFlow CIFAR-10 tutorial, kept as the reference point."""

from __future__ import annotations

import keras
from keras import layers

from cifar_cnn.models.registry import register_model


@register_model("baseline")
def baseline(num_classes: int = 10, input_shape: tuple[int, int, int] = (32, 32, 3)) -> keras.Model:
    """Conv(32)-MaxPool-Conv(64)-MaxPool-Conv(64)-Flatten-Dense(64)-Dense(classes), ReLU.

    Pixels are scaled to [0, 1] inside the model, so it takes raw RGB values 0..255.
    About 122k parameters; tops out near 70-75% test accuracy.
    """
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = layers.Rescaling(1.0 / 255, name="scale")(inputs)
    x = layers.Conv2D(32, 3, activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(name="pool1")(x)
    x = layers.Conv2D(64, 3, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(name="pool2")(x)
    x = layers.Conv2D(64, 3, activation="relu", name="conv3")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(64, activation="relu", name="dense")(x)
    # Probabilities in float32 even under a mixed-precision policy.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name="baseline")
