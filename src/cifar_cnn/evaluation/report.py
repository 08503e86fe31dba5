"""Write a complete evaluation report (metrics.json, PNG plots and one self-contained HTML page).

The page stays readable at any number of classes: it always lists the most frequent
confusions as a ranked table, and above `MANY_CLASSES` classes (CIFAR-100, say) the per-class
table scrolls under a fixed header with its weakest and strongest classes named above it,
the confusion matrix is a heat map without numbers, and ``top_confusions.png`` is written
too. With ``metrics["corruptions"]`` (``cifar_cnn.evaluate(..., corruptions=True)``) a
section on robustness to common corruptions follows: ``corruptions.png`` (accuracy per family
and severity, and per corruption) and a table of every corruption and severity.

The report directory is replaced atomically: everything is built in a temporary sibling
directory and only swapped into place once complete, so an interrupted evaluation never
leaves a half-written report where a good one was.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import secrets
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cifar_cnn.calibration import validate_probs_and_labels
from cifar_cnn.evaluation.metrics import (
    MANY_CLASSES,
    check_class_names,
    finite_or_none,
    format_interval,
    format_number,
    format_percent,
    top_confusions,
)
from cifar_cnn.evaluation.plots import (
    as_uint8_images,
    plot_confident_mistakes,
    plot_confused_pairs,
    plot_confusion_matrix,
    plot_corruptions,
    plot_per_class_metrics,
    plot_reliability,
    plot_top_confusions,
    plot_training_curves,
    save_figure,
)
from cifar_cnn.files import write_json, write_text
from cifar_cnn.runs import METRICS_FILE, REPORT_HTML_FILE

REQUIRED_METRICS = ("accuracy", "per_class", "confusion_matrix")

# (file name, section heading, one-line explanation) in the order they appear in the page.
PLOTS: tuple[tuple[str, str, str], ...] = (
    (
        "training_curves.png",
        "Training curves",
        "Loss and accuracy per epoch; training solid, the held-out set monitored in "
        "training dashed.",
    ),
    (
        "confusion_matrix.png",
        "Confusion matrix",
        "Rows are the true class, columns the predicted class.",
    ),
    (
        "per_class.png",
        "Per-class precision, recall and F1",
        "The dashed line is the macro-averaged F1.",
    ),
    (
        "reliability.png",
        "Calibration",
        "Accuracy per confidence bin; bars below the diagonal mean over-confidence.",
    ),
    (
        "confident_mistakes.png",
        "Most confident mistakes",
        "Wrong predictions with the highest predicted probability.",
    ),
    (
        "confused_pairs.png",
        "Most confused class pairs",
        "The most frequent (true → predicted) confusions with example images.",
    ),
)
# Captions that change above MANY_CLASSES classes, where the figures change.
MANY_CLASS_CAPTIONS = {
    "confusion_matrix.png": "Rows are the true class, columns the predicted class; colour is "
    "the share of each true class (square-root scale, so small confusions show). Red squares "
    "mark the 10 most frequent confusions, listed with their numbers below.",
    "per_class.png": "Classes sorted by F1 (bars); dots are precision, diamonds recall; the "
    "dashed line is the macro-averaged F1.",
}
# Written above MANY_CLASSES classes only, next to the other plots; the page shows the same
# pairs as its "Most frequent confusions" table.
TOP_CONFUSIONS_PNG = "top_confusions.png"
# Written when metrics has "corruptions" (`cifar_cnn.evaluate(..., corruptions=...)`).
CORRUPTIONS_PNG = "corruptions.png"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 1280px; margin: 0 auto; padding: 24px; background: #fafafa; line-height: 1.4; }
h1 { margin: 0 0 4px; }
h2 { margin: 32px 0 8px; border-bottom: 2px solid #ddd; padding-bottom: 4px; }
.muted { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; background: #fff; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 4px 10px; }
th { background: #f0f0f0; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tfoot td { font-weight: 600; background: #f7f7f7; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: 10px 16px;
        min-width: 120px; }
.card .value { font-size: 1.6em; font-weight: 700; font-variant-numeric: tabular-nums; }
.card.main .value { font-size: 2.4em; color: #1f4e9c; }
.card .label { color: #666; font-size: 0.85em; }
figure { margin: 8px 0 0; }
img { max-width: 100%; height: auto; background: #fff; border: 1px solid #e4e4e4; }
.scroll { display: inline-block; max-width: 100%; max-height: 34em; overflow: auto;
          border: 1px solid #ddd; margin: 8px 0; }
.scroll table { margin: 0; }
.scroll thead th { position: sticky; top: 0; z-index: 1; }
.scroll tfoot { position: sticky; bottom: 0; }
td.bar { background-image: linear-gradient(90deg, #c9dbf5 var(--v), transparent var(--v));
         background-repeat: no-repeat; }
""".strip()


