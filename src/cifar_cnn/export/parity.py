"""The parity gate: an export is kept only if it predicts as the Keras model does.

Both sides see the same test images and give calibrated probabilities (the run's
temperature for no test-time augmentation). The reference is the run's Keras model in
float32 with its own layers: a bfloat16-trained run differs from its float32 self by more
than any converter (0.5 points of accuracy for the default model), so that difference is
reported (``keras_model_accuracy``) but not gated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# Limits per quantization, on calibrated probabilities over the whole test set. float32:
# rounding differences only (default model: max |dp| 1.4e-6 SavedModel, 3.9e-6 LiteRT).
# float16 weights (11-bit mantissa), their error sharpened by the default model's
# temperature 0.49: max |dp| 0.0142, mean 7e-5, top-1 agreement 0.9998 on the 10,000 test
# images, so 2e-2 (1e-2 rejected it). int8: single probabilities move by up to 0.3 (mean
# 2.6e-3), so only accuracy is held: at most 1 point below the Keras model.
TOLERANCES: dict[str | None, dict[str, float | None]] = {
    None: {"min_top1_agreement": 0.999, "max_abs_prob_diff": 1e-3, "max_accuracy_drop": None},
    "float16": {"min_top1_agreement": 0.999, "max_abs_prob_diff": 2e-2,
                "max_accuracy_drop": None},
    "int8": {"min_top1_agreement": None, "max_abs_prob_diff": None, "max_accuracy_drop": 0.01},
}


@dataclass
class ParityReport:
    """How an export's predictions compare with the Keras model's on `num_images` images."""

    num_images: int
    top1_agreement: float
    max_abs_prob_diff: float
    mean_abs_prob_diff: float
    reference_accuracy: float | None
    export_accuracy: float | None
    limits: dict[str, float | None]
    failures: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, **asdict(self)}

    def summary(self) -> str:
        acc = (f", accuracy {self.export_accuracy:.4f} (Keras {self.reference_accuracy:.4f})"
               if self.export_accuracy is not None else "")
        return (f"top-1 agreement {self.top1_agreement:.4f}, max |dp| "
                f"{self.max_abs_prob_diff:.2e}, mean |dp| {self.mean_abs_prob_diff:.2e}"
                f"{acc} on {self.num_images} images")


def compare(reference: np.ndarray, exported: np.ndarray, labels: np.ndarray | None,
            quantize: str | None) -> ParityReport:
    """Compare probabilities ``(N, C)`` of the export with the reference's under
    `TOLERANCES` [`quantize`]; labels (or None) give the accuracies."""
    ref = np.asarray(reference, np.float64)
    exp = np.asarray(exported, np.float64)
    if ref.shape != exp.shape:
        raise ValueError(f"The export gives probabilities of shape {exp.shape}; the Keras "
                         f"model {ref.shape}.")
    limits = TOLERANCES[quantize]
    diff = np.abs(ref - exp) if np.isfinite(exp).all() else np.full(ref.shape, np.inf)
    agree = float(np.mean(ref.argmax(1) == exp.argmax(1)))
    ref_acc = exp_acc = None
    if labels is not None:
        y = np.asarray(labels).reshape(-1)
        ref_acc = float(np.mean(ref.argmax(1) == y))
        exp_acc = float(np.mean(exp.argmax(1) == y))
    failures = []
    if limits["min_top1_agreement"] is not None and not agree >= limits["min_top1_agreement"]:
        failures.append(f"top-1 agreement {agree:.4f} < {limits['min_top1_agreement']}")
    max_diff = float(diff.max())
    if limits["max_abs_prob_diff"] is not None and not max_diff <= limits["max_abs_prob_diff"]:
        failures.append(f"max |dp| {max_diff:.3g} > {limits['max_abs_prob_diff']}")
    if limits["max_accuracy_drop"] is not None:
        if ref_acc is None:
            failures.append("int8 is gated on accuracy: labelled test images are needed")
        elif not ref_acc - exp_acc <= limits["max_accuracy_drop"]:
            failures.append(f"accuracy drop {ref_acc - exp_acc:.4f} > "
                            f"{limits['max_accuracy_drop']}")
        if not np.isfinite(exp).all():
            failures.append("non-finite probabilities")
    return ParityReport(len(ref), agree, max_diff, float(diff.mean()), ref_acc, exp_acc,
                        dict(limits), failures)
