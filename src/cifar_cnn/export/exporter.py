"""`export_run`: one run's model as a SavedModel, LiteRT or ONNX file, gated on parity.

Every export is written into a temporary folder beside its destination, run on the test
set by its own runtime and compared with the Keras model (`cifar_cnn.export.parity`);
only an export that passes is moved into place, with ``metadata.json`` and
``parity.json`` beside the model.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from cifar_cnn.calibration import apply_temperature, tta_key
from cifar_cnn.card import ModelCard, read_run_card
from cifar_cnn.data import CifarData, load_run_data
from cifar_cnn.environment import environment_info
from cifar_cnn.errors import ConfigError, ExportParityError, RunError
from cifar_cnn.export import graph, litert, onnx, parity, savedmodel
from cifar_cnn.files import sha256_file, write_json
from cifar_cnn.images import RESIZE_METHOD, InputSpec
from cifar_cnn.runs import (
    EXPORT_DIR,
    EXPORT_FILES,
    EXPORT_METADATA_FILE,
    PARITY_FILE,
    default_run,
    open_run,
    resolve_artifact,
)
from cifar_cnn.runtimes import open_runner
from cifar_cnn.tta import predict_probs

FORMATS = {  # format -> the quantizations it offers
    "savedmodel": (None,),
    "litert": litert.QUANTIZATIONS,
    "onnx": (None,),
}
REPRESENTATIVE_SIZE = 300  # training images that set int8's activation ranges
_PACKAGES = ("tensorflow", "keras", "ai-edge-litert", "tf2onnx", "onnx", "onnxruntime")


@dataclass(frozen=True)
class ExportResult:
    """Where the export is, what it records, and how it compared with the Keras model."""

    path: Path  # the SavedModel folder, or the .tflite / .onnx file
    card: ModelCard  # what its metadata.json holds; ``card.export``: format, parity...
    parity: parity.ParityReport


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = None
    return out


def _representative(ds: CifarData, n: int, seed: int) -> np.ndarray:
    """`n` training images, the same number from each class where possible."""
    rng = np.random.default_rng(seed)
    per_class = max(1, n // ds.num_classes)
    idx = np.concatenate([rng.permutation(np.flatnonzero(ds.y_train == c))[:per_class]
                          for c in range(ds.num_classes)])
    return ds.x_train[np.sort(idx)]


def measure_serve_bytes(sm_path: Path, images: np.ndarray,
                        spec: InputSpec | None = None) -> dict[str, Any]:
    """How far ``serve_bytes``' in-graph decoding is from `prepare_image` (Pillow).

    Each image is enlarged to a few sizes and aspect ratios, written as PNG and as JPEG
    (quality 90), then prepared both ways. Returns pixel-level differences (0..255) and the
    largest probability difference between ``serve_bytes`` and ``serving_default`` on
    Pillow's pixels.
    """
    import tensorflow as tf
    from PIL import Image

    loaded = tf.saved_model.load(str(sm_path))
    size = int(images.shape[1])
    spec = spec or InputSpec(size, size)
    files, pillow = [], []
    for i, (w, h) in enumerate([(48, 40), (75, 100), (160, 120), (400, 300), (301, 640)]):
        im = Image.fromarray(images[i % len(images)]).resize((w, h), Image.Resampling.BILINEAR)
        for fmt in ("PNG", "JPEG"):
            buf = io.BytesIO()
            im.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
            files.append((f"{w}x{h}.{fmt.lower()}", buf.getvalue()))
            pillow.append(spec.decode(buf.getvalue(), files[-1][0]))
    ref = np.stack(pillow).astype(np.int32)
    graph_px = np.stack([savedmodel.decode_like_pillow(tf.constant(d), size).numpy()
                         for _, d in files]).astype(np.int32)
    diff = np.abs(ref - graph_px)
    p_bytes = loaded.signatures["serve_bytes"](images=tf.constant([d for _, d in files]))
    p_pixels = loaded.signatures["serving_default"](pixels=tf.constant(np.stack(pillow)))
    return {
        "images": [name for name, _ in files],
        "max_pixel_diff": int(diff.max()),
        "mean_pixel_diff": round(float(diff.mean()), 4),
        "max_pixel_diff_per_image": [int(d.max()) for d in diff],
        "max_abs_prob_diff_vs_pillow": float(np.abs(p_bytes["probs"].numpy()
                                                    - p_pixels["probs"].numpy()).max()),
        "not_covered": "EXIF orientation, transparency (alpha is dropped, not composited "
                       "over white), 16-bit images; TIFF does not decode",
    }


def _replace(stage: Path, out: Path) -> None:
    """Move `stage` to `out`, replacing an earlier export there."""
    old = None
    if out.exists():
        old = out.with_name(f".old-{out.name}-{os.getpid()}")
        os.replace(out, old)
    os.replace(stage, out)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def default_out(run: Path, name: str) -> Path:
    """``RUN/export/NAME``; for the packaged default model, which lives inside the installed
    package (perhaps read-only), ``exports/<model>/NAME`` in the working directory."""
    try:
        packaged = run.resolve() == default_run().resolve()
    except RunError:  # installed without the default model
        packaged = False
    return Path("exports") / run.name / name if packaged else run / EXPORT_DIR / name


def export_run(run: str | os.PathLike[str], format: str = "savedmodel", *,
               quantize: str | None = None, out: str | os.PathLike[str] | None = None,
               data: str | os.PathLike[str] | CifarData | None = None,
               seed: int = 0) -> ExportResult:
    """Export a trained run's model, keeping it only if it passes the parity gate.

    Args:
        run: a run directory (`cifar_cnn.predict.default_run()` for the packaged model).
        format: "savedmodel", "litert" or "onnx".
        quantize: LiteRT only: None (float32), "float16" or "int8".
        out: the export folder (default ``RUN/export/FORMAT[-QUANTIZE]``, see `default_out`);
            it holds the model
            (the SavedModel itself, or ``model.tflite`` / ``model.onnx``), metadata.json and
            parity.json. An earlier export there is replaced, only on success.
        data: CIFAR-10 for the gate's test images and int8's representative images
            (default: the path the run was trained from).
        seed: picks the representative images.

    Returns:
        An `ExportResult`.

    Raises:
        ConfigError: for an unknown format or quantization, or no data.
        ExportParityError: when the export does not predict as the Keras model; its
            ``report`` holds the numbers, and nothing is written to `out`.

    Example:
        >>> export_run("runs/fast94", "litert", quantize="int8")  # doctest: +SKIP
    """
    import keras

    if format not in FORMATS:
        raise ConfigError(f"Unknown export format {format!r}; choose from "
                          f"{', '.join(FORMATS)}. Received: format={format!r}")
    if quantize not in FORMATS[format]:
        raise ConfigError(f"{format} exports offer quantize="
                          f"{', '.join(str(q) for q in FORMATS[format])}. "
                          f"Received: quantize={quantize!r}")
    src = open_run(run)
    card = read_run_card(src)
    if data is None and card.recorded_data() is None:
        raise ConfigError("The parity gate runs the export on the run's test images, and this "
                          "run recorded no data it can find again: give --data (the data it "
                          "was trained on). Received: data=None")
    ds = load_run_data(card, data)
    # The gate's images: the run's test split, else its validation split.
    x_gate, y_gate = (ds.x_test, ds.y_test) if ds.has_test else (ds.x_val, ds.y_val)
    if x_gate is None or not len(x_gate):
        raise ConfigError("The parity gate needs labelled images the run did not train on, "
                          "and this data has neither a test nor a validation split: give "
                          "--data with a test/ folder.")
    temperature = card.temperatures.get(tta_key(None))
    name = format + (f"-{quantize}" if quantize else "")
    out = Path(out) if out is not None else default_out(src.path, name)

    model = keras.saving.load_model(src.model, compile=False, safe_mode=True)
    spec = card.fitted_to(model.input_shape, int(model.output_shape[-1]),
                          default_class_names=ds.class_names).input
    reference = graph.float32_model(model, export_layers=False)
    ref_probs = predict_probs(reference, x_gate)
    run_precision = graph.precision(model)
    run_probs = ref_probs if run_precision == "float32" else predict_probs(
        model, x_gate)
    if temperature is not None:
        ref_probs = apply_temperature(ref_probs, temperature)
    export_model = graph.float32_model(model)

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".tmp-{out.name}-", dir=out.parent) as tmp:
        stage = Path(tmp) / "stage"
        sm_path = stage if format == "savedmodel" else Path(tmp) / "savedmodel"
        stage.mkdir()
        if format != "litert":
            savedmodel.write_savedmodel(export_model, sm_path, temperature=temperature or 1.0,
                                        resize=spec.resize)
        model_path = stage if format == "savedmodel" else stage / EXPORT_FILES[format]
        if format == "litert":
            rep = _representative(ds, REPRESENTATIVE_SIZE, seed) if quantize == "int8" else None
            model_path.write_bytes(litert.convert(export_model, quantize, rep,
                                                  temperature=temperature or 1.0))
        elif format == "onnx":
            onnx.convert(sm_path, model_path)

        runner = open_runner(resolve_artifact(model_path))
        report = parity.compare(ref_probs, runner.predict(x_gate), y_gate, quantize)
        report.extra["keras_model_dtype"] = run_precision
        report.extra["keras_model_accuracy"] = float(np.mean(run_probs.argmax(1) == y_gate))
        report.extra["reference"] = ("the run's Keras model in float32 (its own layers), "
                                     "calibrated probabilities, no test-time augmentation")
        report.extra["test_images"] = ds.source + ("" if ds.has_test else " (validation split)")
        export = {
            "format": format,
            "quantization": quantize,
            "model_file": None if format == "savedmodel" else model_path.name,
            "preprocessing": RESIZE_METHOD + " (done by the caller)",
            "output": {"name": "probs", "calibrated": temperature is not None,
                       "temperature": temperature, "tta": None,
                       "note": "calibrated for no test-time augmentation; TTA is not in the "
                               "graph"},
            "source": {"run": str(src.path.resolve()), "name": card.name,
                       "model_sha256": sha256_file(src.model),
                       "recipe": card.recipe_name, "dtype": run_precision,
                       "recipe_tta": card.default_tta},
            "packages": _versions(),
            "parity": report.summary(),
        }
        if format == "savedmodel":
            export["signatures"] = {
                "serving_default": "pixels: uint8 (N, H, W, 3) -> probs: float32 (N, C)"}
            if spec.resize == "crop":  # the in-graph decoder centre-crops
                export["signatures"]["serve_bytes"] = (
                    "images: string (N,) encoded PNG/JPEG/GIF/BMP -> probs")
                export["serve_bytes"] = measure_serve_bytes(stage, x_gate[:5], spec)
        # The run's card, as an export: its own input spec, no calibration of its own (the
        # temperature is in the graph), this machine's environment.
        export_card = card.replace(input=spec, calibration=None, export=export,
                                   environment=environment_info())
        write_json(stage / EXPORT_METADATA_FILE, export_card.to_metadata())
        write_json(stage / PARITY_FILE, report.to_dict())
        if not report.passed:
            raise ExportParityError(
                f"The {name} export does not predict as the Keras model "
                f"({'; '.join(report.failures)}): {report.summary()}. Nothing was written "
                f"to {out}.", report.to_dict())
        _replace(stage, out)
    final = out if format == "savedmodel" else out / EXPORT_FILES[format]
    return ExportResult(final, export_card, report)