def _jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays, paths and tuples to JSON types; non-finite floats -> None."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, Path):
        return str(value)
    return value



def _fmt_info(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(_jsonable(value), ensure_ascii=False)
    return str(value)


def _card(label: str, value: str, *, element_id: str | None = None, main: bool = False) -> str:
    id_attr = f' id="{html.escape(element_id)}"' if element_id else ""
    css = "card main" if main else "card"
    return (
        f'<div class="{css}"><div class="value"{id_attr}>{html.escape(value)}</div>'
        f'<div class="label">{html.escape(label)}</div></div>'
    )


def _headline(metrics: Mapping[str, Any]) -> str:
    """Cards: accuracy first, then whichever of the other headline figures ``metrics`` has."""
    accuracy = format_percent(float(metrics["accuracy"]))
    interval = format_interval(metrics.get("accuracy_ci95"))
    label = f"accuracy (95% interval {interval}, Wilson)" if interval else "accuracy"
    cards = [_card(label, accuracy, element_id="headline-accuracy", main=True)]
    optional = [
        ("macro F1", format_number((metrics.get("macro") or {}).get("f1"), missing="")),
        ("top-5 accuracy", format_percent(metrics.get("top5_accuracy"), missing="")),
        ("log-loss", format_number(metrics.get("log_loss"), missing="")),
        ("ECE", format_number(metrics.get("ece"), missing="")),
        ("ECE after temperature scaling",
         format_number(metrics.get("ece_calibrated"), missing="")),
        ("temperature", format_number(metrics.get("temperature"), ".3f", missing="")),
        ("images", format_number(metrics.get("num_images"), ",.0f", missing="")),
    ]
    cards += [_card(label, text) for label, text in optional if text]
    return '<div class="cards">' + "".join(cards) + "</div>"


def _info_table(info: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(_fmt_info(value))}</td></tr>"
        for key, value in info.items()
    )
    return f'<table class="info">{rows}</table>'


def _bar_style(fraction: Any) -> str:
    """A ``td`` attribute drawing ``fraction`` (0..1) as a bar behind the cell's text."""
    value = finite_or_none(fraction)
    if value is None:
        return ""
    return f' style="--v:{min(max(value, 0.0), 1.0) * 100:.1f}%"'


def _per_class_table(metrics: Mapping[str, Any]) -> str:
    per_class: Mapping[str, Mapping[str, Any]] = metrics["per_class"]
    many = len(per_class) > MANY_CLASSES

    def cells(values: Mapping[str, Any], support: Any) -> str:
        texts = [format_number(values.get(key), missing="—")
                 for key in ("precision", "recall", "f1")]
        texts.append(format_number(support, ",.0f", missing="—"))
        out = [f'<td class="num">{text}</td>' for text in texts]
        if many:  # the F1 cell as a bar, to scan a long table
            out[2] = f'<td class="num bar"{_bar_style(values.get("f1"))}>{texts[2]}</td>'
        return "".join(out)

    body = "".join(
        f"<tr><td>{html.escape(str(name))}</td>{cells(values, values.get('support'))}</tr>"
        for name, values in per_class.items()
    )
    total = sum(finite_or_none(v.get("support")) or 0 for v in per_class.values())
    foot = "".join(
        f"<tr><td>{label}</td>{cells(metrics[key], total)}</tr>"
        for key, label in (("macro", "macro avg"), ("weighted", "weighted avg"))
        if isinstance(metrics.get(key), Mapping)
    )
    head = (
        '<tr><th>class</th><th class="num">precision</th><th class="num">recall</th>'
        '<th class="num">F1</th><th class="num">support</th></tr>'
    )
    table = (
        f'<table class="per-class"><thead>{head}</thead><tbody>{body}</tbody>'
        f"<tfoot>{foot}</tfoot></table>"
    )
    if not many:
        return table
    return _f1_extremes(per_class) + f'<div class="scroll">{table}</div>'


