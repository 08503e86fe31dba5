"""Prediction on new images: the one inference core (`Classifier`), used by the CLI, the
HTTP service, evaluation and the Python API."""

from cifar_cnn.images import (
    MAX_PIXELS,
    RESIZE_METHOD,
    RESIZE_POLICIES,
    InputSpec,
    decode_image,
    expand_inputs,
    load_image,
    prepare_image,
)
from cifar_cnn.predict.classifier import Classifier, Prediction, predictions, top_k
from cifar_cnn.runs import default_run
from cifar_cnn.tta import predict_probs

__all__ = ["MAX_PIXELS", "RESIZE_METHOD", "RESIZE_POLICIES", "Classifier", "InputSpec",
           "Prediction", "decode_image", "default_run", "expand_inputs", "load_image",
           "predict_probs", "predictions", "prepare_image", "top_k"]
