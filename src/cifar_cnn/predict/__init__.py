"""Prediction on new images: decoding and resizing any image file, and the Classifier API."""

from cifar_cnn.predict.classifier import Classifier, predict_probs
from cifar_cnn.predict.images import RESIZE_METHOD, load_image, prepare_image

__all__ = ["RESIZE_METHOD", "Classifier", "load_image", "predict_probs", "prepare_image"]
