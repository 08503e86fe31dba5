"""`cifar-cnn export`: every format and quantization of a tiny run, run by its own runtime
in a fresh process (`cifar-cnn predict EXPORT`), must predict as the Keras model does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from cifar_cnn import cli
from cifar_cnn.errors import ConfigError
from cifar_cnn.export import TOLERANCES, export_run
from cifar_cnn.predict import Classifier
from cifar_cnn.runs import export_format

# Probability agreement asked of `cifar-cnn predict EXPORT` against the Keras model, per
# quantization: the gate's limits (parity.TOLERANCES); int8, gated on accuracy only, moves
# the probabilities of this tiny model by about 0.02.
PREDICT_TOLERANCE = {None: 1e-3, "float16": 2e-2, "int8": 0.1}
EXPORTS = [("savedmodel", None), ("litert", None), ("litert", "float16"), ("litert", "int8"),
           ("onnx", None)]


def start_predict(model: Path, images: list[Path]) -> subprocess.Popen:
    """`cifar-cnn predict MODEL IMAGES --json`, started in a process of its own."""
    return subprocess.Popen([sys.executable, "-m", "cifar_cnn", "predict", str(model),
                             *map(str, images), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def predicted(returncode: int, stdout: str, stderr: str) -> np.ndarray:
    """The probabilities a finished `start_predict` process printed."""
    assert returncode == 0, stderr
    assert "XNNPACK" not in stderr  # LiteRT's log line is the CLI's to hide
    return np.array([list(r["probabilities"].values()) for r in json.loads(stdout)])


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory, tiny_data) -> list[Path]:
    """A PNG and a larger JPEG of test images (prepared by the same Pillow path as .keras)."""
    root = tmp_path_factory.mktemp("images")
    png, jpg = root / "a.png", root / "b.jpg"
    Image.fromarray(tiny_data.x_test[3]).save(png)
    Image.fromarray(tiny_data.x_test[17]).resize((90, 70)).save(jpg, quality=92)
    return [png, jpg]


@pytest.fixture(scope="module")
def exports(trained_run, tiny_data, images, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Each of EXPORTS, made once into a folder of its own, then predicted by `cifar-cnn
    predict EXPORT IMAGES --json`, each export in a fresh process of its own. The processes
    share nothing, so they run at the same time. Per export: (folder, the export's result or
    the exception it raised, (returncode, stdout, stderr) of its process or None)."""
    made: dict = {}
    for fmt, quantize in EXPORTS:
        folder = tmp_path_factory.mktemp(f"{fmt}-{quantize}")
        try:
            made[fmt, quantize] = [folder, export_run(trained_run, fmt, quantize=quantize,
                                                      out=folder / "exp", data=tiny_data), None]
        except Exception as e:  # raised again by the test of this export
            made[fmt, quantize] = [folder, e, None]
    procs = {key: start_predict(result.path, images)
             for key, (_, result, _) in made.items() if not isinstance(result, Exception)}
    try:
        for key, proc in procs.items():
            out, err = proc.communicate(timeout=600)
            made[key][2] = (proc.returncode, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    return made


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "quantize"), EXPORTS)
def test_export_predicts_like_keras_in_a_fresh_process(fmt, quantize, exports, trained_run,
                                                       tiny_data, images) -> None:
    tmp_path, result, process = exports[fmt, quantize]
    if isinstance(result, Exception):
        raise result

    assert result.parity.passed, result.parity.failures
    assert export_format(result.path) == fmt
    folder = result.path if fmt == "savedmodel" else result.path.parent
    meta = json.loads((folder / "metadata.json").read_text())["export"]
    assert meta["format"] == fmt and meta["quantization"] == quantize
    assert meta["output"]["tta"] is None and meta["output"]["calibrated"]
    assert len(meta["source"]["model_sha256"]) == 64
    parity = json.loads((folder / "parity.json").read_text())
    assert parity["passed"] and parity["num_images"] == len(tiny_data.x_test)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left

    expected = Classifier.load(trained_run).predict(images, tta=False)
    got = predicted(*process)
    assert np.abs(got - expected).max() <= PREDICT_TOLERANCE[quantize]
    if quantize is None:
        assert (got.argmax(1) == expected.argmax(1)).all()


def test_savedmodel_serves_encoded_images_as_pillow_prepares_them(trained_run, tiny_data,
                                                                  images, tmp_path) -> None:
    import tensorflow as tf

    result = export_run(trained_run, "savedmodel", out=tmp_path / "sm", data=tiny_data)
    measured = result.card.export["serve_bytes"]
    assert measured["max_pixel_diff"] <= 3, measured  # PNG and JPEG, 40 to 640 px
    assert measured["max_abs_prob_diff_vs_pillow"] < 0.05

    loaded = tf.saved_model.load(str(result.path))
    probs = loaded.signatures["serve_bytes"](
        images=tf.constant([p.read_bytes() for p in images]))["probs"].numpy()
    expected = Classifier.load(trained_run).predict(images, tta=False)
    assert np.abs(probs - expected).max() < 0.05


