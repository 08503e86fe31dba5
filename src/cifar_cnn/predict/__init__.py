"""Prediction on new images: decoding and resizing any image file, and the Classifier API."""

from cifar_cnn.predict.classifier import Classifier, Prediction
from cifar_cnn.predict.images import (
    MAX_PIXELS,
    RESIZE_METHOD,
    decode_image,
    expand_inputs,
    load_image,
    prepare_image,
)
from cifar_cnn.pretrained import default_run
from cifar_cnn.tta import predict_probs

__all__ = ["MAX_PIXELS", "RESIZE_METHOD", "Classifier", "Prediction", "decode_image",
           "default_run", "expand_inputs", "load_image", "predict_probs", "prepare_image"]
