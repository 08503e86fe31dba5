"""Training around Keras ``fit``: progress, CSV log, TensorBoard, checkpoints and resume."""

from cifar_cnn.training.trainer import train

__all__ = ["train"]
