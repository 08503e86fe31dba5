"""Figures for evaluation reports: training curves, confusion matrix, its most frequent
confusions, per-class metrics, reliability diagrams, galleries of misclassified images and
the accuracy under common corruptions (CIFAR-10-C).

Figures that show every class stay readable at any number of them: up to `MANY_CLASSES`
they draw as for CIFAR-10; above it (CIFAR-100, say) the confusion matrix becomes a heat map
without numbers (`plot_top_confusions` ranks its cells instead), the per-class bars turn
into a sorted horizontal chart, and sizes, fonts and tick labels scale with bounds.

Every ``plot_*`` function builds and returns a `matplotlib.figure.Figure` without pyplot: no
backend is chosen and no global figure is opened, so importing or calling this package never
changes a notebook's backend, and figures are freed like any other object. `save_figure`
writes one as PNG (with matplotlib's Agg renderer, no display needed).

The inputs are trusted: `cifar_cnn.evaluation.report.write_report` checks probabilities, labels,
images and class names once, then draws. What to show (which mistakes, which class pairs, the
best epoch) is chosen by `cifar_cnn.evaluation.selection`.

The package is laid out by what each module holds, imports pointing downward: `~.common`
(`save_figure`, image and tick helpers, the one-message figure) at the bottom; on it
`~.history` (training curves and the history helpers `cifar_cnn.evaluation.compare` shares),
`~.confusion` (confusion matrix, top confusions), `~.per_class` (per-class metrics),
`~.reliability` (reliability diagrams), `~.galleries` (confident mistakes, confused pairs)
and `~.corruptions` (CIFAR-10-C robustness). Everything public is importable from here.
"""

from cifar_cnn.evaluation.plots.common import (
    DPI,
    as_uint8_images,
    draw_no_data,
    save_figure,
    tick_layout,
)
from cifar_cnn.evaluation.plots.confusion import plot_confusion_matrix, plot_top_confusions
from cifar_cnn.evaluation.plots.corruptions import FAMILY_COLORS, plot_corruptions
from cifar_cnn.evaluation.plots.galleries import plot_confident_mistakes, plot_confused_pairs
from cifar_cnn.evaluation.plots.history import (
    ACCURACY_KEYS,
    TRAIN_COLOR,
    VAL_COLOR,
    accuracy_key,
    history_column,
    history_epochs,
    history_series,
    plot_training_curves,
    style_curve_axes,
)
from cifar_cnn.evaluation.plots.per_class import plot_per_class_metrics
from cifar_cnn.evaluation.plots.reliability import plot_reliability

__all__ = [
    "ACCURACY_KEYS",
    "DPI",
    "FAMILY_COLORS",
    "TRAIN_COLOR",
    "VAL_COLOR",
    "accuracy_key",
    "as_uint8_images",
    "draw_no_data",
    "history_column",
    "history_epochs",
    "history_series",
    "plot_confident_mistakes",
    "plot_confused_pairs",
    "plot_confusion_matrix",
    "plot_corruptions",
    "plot_per_class_metrics",
    "plot_reliability",
    "plot_top_confusions",
    "plot_training_curves",
    "save_figure",
    "style_curve_axes",
    "tick_layout",
]
