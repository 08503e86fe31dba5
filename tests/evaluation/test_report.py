"""write_report: complete, self-contained and atomic."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from cifar_cnn import calibration
from cifar_cnn.evaluation import report as report_module
from cifar_cnn.evaluation.metrics import classification_metrics
from cifar_cnn.evaluation.report import write_report

PLOT_FILES = {
    "confusion_matrix.png",
    "per_class.png",
    "reliability.png",
    "confident_mistakes.png",
    "confused_pairs.png",
}


def build_metrics(data) -> dict:
    metrics = classification_metrics(data.y_true, data.probs, data.class_names)
    metrics.update(temperature=1.4, ece_calibrated=0.0321, split="test")
    return metrics


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, make_data):
    """One full report (with history and temperature), shared by the read-only tests."""
    data = make_data(n=40)
    history = {
        "epoch": [0.0, 1.0, 2.0],
        "loss": [2.0, 1.5, 1.2],
        "accuracy": [0.3, 0.45, 0.55],
        "val_loss": [2.1, 1.7, 1.5],
        "val_accuracy": [0.28, 0.4, 0.47],
    }
    metrics = build_metrics(data)
    run_dir = tmp_path_factory.mktemp("run")
    out = write_report(
        run_dir / "report",
        metrics=metrics,
        images=data.images,
        y_true=data.y_true,
        probs=data.probs,
        class_names=data.class_names,
        history=history,
        title="Run <b>&amp;</b> co",
        info={"run name": "baseline", "model": "<script>alert(1)</script>", "TTA used": True},
    )
    return out, metrics


def leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def test_all_files_present(written) -> None:
    out, _ = written
    assert out.name == "report" and out.is_dir()
    names = {p.name for p in out.iterdir()}
    assert names == PLOT_FILES | {"training_curves.png", "metrics.json", "report.html"}
    assert leftovers(out.parent, "report") == []


def test_metrics_json_round_trips_with_extra_keys(written) -> None:
    out, metrics = written
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert saved["temperature"] == 1.4 and saved["split"] == "test"
    assert (out / "metrics.json").read_text().startswith("{\n  ")  # pretty-printed


def test_html_is_self_contained(written) -> None:
    out, _ = written
    page = (out / "report.html").read_text(encoding="utf-8")
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 6  # five plots plus training curves
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    assert re.findall(r"src=\"(?!data:)", page) == []
    assert "href=" not in page and "<script" not in page.lower()


def test_html_headline_and_content(written) -> None:
    out, metrics = written
    page = (out / "report.html").read_text(encoding="utf-8")
    match = re.search(r'id="headline-accuracy"[^>]*>([^<]*)<', page)
    assert match is not None
    assert match.group(1) == f"{metrics['accuracy'] * 100:.2f}%"
    for name in metrics["class_names"]:
        assert f"<td>{name}</td>" in page
    assert "0.0321" in page and "1.400" in page  # calibrated ECE and temperature cards
    assert "ECE after temperature scaling" in page
    assert "baseline" in page and "yes" in page  # info table


def test_html_escapes_text(written) -> None:
    page = (written[0] / "report.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Run &lt;b&gt;&amp;amp;&lt;/b&gt; co" in page


def test_replaces_an_existing_report(tmp_path: Path, make_data) -> None:
    data = make_data(n=24, num_classes=4, seed=3)
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    (report_dir / "stale.txt").write_text("old")
    write_report(
        report_dir,
        metrics=build_metrics(data),
        images=data.images,
        y_true=data.y_true,
        probs=data.probs,
        class_names=data.class_names,
    )
    names = {p.name for p in report_dir.iterdir()}
    assert names == PLOT_FILES | {"metrics.json", "report.html"}  # no history: no curves
    assert leftovers(tmp_path, "report") == []


def test_failure_keeps_the_old_report(tmp_path: Path, make_data, monkeypatch) -> None:
    data = make_data(n=24, num_classes=4, seed=4)
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    (report_dir / "metrics.json").write_text('{"good": true}')

    def explode(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(report_module, "plot_reliability", explode)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_report(
            report_dir,
            metrics=build_metrics(data),
            images=data.images,
            y_true=data.y_true,
            probs=data.probs,
            class_names=data.class_names,
        )
    assert [p.name for p in report_dir.iterdir()] == ["metrics.json"]
    assert json.loads((report_dir / "metrics.json").read_text()) == {"good": True}
    assert leftovers(tmp_path, "report") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_failure_without_an_old_report_leaves_nothing(tmp_path: Path, make_data, monkeypatch):
    data = make_data(n=12, num_classes=3, seed=5)
    monkeypatch.setattr(report_module, "plot_confusion_matrix", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_report(
            tmp_path / "report",
            metrics=build_metrics(data),
            images=data.images,
            y_true=data.y_true,
            probs=data.probs,
            class_names=data.class_names,
        )
    assert list(tmp_path.iterdir()) == []


def test_rejects_bad_input(tmp_path: Path, make_data) -> None:
    data = make_data(n=12, num_classes=3)
    kwargs = {
        "images": data.images,
        "y_true": data.y_true,
        "probs": data.probs,
        "class_names": data.class_names,
    }
    with pytest.raises(ValueError, match="metrics is missing"):
        write_report(tmp_path / "r", metrics={"accuracy": 0.5}, **kwargs)
    with pytest.raises(ValueError, match="same length"):
        write_report(
            tmp_path / "r", metrics=build_metrics(data), **{**kwargs, "images": data.images[:5]}
        )
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        write_report(
            tmp_path / "r",
            metrics=build_metrics(data),
            **{**kwargs, "images": data.images[..., :2]},
        )
    with pytest.raises(ValueError, match="expected 3 names, received 2"):
        write_report(
            tmp_path / "r", metrics=build_metrics(data), **{**kwargs, "class_names": ["a", "b"]}
        )
    with pytest.raises(ValueError, match="same number of rows"):
        write_report(
            tmp_path / "r", metrics=build_metrics(data), **{**kwargs, "y_true": data.y_true[:5]}
        )
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        write_report(tmp_path / "file", metrics=build_metrics(data), **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_inputs_are_checked_once(tmp_path: Path, make_data, monkeypatch) -> None:
    """write_report checks its arrays at the door; the plots and metrics inside trust them."""
    data = make_data(n=16, num_classes=4, seed=6)
    calls = []
    real = calibration.validate_probs_and_labels

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    for module in (calibration, report_module):
        monkeypatch.setattr(module, "validate_probs_and_labels", counting)
    metrics = build_metrics(data)
    write_report(tmp_path / "report", metrics=metrics, images=data.images, y_true=data.y_true,
                 probs=data.probs, class_names=data.class_names)
    assert len(calls) == 1
    write_report(tmp_path / "report", metrics=metrics, images=data.images,
                 y_true=data.y_true.astype(np.int64), probs=data.probs.astype(np.float64),
                 class_names=data.class_names, check_input=False)
    assert len(calls) == 1


def test_float_images_are_shown_as_uint8(tmp_path: Path, make_data) -> None:
    data = make_data(n=12, num_classes=3, seed=7)
    out = write_report(tmp_path / "report", metrics=build_metrics(data),
                       images=data.images / 255.0, y_true=data.y_true, probs=data.probs,
                       class_names=data.class_names)
    assert (out / "confident_mistakes.png").stat().st_size > 1000


def test_metrics_json_is_utf8_and_finite(tmp_path: Path, make_data) -> None:
    data = make_data(n=12, num_classes=3, seed=8)
    names = ["chat", "chien", "éléphant"]
    metrics = classification_metrics(data.y_true, data.probs, names)
    metrics.update(temperature=float("nan"), step=np.int64(3))
    out = write_report(tmp_path / "report", metrics=metrics, images=data.images,
                       y_true=data.y_true, probs=data.probs, class_names=names)
    text = (out / "metrics.json").read_text(encoding="utf-8")
    assert '"éléphant"' in text  # not escaped
    saved = json.loads(text)
    assert saved["temperature"] is None and saved["step"] == 3
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "temperature</div>" not in page  # no card for a missing temperature
