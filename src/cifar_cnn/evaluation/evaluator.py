"""Evaluating a run: predictions on a split, metrics, calibration and the report."""

from __future__ import annotations

import os
import time
from typing import Any

from sklearn.metrics import log_loss

from cifar_cnn.calibration import (
    apply_temperature,
    calibrate_model,
    expected_calibration_error,
    fit_temperature,
    tta_key,
    validate_probs_and_labels,
)
from cifar_cnn.data import CifarData, evaluation_split, load_run_data
from cifar_cnn.errors import DataError, RunError
from cifar_cnn.evaluation.metrics import check_class_names, classification_metrics
from cifar_cnn.evaluation.report import write_report
from cifar_cnn.predict.classifier import Classifier
from cifar_cnn.runs import open_run


def evaluate(
    run: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] | CifarData | None = None,
    split: str = "test",
    tta: bool | str | None = None,
    report: bool = True,
) -> dict[str, Any]:
    """Evaluate a trained run and write ``RUN/report/`` (metrics.json, plots, report.html).

    Metrics are reported for the raw probabilities and, where they differ (ECE, log-loss),
    also for the calibrated ones that `predict` gives by default: with the temperature that
    training fitted on its held-out split for this test-time augmentation mode.

    Args:
        run: a run directory.
        data: the dataset (default: the path the run was trained on, if it still exists;
            else as `cifar_cnn.data.load_cifar10` finds it).
        split: "test" (the full test set; the validation split for data without one) or
            "val" (the run's validation split).
        tta: test-time augmentation, see `cifar_cnn.predict.predict_probs`; None: what the
            recipe says; True: that, or "flip"; False: none.
        report: write the report folder (metrics are returned either way).

    Returns:
        The metrics dict (as in metrics.json).

    Raises:
        RunError: a missing or incomplete run. DataError: data that does not match the run.
    """
    t0 = time.perf_counter()
    rd = open_run(run)
    meta = rd.read_metadata()
    clf = Classifier.load(rd.path)
    ds = load_run_data(meta, data)
    if split == "test" and not ds.has_test and ds.has_val:
        split = "val"  # data without a test split: its validation split is the exam
    if list(ds.class_names) != list(clf.class_names):
        raise DataError(
            f"The data's classes {list(ds.class_names)} differ from the classes "
            f"{list(clf.class_names)} that {rd.path} was trained on."
        )
    use_tta, _ = clf.options(tta, False)
    x, y = evaluation_split(ds, meta.get("settings", {}), split)
    # The one check of the predictions and names; everything below is told to trust them.
    probs, y = validate_probs_and_labels(clf.raw_probs(x, use_tta), y)
    class_names = check_class_names(clf.class_names, probs.shape[1])
    metrics = classification_metrics(y, probs, class_names, check_input=False)

    has_val = bool(meta.get("settings", {}).get("val_size"))
    if tta_key(use_tta) in clf.temperatures:  # fitted after training on held-out images
        temperature = clf.temperatures[tta_key(use_tta)]
        source = (clf.calibration or {}).get("fit_on", "validation split")
    elif has_val:  # a run trained without calibration: fit it now, on its validation split
        val_x, val_y = evaluation_split(ds, meta["settings"], "val")
        calibration = calibrate_model(clf.model, val_x, val_y, fit_on="validation split",
                                      seed=meta["settings"].get("seed"))
        rd.write_calibration(calibration)
        temperature = calibration["modes"][tta_key(use_tta)]["temperature"]
        source = "validation split"
    else:
        temperature = fit_temperature(probs, y, check_input=False)
        source = f"{split} (no held-out split in this run: optimistic, not saved)"
    calibrated = apply_temperature(probs, temperature, check_input=False)
    metrics.update(
        split=split,
        tta=use_tta,
        temperature=float(temperature),
        temperature_fit_on=source,
        ece_calibrated=float(expected_calibration_error(calibrated, y, check_input=False)),
        log_loss_calibrated=float(log_loss(y, calibrated, labels=range(len(class_names)))),
        run=rd.name,
        model=meta.get("recipe", {}).get("model"),
        recipe=meta.get("recipe", {}).get("name"),
        dataset_fingerprint_matches=(ds.fingerprint == meta.get("dataset", {}).get("fingerprint")),
    )
    metrics["evaluate_seconds"] = round(time.perf_counter() - t0, 3)
    if report:
        try:
            history = rd.read_history()
        except RunError:  # a run stopped before its first epoch ended has no rows yet
            history = {}
        info = {
            "run": str(rd.path),
            "model": metrics["model"],
            "recipe": metrics["recipe"],
            "split": split,
            "images": metrics["num_images"],
            "test-time augmentation": {"flip": "horizontal flip",
                                       "flip_translate": "flips of the image and of two "
                                       "1-pixel shifts"}.get(use_tta or "", "none"),
            "temperature learned on": source,
            "trained for": f"{meta.get('epochs_done', '?')} epochs, seed "
            f"{meta.get('settings', {}).get('seed', '?')}",
            "training time": f"{meta.get('train_seconds', '?')} s",
        }
        write_report(
            rd.report,
            metrics=metrics,
            images=x,
            y_true=y,
            probs=probs,
            class_names=class_names,
            history=history,
            history_label="validation" if has_val else "test",
            title=f"cifar-cnn evaluation: {rd.name}",
            info=info,
            check_input=False,
        )
    return metrics
