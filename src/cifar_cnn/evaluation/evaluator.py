"""Evaluating a run: predictions on a split, metrics, calibration and the report."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from sklearn.metrics import log_loss

from cifar_cnn.calibration import (
    apply_temperature,
    calibrate_model,
    expected_calibration_error,
    fit_temperature,
    tta_key,
    validate_probs_and_labels,
    write_calibration,
)
from cifar_cnn.data import CifarData, evaluation_split, load_run_data
from cifar_cnn.data.split import stratified_subset
from cifar_cnn.errors import ConfigError, DataError, RunError
from cifar_cnn.evaluation.corruptions import (
    JPEG_QUALITIES,
    resolve_corruptions,
    score_corruptions,
)
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
    corruptions: bool | str | Sequence[str] = False,
    corruption_images: int | None = None,
    seed: int = 0,
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
        corruptions: also score the run on CIFAR-10-C corruptions made from the split's
            images (`cifar_cnn.evaluation.corruptions`): True for all 19 (the 15 of the
            benchmark and the 4 held out), or names (a comma-separated string or a
            sequence; families, "benchmark" and "held_out" too). Accuracy and ECE of the
            calibrated probabilities per corruption and severity 1..5, per family, the mean
            over the 15 and over the held-out ones, and a JPEG round trip at qualities
            95/75/50, under metrics["corruptions"] and in the report. Each corruption and
            severity predicts the images once more (times the TTA views): on a CPU,
            `corruption_images` keeps it short.
        corruption_images: score the corruptions on N of the split's images, in its class
            proportions and chosen by `seed` (`cifar_cnn.data.split.stratified_subset`;
            default: all of them).
        seed: the corruptions' random numbers (see `cifar_cnn.evaluation.corruptions.corrupt`).

    Returns:
        The metrics dict (as in metrics.json).

    Raises:
        RunError: a missing or incomplete run. DataError: data that does not match the run,
            or corruptions of images that are not 32x32 RGB. ConfigError: an unknown
            corruption name.
    """
    chosen = resolve_corruptions(corruptions) if corruptions else ()  # fail before the work
    if corruption_images is not None and corruption_images < 1:
        raise ConfigError(f"corruption_images must be at least 1. Received: {corruption_images}")
    t0 = time.perf_counter()
    rd = open_run(run)
    clf = Classifier.load(rd.path)
    card = clf.card
    ds = load_run_data(card, data)
    if split == "test" and not ds.has_test and ds.has_val:
        split = "val"  # data without a test split: its validation split is the exam
    if list(ds.class_names) != list(clf.class_names):
        raise DataError(
            f"The data's classes {list(ds.class_names)} differ from the classes "
            f"{list(clf.class_names)} that {rd.path} was trained on."
        )
    use_tta, _ = clf.options(tta, False)
    x, y = evaluation_split(ds, card.settings, split)
    # The one check of the predictions and names; everything below is told to trust them.
    probs, y = validate_probs_and_labels(clf.raw_probs(x, use_tta), y)
    class_names = check_class_names(clf.class_names, probs.shape[1])
    metrics = classification_metrics(y, probs, class_names, check_input=False)

    has_val = bool(card.val_size)
    if tta_key(use_tta) in clf.temperatures:  # fitted after training on held-out images
        temperature = clf.temperatures[tta_key(use_tta)]
        source = card.calibration.fit_on if card.calibration else "validation split"
    elif has_val:  # a run trained without calibration: fit it now, on its validation split
        val_x, val_y = evaluation_split(ds, card.settings, "val")
        calibration = calibrate_model(clf.model, val_x, val_y, fit_on="validation split",
                                      seed=card.settings.get("seed"))
        write_calibration(rd.calibration, calibration)
        temperature = calibration.temperatures[tta_key(use_tta)]
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
        model=card.network,
        recipe=card.recipe_name,
        dataset_fingerprint_matches=(ds.fingerprint == card.dataset.get("fingerprint")),
    )
    if chosen:
        n = len(y) if corruption_images is None else int(corruption_images)
        sub = stratified_subset(y, n, seed=seed)

        def predict(images: Any) -> Any:  # the probabilities `predict` gives by default
            raw = clf.raw_probs(images, use_tta)
            if tta_key(use_tta) in clf.temperatures:
                return clf.finish(raw, use_tta, True)
            return apply_temperature(raw, temperature)

        metrics["corruptions"] = {
            **score_corruptions(predict, x[sub], y[sub], names=chosen, seed=seed,
                                jpeg_qualities=JPEG_QUALITIES, clean_probs=calibrated[sub]),
            "probabilities": f"calibrated (temperature {float(temperature):.4g})",
        }
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
            "trained for": f"{card.epochs_done if card.epochs_done is not None else '?'} "
            f"epochs, seed {card.settings.get('seed', '?')}",
            "training time": f"{card.train_seconds if card.train_seconds is not None else '?'} s",
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