def _f1_extremes(per_class: Mapping[str, Mapping[str, Any]], n: int = 5) -> str:
    """A line naming the ``n`` classes with the lowest and the highest F1."""
    scored = [(f1, str(name)) for name, values in per_class.items()
              if (f1 := finite_or_none(values.get("f1"))) is not None]
    if not scored:
        return ""
    ranked = sorted(scored, key=lambda item: item[0])  # stable: ties in the model's order

    def names(items: list[tuple[float, str]]) -> str:
        return ", ".join(f"{html.escape(name)} ({f1:.3f})" for f1, name in items)

    return (
        f'<p class="muted" id="f1-extremes">{len(per_class)} classes. Lowest F1: '
        f"{names(ranked[:n])}. Highest F1: {names(ranked[::-1][:n])}.</p>"
    )


def _confusions(metrics: Mapping[str, Any], class_names: Sequence[str]) -> list[dict]:
    """``metrics["top_confusions"]``, or the same worked out from the confusion matrix."""
    pairs = metrics.get("top_confusions")
    if pairs is None:
        pairs = top_confusions(metrics["confusion_matrix"], class_names)
    return [dict(p) for p in pairs if isinstance(p, Mapping)]


def _confusions_table(pairs: Sequence[Mapping[str, Any]]) -> str:
    """The most frequent confusions, ranked, with counts and rates (a bar behind counts)."""
    if not pairs:
        return '<p id="top-confusions">No confusions: every prediction is correct.</p>'
    largest = max(finite_or_none(p.get("count")) or 0 for p in pairs) or 1
    rows = "".join(
        f'<tr><td class="num">{rank}</td><td>{html.escape(str(p.get("true")))}</td>'
        f'<td>{html.escape(str(p.get("predicted")))}</td>'
        f'<td class="num bar"{_bar_style((finite_or_none(p.get("count")) or 0) / largest)}>'
        f'{format_number(p.get("count"), ",.0f", missing="—")}</td>'
        f'<td class="num">{format_percent(p.get("rate"), missing="—")}</td>'
        f'<td class="num">{format_percent(p.get("share_of_errors"), missing="—")}</td></tr>'
        for rank, p in enumerate(pairs, 1)
    )
    head = (
        '<tr><th class="num">#</th><th>true class</th><th>predicted as</th>'
        '<th class="num">images</th><th class="num">% of true class</th>'
        '<th class="num">% of all errors</th></tr>'
    )
    return (
        f'<table class="top-confusions" id="top-confusions"><thead>{head}</thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _corruption_section(directory: Path, result: Mapping[str, Any]) -> list[str]:
    """The "common corruptions" section: its chart and a table of accuracy by severity."""
    head = ('<tr><th>corruption</th><th>family</th>'
            + "".join(f'<th class="num">severity {s}</th>' for s in range(1, 6))
            + '<th class="num">mean</th><th class="num">mean ECE</th></tr>')

    def row(label: str, family: str, values: Mapping[str, Any], css: str = "") -> str:
        accuracy = list(values.get("accuracy") or [None] * 5)
        cells = "".join(f'<td class="num">{format_percent(a, missing="—")}</td>'
                        for a in accuracy)
        return (f'<tr{css}><td>{html.escape(label)}</td><td>{html.escape(family)}</td>{cells}'
                f'<td class="num">{format_percent(values.get("mean_accuracy"), missing="—")}'
                f'</td><td class="num">{format_number(values.get("mean_ece"), missing="—")}'
                "</td></tr>")

    per = result.get("per_corruption") or {}
    body = "".join(row(name + ("" if r.get("benchmark", True) else " *"), str(r.get("family")), r)
                   for name, r in per.items())
    foot = [row(family, "", s) for family, s in (result.get("per_family") or {}).items() if s]
    mean = result.get("mean") or {}
    if mean:
        foot.append(row("mean of the 15" if mean.get("complete") else
                        "mean of the benchmark ones scored", "", mean))
    if result.get("held_out"):
        foot.append(row("held-out *", "", result["held_out"]))
    clean = result.get("clean") or {}
    jpeg = result.get("jpeg") or {}
    jpeg_text = "; ".join(
        f"quality {html.escape(str(q))}: {format_percent(s.get('accuracy'), missing='—')} "
        f"(ECE {format_number(s.get('ece'), missing='—')})" for q, s in jpeg.items())
    summary = (
        f"{format_number(result.get('images'), ',.0f', missing='?')} images of this split, "
        f"corrupted as CIFAR-10-C (Hendrycks &amp; Dietterich, ICLR 2019) at severities 1-5, "
        f"seed {html.escape(str(result.get('seed')))}; "
        f"{html.escape(str(result.get('probabilities', 'calibrated')))} probabilities. Clean "
        f"accuracy on them {format_percent(clean.get('accuracy'), missing='—')} (ECE "
        f"{format_number(clean.get('ece'), missing='—')})"
        + (f"; mean over the {len(mean.get('corruptions', []))} benchmark corruptions "
           f"{format_percent(mean.get('mean_accuracy'), missing='—')}" if mean else "")
        + ". * held out: not part of the benchmark's mean.")
    parts = ['<h2 id="corruptions">Robustness to common corruptions</h2>',
             f'<p class="muted">{summary}</p>']
    path = directory / CORRUPTIONS_PNG
    if path.is_file():
        parts.append(f'<figure><img src="{_data_uri(path)}" '
                     'alt="Accuracy under common corruptions"></figure>')
    parts.append(f'<div class="scroll"><table class="corruptions"><thead>{head}</thead>'
                 f"<tbody>{body}</tbody><tfoot>{''.join(foot)}</tfoot></table></div>")
    if jpeg_text:
        parts.append(f'<p id="jpeg-sweep">JPEG round trip (Pillow, 4:2:0): {jpeg_text}.</p>')
    return parts


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _render_html(
    directory: Path,
    *,
    title: str,
    metrics: Mapping[str, Any],
    info: Mapping[str, Any] | None,
    class_names: Sequence[str],
) -> str:
    many = len(class_names) > MANY_CLASSES
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _headline(metrics),
    ]
    if info:
        parts += ["<h2>Run</h2>", _info_table(info)]
    parts += ["<h2>Per-class metrics</h2>", _per_class_table(metrics)]
    for file_name, heading, caption in PLOTS:
        path = directory / file_name
        if not path.is_file():
            continue
        if many:
            caption = MANY_CLASS_CAPTIONS.get(file_name, caption)
        parts += [
            f"<h2>{html.escape(heading)}</h2>",
            f'<p class="muted">{html.escape(caption)}</p>',
            f'<figure><img src="{_data_uri(path)}" alt="{html.escape(heading)}"></figure>',
        ]
        if file_name == "confusion_matrix.png":
            pairs = _confusions(metrics, class_names)
            parts += [
                "<h2>Most frequent confusions</h2>",
                f'<p class="muted">The {len(pairs)} most frequent (true → predicted) pairs '
                "off the diagonal of the confusion matrix.</p>" if pairs else "",
                _confusions_table(pairs),
            ]
    if isinstance(metrics.get("corruptions"), Mapping):
        parts += _corruption_section(directory, metrics["corruptions"])
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts += [
        f'<p class="muted">Generated {html.escape(generated)} by cifar-cnn.</p>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _build(
    directory: Path,
    *,
    metrics: Mapping[str, Any],
    images: np.ndarray,
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    history: Mapping[str, Sequence[float]] | None,
    history_label: str,
    title: str,
    info: Mapping[str, Any] | None,
) -> None:
    """Write every report file into ``directory`` (which must exist and be empty)."""
    if "top_confusions" not in metrics:  # a dict from before metrics.json listed them
        metrics = {**metrics, "top_confusions": _confusions(metrics, class_names)}
    write_json(directory / METRICS_FILE, _jsonable(metrics))
    if history and any(len(v) for v in history.values() if v is not None):
        save_figure(plot_training_curves(history, val_label=history_label),
                    directory / "training_curves.png")
    save_figure(plot_confusion_matrix(metrics["confusion_matrix"], class_names),
                directory / "confusion_matrix.png")
    if len(class_names) > MANY_CLASSES:  # the heat map has no numbers: rank its cells
        save_figure(plot_top_confusions(metrics["confusion_matrix"], class_names),
                    directory / TOP_CONFUSIONS_PNG)
    save_figure(plot_per_class_metrics(metrics), directory / "per_class.png")
    save_figure(plot_reliability(probs, y_true,
                                 temperature=finite_or_none(metrics.get("temperature"))),
                directory / "reliability.png")
    save_figure(plot_confident_mistakes(images, y_true, probs, class_names),
                directory / "confident_mistakes.png")
    save_figure(plot_confused_pairs(images, y_true, probs, class_names,
                                    confusion_matrix=metrics["confusion_matrix"]),
                directory / "confused_pairs.png")
    if isinstance(metrics.get("corruptions"), Mapping):
        save_figure(plot_corruptions(metrics["corruptions"]), directory / CORRUPTIONS_PNG)
    page = _render_html(directory, title=title, metrics=metrics, info=info,
                        class_names=class_names)
    write_text(directory / REPORT_HTML_FILE, page)


