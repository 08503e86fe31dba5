"""Evaluation: metrics (scikit-learn), calibration, plots (matplotlib) and the HTML report."""

from cifar_cnn.evaluation.evaluator import evaluate

__all__ = ["evaluate"]
