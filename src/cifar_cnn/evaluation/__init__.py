"""Evaluation: metrics (scikit-learn), calibration, plots (matplotlib), the HTML report and
robustness to common corruptions (CIFAR-10-C)."""

from cifar_cnn.evaluation.corruptions import (
    BENCHMARK,
    CORRUPTIONS,
    FAMILIES,
    HELD_OUT,
    corrupt,
    score_corruptions,
)
from cifar_cnn.evaluation.evaluator import evaluate

__all__ = ["BENCHMARK", "CORRUPTIONS", "FAMILIES", "HELD_OUT", "corrupt", "evaluate",
           "score_corruptions"]