def test_uncalibrated_probabilities_of_an_export_are_the_models(trained_run, tiny_data,
                                                                images, tmp_path) -> None:
    result = export_run(trained_run, "onnx", out=tmp_path / "onnx", data=tiny_data)
    raw = Classifier.load(trained_run).predict(images, tta=False, calibrated=False)
    exported = Classifier.load(result.path)
    np.testing.assert_allclose(exported.predict(images, calibrated=False), raw, atol=1e-4)
    with pytest.raises(Exception, match="test-time augmentation"):
        exported.predict(images, tta="flip")


def test_a_failing_gate_writes_nothing_and_exits_1(trained_run, folder_dataset, tmp_path,
                                                   monkeypatch, capsys) -> None:
    out = tmp_path / "litert"
    monkeypatch.setitem(TOLERANCES, None, {**TOLERANCES[None], "max_abs_prob_diff": 0.0,
                                           "min_top1_agreement": 1.01})
    code = cli.main(["export", str(trained_run), "--format", "litert", "--out", str(out),
                     "--data", str(folder_dataset)])

    assert code == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []
    err = capsys.readouterr().err
    assert "does not predict as the Keras model" in err and "top-1 agreement" in err


def test_a_failing_gate_keeps_the_previous_export(trained_run, tiny_data, tmp_path,
                                                  monkeypatch) -> None:
    from cifar_cnn.errors import ExportParityError

    out = tmp_path / "onnx"
    first = export_run(trained_run, "onnx", out=out, data=tiny_data).path.read_bytes()
    monkeypatch.setitem(TOLERANCES, None, {**TOLERANCES[None], "max_abs_prob_diff": 0.0})
    with pytest.raises(ExportParityError) as info:
        export_run(trained_run, "onnx", out=out, data=tiny_data)
    assert info.value.report["max_abs_prob_diff"] > 0
    assert (out / "model.onnx").read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"]


def test_bad_arguments_and_missing_data(trained_run, tiny_data) -> None:
    with pytest.raises(ConfigError, match="Received: format='tflite'"):
        export_run(trained_run, "tflite", data=tiny_data)
    with pytest.raises(ConfigError, match="quantize='int8'"):
        export_run(trained_run, "onnx", quantize="int8", data=tiny_data)
    with pytest.raises(ConfigError, match="--data"):
        export_run(trained_run, "savedmodel")  # trained on in-memory arrays: no data path


def test_airbench_custom_layers_export(tiny_data, tmp_path) -> None:
    """bfloat16 airbench (PatchWhitening, SmallMapConv2D, FusedBatchNormalization,
    FusedGELU) is rebuilt in float32 with ErfGELU and converts to every runtime."""
    from cifar_cnn.models import create_model

    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = create_model("airbench", widths=(8, 16, 16))
    finally:
        keras.config.set_dtype_policy(policy)
    run = tmp_path / "airbench"
    run.mkdir()
    model.save(run / "model.keras")
    (run / "metadata.json").write_text(json.dumps({
        "name": "airbench", "class_names": list(tiny_data.class_names),
        "input": {"shape": [32, 32, 3], "dtype": "uint8", "range": [0, 255]},
        "recipe": {"name": "airbench", "tta": "flip_translate"}}))

    for fmt, quantize in (("savedmodel", None), ("litert", None), ("onnx", None)):
        result = export_run(run, fmt, quantize=quantize, data=tiny_data)
        assert result.parity.passed, (fmt, result.parity.failures)
        assert result.parity.max_abs_prob_diff < 1e-5
        assert result.card.export["source"]["dtype"] == "mixed_bfloat16"
    assert sorted(p.name for p in (run / "export").iterdir()) == ["litert", "onnx",
                                                                  "savedmodel"]


def test_erf_gelu_matches_fused_gelu() -> None:
    from cifar_cnn.layers import ErfGELU, FusedGELU

    x = np.random.default_rng(0).normal(0, 3, (4, 8, 8, 5)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(ErfGELU()(x)), np.asarray(FusedGELU()(x)),
                               atol=1e-6)


def test_the_packaged_model_exports_outside_the_package(trained_run) -> None:
    from pathlib import Path

    from cifar_cnn.export.exporter import default_out
    from cifar_cnn.predict import default_run

    assert default_out(default_run(), "onnx") == Path("exports") / default_run().name / "onnx"
    assert default_out(trained_run, "onnx") == trained_run / "export" / "onnx"