def _swap_into_place(new_dir: Path, report_dir: Path) -> None:
    """Replace ``report_dir`` with ``new_dir``; the old report survives any failure here."""
    if not report_dir.exists():
        new_dir.rename(report_dir)
        return
    old_dir = report_dir.parent / f".{report_dir.name}.old-{secrets.token_hex(4)}"
    report_dir.rename(old_dir)
    try:
        new_dir.rename(report_dir)
    except BaseException:
        old_dir.rename(report_dir)
        raise
    shutil.rmtree(old_dir, ignore_errors=True)


def write_report(
    report_dir: str | Path,
    *,
    metrics: dict,
    images: np.ndarray,
    y_true: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str],
    history: Mapping[str, Sequence[float]] | None = None,
    history_label: str = "validation",
    title: str = "cifar-cnn evaluation",
    info: Mapping[str, Any] | None = None,
    check_input: bool = True,
) -> Path:
    """Write metrics.json, the plots and a self-contained report.html, atomically.

    The files are built in a temporary sibling directory which then replaces ``report_dir``;
    if anything fails the previous report (if any) is left untouched and the temporary
    directory is removed.

    Args:
        report_dir: directory to (re)create, e.g. ``RUN/report``.
        metrics: dict from :func:`cifar_cnn.evaluation.metrics.classification_metrics`, plus
            any extra keys; saved as metrics.json. With ``temperature`` (and
            ``ece_calibrated``, as `cifar_cnn.evaluate` computes them) the page shows them and
            the reliability plot adds the calibrated panel. With ``corruptions`` (see
            `cifar_cnn.evaluation.corruptions.score_corruptions`) it adds the corruption
            section and ``corruptions.png``. Without ``top_confusions``,
            metrics.json gets them from ``confusion_matrix`` (the dict is not changed).
        images: uint8 images ``(N, 32, 32, 3)`` matching ``y_true``, for the galleries.
        y_true: integer labels ``(N,)``.
        probs: class probabilities ``(N, C)``.
        class_names: ``C`` class names.
        history: optional training history columns (see `cifar_cnn.runs.RunDir.read_history`).
        history_label: what the history's ``val_*`` columns measured ("validation"/"test").
        title: page title.
        info: optional key/value pairs shown in the "Run" table (run name, model, ...).
        check_input: False skips checking ``probs``, ``y_true``, ``class_names`` and
            ``images``, for a caller that checked them (``cifar_cnn.evaluate``); the arrays
            must then be as `cifar_cnn.calibration.validate_probs_and_labels` returns them,
            and uint8 images.

    Returns:
        ``Path(report_dir)``.

    Raises:
        ValueError: on inconsistent inputs, missing metric keys, or if ``report_dir`` exists
            and is not a directory.
    """
    report_dir = Path(report_dir)
    missing = [key for key in REQUIRED_METRICS if key not in metrics]
    if missing:
        raise ValueError(
            f"metrics is missing {missing}; expected a dict from classification_metrics()."
        )
    if check_input:
        probs, y_true = validate_probs_and_labels(probs, y_true)
        class_names = check_class_names(class_names, probs.shape[1])
        images = as_uint8_images(images, len(y_true))
    if report_dir.exists() and not report_dir.is_dir():
        raise ValueError(f"report_dir {report_dir} exists and is not a directory.")

    report_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = report_dir.parent / f".{report_dir.name}.tmp-{secrets.token_hex(4)}"
    tmp_dir.mkdir()
    try:
        _build(
            tmp_dir,
            metrics=metrics,
            images=images,
            y_true=y_true,
            probs=probs,
            class_names=class_names,
            history=history,
            history_label=history_label,
            title=title,
            info=info,
        )
        _swap_into_place(tmp_dir, report_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return report_dir
